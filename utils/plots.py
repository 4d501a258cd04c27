"""Plots of a training run: curves and LR schedule, LR range test, errors, attention.

Needs: matplotlib and numpy (inputs: tensors or arrays); copy it alone. Every plot_ function but plot_heatmap (a
panel) saves its figure to path, shows it when show=True (in a notebook), closes it and returns it.
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
        return (x.detach().cpu().float() if x.is_floating_point() else x.detach().cpu()).numpy()
    return np.asarray(x)


def _attention_norm(values, uniform):
    """Diverging norm for attention weights: 0 at the bottom, white at uniform, at least 2 * uniform at the top."""
    return TwoSlopeNorm(vcenter=uniform, vmin=0, vmax=max(float(np.max(values)), 2 * uniform))


def _uniform_label(uniform):
    n = round(1 / uniform)
    return f"attention weight (white = uniform {f'1/{n} = ' if math.isclose(n * uniform, 1) else ''}{uniform:.3g})"


def plot_curves(history, path=None, show=False):
    """Train and test loss and accuracy per epoch, and the LR at every step when the history has step_lrs."""
    rows, lrs = history["epochs"], history.get("step_lrs")
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3 if lrs else 2, figsize=(16 if lrs else 11, 4))
    for ax, (key, label) in zip(axes, (("loss", "loss"), ("acc", "accuracy (%)"))):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
        ax.plot(epochs, [r[f"test_{key}"] for r in rows], "s-", label="test")
        ax.set(xlabel="epoch", ylabel=label, title=f"{label} per epoch")
        ax.legend()
    if lrs:  # step i of len(lrs) falls at epoch i * epochs / len(lrs)
        axes[2].plot([i * len(rows) / len(lrs) for i in range(len(lrs))], lrs)
        axes[2].set(xlabel="epoch", ylabel="learning rate", title="one-cycle schedule (per batch)")
    for ax in axes:
        ax.grid(alpha=0.3)
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
    for key, name, style in [("loss_min_lr", "loss minimum", dict(marker="v", color="black", ms=9)),
                             ("steepest", "steepest slope", dict(marker="o", color="tab:red", ms=8, mfc="none", mew=2))]:
        if result.get(key):
            ax.plot(result[key], loss_at(result[key]), ls="none", label=f"{name} {result[key]:.2e}", **style)
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


def plot_confusion(cm, classes, path=None, show=False):
    """Confusion matrix with counts (rows: true class, columns: predicted)."""
    cm = _np(cm)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    im = ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):  # row i: true class, column j: predicted
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
        ax.imshow(_np(img).transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
        ax.set_title(f"{classes[t]}\n-> {classes[p]}", fontsize=9, color="tab:red")
    fig.suptitle("misclassified test images (true -> predicted)")
    return _finish(fig, path, show)


def plot_heatmap(matrix, ax=None, *, uniform=None, xlabel="key", ylabel="query", title=None, colorbar=True,
                 vmax=None):
    """One attention matrix (rows: queries) on ax (None: a new figure), white = uniform (default 1/keys), shared
    vmax if given; returns the image."""
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


def plot_attention(images, maps, titles, queries=None, path=None, show=False):
    """Each image beside its blocks' attention, on one colour scale (white = uniform): each AM (B, T, T) whole, or
    for queries [(row, col), ...] over positions, where each query (+) attends: its row of AM over the A x A map."""
    n, t, maps = len(images), maps[0].shape[-1], [_np(m) for m in maps]
    side, uniform = math.isqrt(t), 1 / t
    small = bool(queries)  # where positions attend: more panels, smaller ones
    cells = [(q, b) for q in (queries if small else [None]) for b in range(len(maps))]  # each panel's (query, block)
    panels = [[maps[b][i] if q is None else maps[b][i, q[0] * side + q[1]].reshape(side, side) for q, b in cells]
              for i in range(n)]
    norm = _attention_norm(np.array(panels), uniform)  # one colour scale for every panel
    size = (1.9, 2.0) if small else (2.3, 2.3)  # inches a panel
    fig, axes = plt.subplots(n, len(cells) + 1, figsize=(size[0] * (len(cells) + 1) + 1, size[1] * n + 0.6),
                             squeeze=False, layout="constrained")
    h, w = _np(images[0]).shape[-2:]
    for i in range(n):
        axes[i, 0].imshow(_np(images[i]).transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
        axes[i, 0].set_title(titles[i], fontsize=8 if small else 9)
        axes[i, 0].axis("off")
        for ax, panel, (q, b) in zip(axes[i, 1:], panels[i], cells):
            if q is None:  # row i: query i's weights over the keys; the outer panels name the axes
                im = plot_heatmap(panel, ax, uniform=uniform, vmax=norm.vmax, colorbar=False,
                                  xlabel="key j" if i == n - 1 else None, ylabel="query i" if b == 0 else None)
                ax.tick_params(labelbottom=i == n - 1, labelleft=b == 0)
            else:  # the weights alone, opaque: every colour drawn is on the colour bar
                im = ax.imshow(panel, cmap="RdBu_r", norm=norm, interpolation="nearest",
                               extent=(-0.5, w - 0.5, h - 0.5, -0.5))
                ax.plot((q[1] + 0.5) * w / side - 0.5, (q[0] + 0.5) * h / side - 0.5, "k+", ms=10, mew=2)
                ax.axis("off")
            if i == 0:
                ax.set_title(f"({q[0]},{q[1]}), block {b + 1}" if small else f"block {b + 1} AM",
                             fontsize=8 if small else None)
    fig.suptitle(f"where a position (+; (row, col), counted from 0) attends: its row of AM ({t}x{t}) over the "
                 f"{side}x{side} map, one colour scale" if small else
                 f"attention matrices AM ({t}x{t}; row i: query i's weights over the keys)")
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
