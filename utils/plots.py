"""Plots of a training run: curves, LR range test, LR schedule, errors, attention.

Needs: matplotlib (and torch tensors as input). Nothing here is CIFAR-specific: class
names and images come in as arguments; copy it alone into another project. Every function
draws one figure, saves it as a PNG when given a path, shows it when show=True (in a
notebook) and closes it otherwise, so scripts never pile up open figures.
"""
import math
from pathlib import Path

import matplotlib.pyplot as plt


def _finish(fig, path, show, tight=True):
    if tight:
        fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    if show:
        plt.show()
    plt.close(fig)
    return fig


def _curve(history, key, ylabel, path, show):
    rows = history["epochs"]
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
    ax.plot(epochs, [r[f"test_{key}"] for r in rows], "s-", label="test")
    ax.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel} per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path, show)


def plot_losses(history, path=None, show=False):
    """Train and test loss per epoch."""
    return _curve(history, "loss", "loss", path, show)


def plot_accuracies(history, path=None, show=False):
    """Train and test accuracy (%) per epoch."""
    return _curve(history, "acc", "accuracy (%)", path, show)


def plot_compare(histories, path=None, show=False):
    """Test accuracy and train loss per epoch of several runs: {name: fit's history}."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        rows = history["epochs"]
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["test_acc"] for r in rows], "o-", label=f"{name} (final {rows[-1]['test_acc']:.2f}%)")
        axes[1].plot(epochs, [r["train_loss"] for r in rows], "o-", label=name)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    axes[1].set(xlabel="epoch", ylabel="train loss", title="train loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, path, show)


def plot_lr_finder(result, path=None, show=False):
    """Smoothed loss against LR (log scale), the suggested max LR and the steepest point marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lrs"], result["losses"])
    ax.axvline(result["suggested"], color="tab:green", ls="--", label=f"suggested max LR {result['suggested']:.2e}")
    if result.get("steepest"):
        ax.axvline(result["steepest"], color="tab:red", ls=":", label=f"steepest slope {result['steepest']:.2e}")
    finite = [l for l in result["losses"] if math.isfinite(l)]
    ax.set_ylim(min(finite) - 0.05, min(max(finite), 1.25 * finite[0]) + 0.05)  # the diverged tail would flatten the rest
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="LR range test")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path, show)


def plot_schedule(step_lrs, steps_per_epoch, path=None, show=False):
    """The learning rate used at every step, against epochs."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([i / steps_per_epoch for i in range(len(step_lrs))], step_lrs)
    ax.set(xlabel="epoch", ylabel="learning rate", title="one-cycle schedule (per batch)")
    ax.grid(alpha=0.3)
    return _finish(fig, path, show)


def plot_per_class(cm, classes, path=None, show=False):
    """Accuracy of each class from a confusion matrix (rows: true class)."""
    acc = 100 * cm.diag().float() / cm.sum(1).clamp(min=1).float()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(classes, acc.tolist())
    for i, a in enumerate(acc.tolist()):
        ax.text(i, a + 1, f"{a:.0f}", ha="center")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title="per-class accuracy")
    ax.tick_params(axis="x", rotation=45)
    return _finish(fig, path, show)


def plot_confusion(cm, classes, path=None, show=False):
    """Confusion matrix with counts (rows: true class, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            v = cm[i, j].item()
            ax.text(j, i, v, ha="center", va="center", fontsize=8, color="white" if v > cm.max().item() / 2 else "black")
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
        ax.imshow(img.permute(1, 2, 0).cpu())
        ax.set_title(f"{classes[t]}\n-> {classes[p]}", fontsize=9, color="tab:red")
    fig.suptitle("misclassified test images (true -> predicted)")
    return _finish(fig, path, show)


def plot_attention(images, maps, titles, path=None, show=False):
    """For each image, the image and its blocks' 8x8 attention matrices as heatmaps."""
    n, k = len(images), len(maps)
    vmax = max(float(m.max()) for m in maps)  # one colour scale for every panel
    fig, axes = plt.subplots(n, k + 1, figsize=(2.2 * (k + 1), 2.2 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].permute(1, 2, 0).cpu())
        axes[i, 0].set_title(titles[i], fontsize=9)
        axes[i, 0].axis("off")
        for b in range(k):
            ax = axes[i, b + 1]
            im = ax.imshow(maps[b][i].cpu(), cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"block {b + 1} AM")
    fig.suptitle("attention matrices AM (8x8; row i: weights over V's 8 entries)")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    uniform = float(maps[0][0].sum(-1).mean()) / maps[0].shape[-1]  # 1/8 when rows sum to 1
    fig.colorbar(im, cax=fig.add_axes((0.92, 0.15, 0.015, 0.7)), label=f"weight (uniform: {uniform:.3f})")
    return _finish(fig, path, show, tight=False)


def plot_position_attention(images, maps, titles, queries, path=None, show=False):
    """Attention over positions, drawn over the images, as ViT papers do.

    maps: the blocks' (B, T, T) attention matrices (T = A*A positions of an A x A map);
    queries: (row, col) positions of that map, marked with a cross. Row i: image i, then
    where each query attends in each block (its row of AM as an A x A heatmap, stretched
    over the image).
    """
    n, k, side = len(images), len(maps), math.isqrt(maps[0].shape[-1])
    fig, axes = plt.subplots(n, 1 + k * len(queries), figsize=(1.9 * (1 + k * len(queries)), 2.0 * n), squeeze=False)
    h, w = images.shape[-2:]
    scale = h / side
    for i in range(n):
        axes[i, 0].imshow(images[i].permute(1, 2, 0).cpu())
        axes[i, 0].set_title(titles[i], fontsize=8)
        for col, ((r, c), b) in enumerate(((q, b) for q in queries for b in range(k)), 1):
            ax = axes[i, col]
            heat = maps[b][i, r * side + c].reshape(side, side).float().cpu()
            ax.imshow(images[i].permute(1, 2, 0).cpu())
            ax.imshow(heat, cmap="inferno", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
            ax.plot((c + 0.5) * scale - 0.5, (r + 0.5) * scale - 0.5, "c+", ms=10, mew=2)
            if i == 0:
                ax.set_title(f"({r},{c}), block {b + 1}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(f"where a position (+) attends: its row of AM ({side * side}x{side * side}) over the {side}x{side} map, "
                 "each panel on its own colour scale")
    return _finish(fig, path, show)
