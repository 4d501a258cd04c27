"""What the notebook and the run folder measure on a network (a Net, or the Run train.setup builds), drawn
with utils/plots.py: its errors, its attention, how images spread."""
import csv
import math
from pathlib import Path

import torch

from utils import plots
from utils.data import CLASSES
from utils.training import autocast, predict


@torch.no_grad()
def spread(net, images):
    """How far images differ: X's std over the batch (mean over features) after the pool and each block (token_blocks 0)."""
    net.eval()
    x = net.pool(net.feature_map(images).flatten(2).transpose(1, 2))  # X (B, 48)
    stages = [x]
    for block in net.blocks:
        x = x + block(x) if net.config.residual else block(x)
        stages.append(x)
    return [s.std(0).mean().item() for s in stages]  # pool, block 1, ..., block 4


def course_log(path=Path(__file__).parent / "course" / "training_log.csv"):
    """The course's published training log: one dict of numbers an epoch (course/README.md says what it holds)."""
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def layer_name(param_name):
    """'convs.0.weight' -> 'conv 1', 'blocks.2.q.bias' -> 'block 3', 'fc.weight' -> 'fc'."""
    part = param_name.split(".")
    kinds = {"convs": "conv", "bns": "bn", "blocks": "block"}
    return f"{kinds[part[0]]} {int(part[1]) + 1}" if part[0] in kinds else part[0]


def layer_rms(tensors):
    """{parameter name: tensor} -> {layer: root mean square over all its weights}."""
    parts = {}
    for name, t in tensors.items():
        parts.setdefault(layer_name(name), []).append(t.detach().double().flatten())
    return {layer: torch.cat(ts).pow(2).mean().sqrt().item() for layer, ts in parts.items()}


def layer_grads(net, images, labels, eps=1e-8):
    """One batch's gradient on each layer (root mean square over its weights), beside the first step Adam takes
    with it as a share of the LR: m / (sqrt(v) + eps) = g / (|g| + eps) for each weight at step 1."""
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(images), labels).backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    found = layer_rms(grads), layer_rms({n: g / (g.abs() + eps) for n, g in grads.items()})
    net.zero_grad()
    return found


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


@torch.no_grad()
def row_similarity(am):
    """What a row of AM (B, T, T) depends on: the mean cosine similarity of two rows' departures from uniform, for
    two queries of one image and for one query in two images."""
    rows = torch.nn.functional.normalize(am.float().cpu() - 1 / am.shape[-1], dim=-1)  # (B, T, T), unit length
    b, t = am.shape[:2]
    same_image = (rows @ rows.transpose(1, 2))[:, ~torch.eye(t, dtype=torch.bool)].mean()  # (B, T, T), off diagonal
    same_query = torch.einsum("bsk,csk->sbc", rows, rows)[:, ~torch.eye(b, dtype=torch.bool)].mean()  # (T, B, B)
    return {"same image, other query": same_image.item(), "same query, other image": same_query.item()}


QUERIES = [(4, 4), (1, 1)]  # the positions (row, col) whose attention attention_positions.png draws


@torch.no_grad()
def plot_attention_maps(run, image_dir, show=False, titles=None):
    """The first 4 test images' attention: attention.png (over the vector), attention_positions.png (over positions);
    each image titled with its class and the network's prediction, e.g. "cat (predicted: dog)", unless titles."""
    images = run.test_loader.images[:4]  # uint8; the test loader keeps the order
    x, labels = next(iter(run.test_loader))
    maps = run.net.attention_maps(x[:4])
    if titles is None:
        preds = predict(run.net, [(x[:4], labels[:4])], precision=run.precision)[0].argmax(1)  # as training evaluates
        titles = [f"{CLASSES[int(y)]} (predicted: {CLASSES[int(p)]})" for y, p in zip(labels[:4], preds)]
    n, d = run.net.config.token_blocks, Path(image_dir)  # the first n blocks attend over positions
    if n:
        plots.plot_attention(images, maps[:n], titles, QUERIES, d / "attention_positions.png", show)
    if n < 4:
        plots.plot_attention(images, maps[n:], titles, path=d / "attention.png", show=show)


def report(run, image_dir, show=False):
    """The confusion matrix and misclassified test images; returns {"per_class_acc": {class: %}}."""
    d = Path(image_dir)
    logits, labels = predict(run.model, run.test_loader, precision=run.precision)
    preds = logits.argmax(1)
    cm = torch.bincount(labels.cpu() * len(CLASSES) + preds.cpu(), minlength=len(CLASSES) ** 2).view(len(CLASSES), -1)
    plots.plot_confusion(cm, CLASSES, d / "confusion.png", show)
    wrong = (preds != labels).nonzero().flatten()[:20].cpu()
    plots.plot_gallery(run.test_loader.images[wrong], labels[wrong].tolist(), preds[wrong].tolist(), CLASSES,
                       d / "misclassified.png", show)
    return {"per_class_acc": dict(zip(CLASSES, (100 * cm.diag().float() / cm.sum(1).clamp(min=1)).tolist()))}


@torch.no_grad()
def shuffled_accuracy(run, seed=0):
    """Test accuracy (%) over positions as trained and with the tokens permuted (the position code stays put)."""
    net = run.net.eval()
    side = 32 // math.prod(net.config.strides)
    perm = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed)).to(run.device)
    right = torch.zeros(2)
    for x, y in run.test_loader:
        with autocast(run.device, run.precision):  # as training evaluates it
            m = net.feature_map(x)  # (B, 48, A, A)
            logits = [net.head(m), net.head(m.flatten(2)[:, :, perm].view_as(m))]
        right += torch.stack([(out.argmax(1) == y).sum().cpu() for out in logits])
    return dict(zip(("as trained", "tokens moved"), (100 * right / len(run.test_loader.labels)).tolist()))
