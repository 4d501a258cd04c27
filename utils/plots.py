"""Plots of a training run: curves, LR range test, LR schedule, errors, attention.

Needs: matplotlib and numpy (inputs: tensors or arrays); nothing CIFAR-specific: copy it alone. Every plot_
function but plot_heatmap (a panel) draws one figure, saves it to path, shows it when show=True (in a notebook)
and closes it otherwise, so scripts never pile up open figures; it returns the figure.
"""
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

MARKERS = "osD^vPX*<>"  # one marker and line style per run or curve, so that overlapping lines stay told apart
LINES = ("-", "--", "-.", ":")


def _finish(fig, path, show, tight=True):
    """Save to path, show in a notebook, close."""
    if tight:
        fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    if show:
        plt.show()
    plt.close(fig)
    return fig


def _np(x):
    """A numpy array from a tensor (any device; bf16/fp16 become float32) or anything array-like."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def _rgb(image):
    """A (3, H, W) image, tensor or array, as the (H, W, 3) array imshow wants."""
    return _np(image).transpose(1, 2, 0)


def _attention_norm(values, uniform):
    """Diverging norm for attention weights: 0 at the bottom, white at uniform, at least 2 * uniform at the top."""
    return TwoSlopeNorm(vcenter=uniform, vmin=0, vmax=max(float(np.max(values)), 2 * uniform))


def _uniform_label(uniform):
    n = round(1 / uniform)
    return f"attention weight (white = uniform {f'1/{n} = ' if math.isclose(n * uniform, 1) else ''}{uniform:.3g})"


def plot_curves(history, path=None, show=False):
    """Train and test loss (left) and accuracy (right) per epoch."""
    rows = history["epochs"]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, (("loss", "loss"), ("acc", "accuracy (%)"))):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
        ax.plot(epochs, [r[f"test_{key}"] for r in rows], "s-", label="test")
        ax.set(xlabel="epoch", ylabel=label, title=f"{label} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, path, show)


def plot_compare(histories, path=None, show=False):
    """Test accuracy and train loss per epoch of several runs: {name: fit's history}; the legend sits below."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + 0.25 * len(histories)), layout="constrained")
    for (name, history), marker, ls in zip(histories.items(), MARKERS * len(histories), LINES * len(histories)):
        rows = history["epochs"]
        epochs = [r["epoch"] for r in rows]
        label = f"{name} (final: test {rows[-1]['test_acc']:.2f}%, train loss {rows[-1]['train_loss']:.3f})"
        axes[0].plot(epochs, [r["test_acc"] for r in rows], marker=marker, ls=ls, ms=4, alpha=0.85, label=label)
        axes[1].plot(epochs, [r["train_loss"] for r in rows], marker=marker, ls=ls, ms=4, alpha=0.85)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    axes[1].set(xlabel="epoch", ylabel="train loss", title="train loss")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(len(histories), 2))  # outside the axes: it hides no curve
    return _finish(fig, path, show, tight=False)


def plot_lr_finder(result, path=None, show=False):
    """Smoothed loss against LR (log scale): the chosen max LR, the loss minimum, the divergence and steepest points."""
    lrs, losses = list(result["lrs"]), list(result["losses"])

    def loss_at(lr):
        return losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr))]

    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    ax.plot(lrs, losses, color="tab:blue", label="smoothed loss")
    ax.axvline(result["suggested"], color="tab:green", ls="--", label=f"suggested max LR {result['suggested']:.2e}")
    if result.get("loss_min_lr"):
        ax.plot(result["loss_min_lr"], loss_at(result["loss_min_lr"]), "v", color="black", ms=9,
                label=f"loss minimum {result['loss_min_lr']:.2e}")
    if result.get("steepest"):
        ax.plot(result["steepest"], loss_at(result["steepest"]), "o", color="tab:red", ms=8, mfc="none", mew=2,
                label=f"steepest slope {result['steepest']:.2e}")
    if result.get("diverged_lr"):  # its loss is off the scale: a line, not a point
        ax.axvline(result["diverged_lr"], color="tab:orange", ls=":", lw=2,
                   label=f"divergence {result['diverged_lr']:.2e}")
    finite = [l for l in losses if math.isfinite(l)]
    ax.set_ylim(min(finite) - 0.05, min(max(finite), 1.25 * finite[0]) + 0.05)  # the diverged tail would flatten the rest
    title = "LR range test" + (f"\nsuggested max LR = {result['bound']}" if result.get("bound") else "")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path, show)


