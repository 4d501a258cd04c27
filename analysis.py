"""What the notebook and the run folder measure on a network: its errors, its attention, how images spread.

Every function takes what setup() in train.py builds (a Run) or a Net, and draws with utils/plots.py.
"""
import math
from pathlib import Path

import torch

from utils import plots
from utils.data import CLASSES
from utils.training import autocast, confusion_matrix, predict


@torch.no_grad()
def spread(net, images):
    """How different the images still are, stage by stage: the std over the batch (averaged over the 48 features)
    of X after the pool and after each block, for a network whose blocks all attend over the pooled vector."""
    net.eval()
    x = net.pool(net.feature_map(images).flatten(2).transpose(1, 2))  # X (B, 48)
    stages = [x]
    for block in net.blocks:
        x = x + block(x) if net.config.residual else block(x)
        stages.append(x)
    return [s.std(0).mean().item() for s in stages]  # pool, block 1, ..., block 4


def entropy(am):
    """Each row's entropy in nats, -sum_j AM[i, j] ln AM[i, j]: ln(keys) for a uniform row, 0 for a one-hot one."""
    return -(am * am.clamp_min(1e-12).log()).sum(-1)


@torch.no_grad()
def attention_entropy(run):
    """Each block's mean attention-row entropy (nats) over the whole test set."""
    totals, rows = torch.zeros(4), 0
    for x, _ in run.test_loader:
        totals += torch.stack([entropy(am).mean(-1).sum().cpu() for am in run.net.attention_maps(x)])
        rows += len(x)
    return (totals / rows).tolist()


def _off_diagonal_mean(g):
    """The mean of each (N, N) matrix's entries off its diagonal: (..., N, N) -> (...)."""
    n = g.shape[-1]
    return (g.sum((-1, -2)) - g.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))


@torch.no_grad()
def row_similarity(am):
    """What a row of AM over positions (B, T, T) depends on: the mean cosine similarity of two rows' departures
    from uniform (AM - 1/T), for two query positions of one image and for one query position in two images."""
    rows = torch.nn.functional.normalize(am.float() - 1 / am.shape[-1], dim=-1)  # (B, T, T), unit length
    same_image = _off_diagonal_mean(rows @ rows.transpose(1, 2)).mean()  # (B, T, T) -> one number
    same_query = _off_diagonal_mean(torch.einsum("bsk,csk->sbc", rows, rows)).mean()  # (T, B, B) -> one number
    return {"same image, other query": same_image.item(), "same query, other image": same_query.item()}


def plot_training(run, history, lr_result, image_dir, show=False):
    """Loss and accuracy curves, the LR range test and the LR schedule, saved into image_dir."""
    d = Path(image_dir)
    plots.plot_curves(history, d / "curves.png", show)
    if lr_result:
        plots.plot_lr_finder(lr_result, d / "lr_finder.png", show)
    plots.plot_schedule(history["step_lrs"], len(run.train_loader), d / "lr_schedule.png", show)


def plot_attention_maps(run, image_dir, show=False, titles=None):
    """The attention matrices of the first 4 test images: attention.png (8x8 maps of the blocks over the pooled
    vector) and attention_positions.png (where two positions attend, for the blocks over positions)."""
    images = run.test_images[:4]  # the test loader keeps the order
    maps = run.net.attention_maps(next(iter(run.test_loader))[0][:4])
    titles = titles or [CLASSES[int(y)] for y in run.test_loader.labels[:4]]
    n, d = run.net.config.token_blocks, Path(image_dir)  # the first n blocks attend over positions
    if n:
        plots.plot_position_attention(images, maps[:n], titles, [(4, 4), (1, 1)], d / "attention_positions.png", show)
    if n < 4:
        plots.plot_attention(images, maps[n:], titles, d / "attention.png", show)


def report(run, image_dir, show=False):
    """The confusion matrix and misclassified test images; returns {"per_class_acc": {class: %}}."""
    d = Path(image_dir)
    logits, labels = predict(run.model, run.test_loader, precision=run.precision)
    preds = logits.argmax(1)
    cm = confusion_matrix(preds, labels, len(CLASSES))
    plots.plot_confusion(cm, CLASSES, d / "confusion.png", show)
    wrong = (preds != labels).nonzero().flatten()[:20].cpu()
    plots.plot_gallery(run.test_images[wrong], labels[wrong].tolist(), preds[wrong].tolist(), CLASSES,
                       d / "misclassified.png", show)
    return {"per_class_acc": dict(zip(CLASSES, (100 * cm.diag().float() / cm.sum(1).clamp(min=1)).tolist()))}


@torch.no_grad()
def shuffled_accuracy(run, seed=0):
    """Test accuracy (%) of a trained network over positions as it is, and with its tokens moved to other positions
    (one permutation for every image; the position code stays with the position)."""
    net = run.net.eval()
    side = 32 // math.prod(net.config.strides)
    perm = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed)).to(run.device)
    right, n = torch.zeros(2), 0
    for x, y in run.test_loader:
        with autocast(run.device, run.precision):  # as training evaluates it
            m = net.feature_map(x)  # (B, 48, A, A)
            logits = [net.head(m), net.head(m.flatten(2)[:, :, perm].view_as(m))]
        right += torch.stack([(out.argmax(1) == y).sum().cpu() for out in logits])
        n += len(y)
    return dict(zip(("as trained", "tokens moved"), (100 * right / n).tolist()))