def plot_schedule(step_lrs, steps_per_epoch, path=None, show=False):
    """The learning rate used at every step, against epochs."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([i / steps_per_epoch for i in range(len(step_lrs))], step_lrs)
    ax.set(xlabel="epoch", ylabel="learning rate", title="one-cycle schedule (per batch)")
    ax.grid(alpha=0.3)
    return _finish(fig, path, show)


def plot_confusion(cm, classes, path=None, show=False):
    """Confusion matrix with counts (rows: true class, columns: predicted)."""
    cm = _np(cm)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            v = cm[i, j].item()
            ax.text(j, i, v, ha="center", va="center", fontsize=8, color="white" if v > cm.max() / 2 else "black")
    fig.colorbar(im, ax=ax, label="images")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    return _finish(fig, path, show)


def plot_gallery(images, true, pred, classes, path=None, show=False, cols=5):
    """Images (N, 3, H, W) uint8 with 'true -> predicted' titles."""
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p in zip(axes.flat, images, true, pred):
        ax.imshow(_rgb(img))
        ax.set_title(f"{classes[t]}\n-> {classes[p]}", fontsize=9, color="tab:red")
    fig.suptitle("misclassified test images (true -> predicted)")
    return _finish(fig, path, show)


def plot_heatmap(matrix, ax=None, *, uniform=None, xlabel="key", ylabel="query", title=None, colorbar=True,
                 vmax=None):
    """One attention matrix (rows: queries) on a diverging scale, white = uniform; returns the image (for a colour bar).

    uniform: the weight of an even spread (default 1/n for n keys); vmax: a scale shared with other panels
    (default this matrix's maximum, at least 2 * uniform). Draws on ax, a new figure's when None.
    """
    m = _np(matrix)
    n = m.shape[-1]
    uniform = uniform or 1 / n
    ax = ax or plt.subplots(figsize=(4, 3.4))[1]
    im = ax.imshow(m, cmap="RdBu_r", norm=_attention_norm(m if vmax is None else vmax, uniform))
    if n <= 16:
        ax.set_xticks(range(n))
        ax.set_yticks(range(m.shape[0]))
    ax.tick_params(labelsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=_uniform_label(uniform))
    return im


def plot_attention(images, maps, titles, path=None, show=False):
    """For each image, the image and its blocks' 8x8 attention matrices, on one colour scale (white = uniform)."""
    n, k = len(images), len(maps)
    maps = [_np(m) for m in maps]
    uniform, vmax = 1 / maps[0].shape[-1], max(float(m[:n].max()) for m in maps)  # one colour scale for every panel
    fig, axes = plt.subplots(n, k + 1, figsize=(2.3 * (k + 1) + 1, 2.3 * n + 0.6), squeeze=False, layout="constrained")
    for i in range(n):
        axes[i, 0].imshow(_rgb(images[i]))
        axes[i, 0].set_title(titles[i], fontsize=9)
        axes[i, 0].axis("off")
        for b in range(k):
            ax = axes[i, b + 1]
            im = plot_heatmap(maps[b][i], ax, uniform=uniform, vmax=vmax, colorbar=False, xlabel=None, ylabel=None,
                              title=f"block {b + 1} AM" if i == 0 else None)
            ax.tick_params(labelbottom=i == n - 1, labelleft=b == 0)
        axes[i, 1].set_ylabel("query i")  # the outer panels name the axes
    for b in range(k):
        axes[n - 1, b + 1].set_xlabel("key j")
    t = maps[0].shape[-1]
    fig.suptitle(f"attention matrices AM ({t}x{t}; row i: query i's weights over the keys)")
    fig.colorbar(im, ax=axes[:, 1:], shrink=0.8, label=_uniform_label(uniform))
    return _finish(fig, path, show, tight=False)


def plot_position_attention(images, maps, titles, queries, path=None, show=False):
    """Where a query position (row, col), marked +, attends in each block: its row of AM (maps: (B, T, T) each) as
    an A x A heatmap beside the image; one colour scale, white = uniform."""
    n, k = len(images), len(maps)
    maps = [_np(m) for m in maps]
    t = maps[0].shape[-1]
    side, uniform = math.isqrt(t), 1 / t
    rows = [[m[i, r * side + c].reshape(side, side) for (r, c) in queries for m in maps] for i in range(n)]
    norm = _attention_norm(np.array(rows), uniform)  # one colour scale for every panel
    fig, axes = plt.subplots(n, 1 + k * len(queries), figsize=(1.9 * (1 + k * len(queries)) + 1, 2.0 * n + 0.6),
                             squeeze=False, layout="constrained")
    h, w = _np(images[0]).shape[-2:]
    scale = h / side
    for i in range(n):
        axes[i, 0].imshow(_rgb(images[i]))
        axes[i, 0].set_title(titles[i], fontsize=8)
        for col, ((r, c), b) in enumerate(((q, b) for q in queries for b in range(k)), 1):
            ax = axes[i, col]  # the weights alone, opaque: every colour drawn is on the colour bar
            im = ax.imshow(rows[i][col - 1], cmap="RdBu_r", norm=norm, interpolation="nearest",
                           extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            ax.plot((c + 0.5) * scale - 0.5, (r + 0.5) * scale - 0.5, "k+", ms=10, mew=2)
            if i == 0:
                ax.set_title(f"({r},{c}), block {b + 1}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(f"where a position (+; (row, col), counted from 0) attends: its row of AM ({t}x{t}) over the "
                 f"{side}x{side} map, one colour scale")
    fig.colorbar(im, ax=axes[:, 1:], shrink=0.8, label=_uniform_label(uniform))
    return _finish(fig, path, show, tight=False)


def plot_spread(spreads, stages, path=None, show=False):
    """How different the images' features are after each stage: {label: [value per stage]}, log scale."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (label, values), marker, ls in zip(spreads.items(), MARKERS * len(spreads), LINES * len(spreads)):
        ax.plot(range(len(stages)), [float(v) for v in values], marker=marker, ls=ls, label=label)
    ax.set_xticks(range(len(stages)), stages)
    ax.set(yscale="log", xlabel="stage", ylabel="spread between images\n(std over the batch)",
           title="how different the images look to the network, stage by stage")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _finish(fig, path, show)
