"""Plots of a training run: curves and LR schedule, LR range test, errors, attention.

Needs: matplotlib and numpy (inputs: tensors or arrays); copy it alone. Every plot_ function but plot_heatmap (a
panel) saves its figure to path, shows it when show=True (in a notebook), closes it and returns it.
"""
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patheffects import withStroke

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


def _ratio_norm(top, uniform):
    """Log colour scale of weight / uniform, white at uniform: from uniform / 2^k to uniform * 2^k, k >= 1 the
    smallest that reaches top (even above 3: see _weight_colorbar); a weight below the bottom takes its colour."""
    k = max(1, math.ceil(math.log2(max(top, uniform) / uniform - 1e-9)))
    k += k > 3 and k % 2
    return LogNorm(uniform / 2 ** k, uniform * 2 ** k)


def _ratio(k):
    return f"{2 ** k}\u00d7" if k >= 0 else f"1/{2 ** -k}\u00d7"  # 4x, 1/4x


def _weight_colorbar(im, ax, uniform, low, **kw):
    """The weights' bar: evenly spaced ticks at uniform x 2^k (each power of 2 up to 8x, then every second one, the
    ends included), each naming the ratio and the weight; low: some weight is below the bottom (an arrow there)."""
    k = round(math.log2(im.norm.vmax / uniform))
    powers = [j for j in range(-k, k + 1) if j % (1 if k <= 3 else 2) == 0]
    bar = im.figure.colorbar(im, ax=ax, extend="min" if low else "neither", **kw)
    bar.set_ticks([uniform * 2.0 ** j for j in powers], labels=[
        f"uniform {_fraction(uniform)}" if j == 0 else f"{_ratio(j)} = {uniform * 2.0 ** j:.2g}" for j in powers])
    bar.minorticks_off()
    bar.set_label("attention weight, log scale: times uniform (white)")
    return bar


def _fraction(uniform):
    """1/8 for 0.125; the number itself when it is no 1/n."""
    n = round(1 / uniform)
    return f"1/{n}" if math.isclose(n * uniform, 1) else f"{uniform:.3g}"


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


def plot_lr_finder(result, path=None, show=False, safe_div=6, diverge_th=5):
    """Smoothed loss against LR (log scale), whole (top) and near its minimum (bottom): the suggested max LR, the loss
    minimum, the steepest slope, the divergence point and level (diverge_th x the lowest loss), and for the "safe"
    rule its cap, the divergence point (or the highest LR tested) / safe_div, as utils/lr_finder.py has them."""
    lrs, losses = list(result["lrs"]), list(result["losses"])
    finite = [l for l in losses if math.isfinite(l)]
    diverged, bound = result.get("diverged_lr"), result.get("bound") or ""

    def loss_at(lr):
        return losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr))]

    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(7, 7.5), height_ratios=(1, 1.3), layout="constrained")
    for ax in axes:  # the same lines and marks on both panels
        ax.plot(lrs, losses, color="tab:blue", label="smoothed loss")
        ax.axvline(result["suggested"], color="tab:green", lw=7, alpha=0.35,  # wide: a candidate's line shows on it
                   label=f"suggested max LR {result['suggested']:.2e}" + (f" = {bound}" if bound else ""))
        if bound == "minimum / 2" or bound.endswith(f" / {safe_div}"):  # the "safe" rule: the smaller of two candidates
            cap = (diverged or max(lrs)) / safe_div
            ax.axvline(result["loss_min_lr"] / 2, color="black", ls="--", lw=1,
                       label=f"loss minimum / 2 = {result['loss_min_lr'] / 2:.2e}")
            ax.axvline(cap, color="tab:purple", ls="-.", lw=1.5,
                       label=f"cap: {'divergence point' if diverged else 'highest LR tested'} / {safe_div} = {cap:.2e}")
        for key, name, style in [("loss_min_lr", "loss minimum", dict(marker="v", color="black", ms=9)),
                                 ("steepest", "steepest slope", dict(marker="o", color="tab:red", ms=8, mfc="none",
                                                                     mew=2))]:
            if result.get(key):
                ax.plot(result[key], loss_at(result[key]), ls="none", label=f"{name} {result[key]:.2e}", **style)
        if diverged:
            ax.axvline(diverged, color="tab:orange", ls=":", lw=2, label=f"divergence point {diverged:.2e}")
        ax.grid(alpha=0.3)
    top = max(finite)
    if diverged:  # where the test stopped: the smoothed loss passed diverge_th times its lowest
        level = diverge_th * min(finite)
        axes[0].axhline(level, color="tab:orange", lw=1, label=f"divergence level {diverge_th} x lowest = {level:.3g}")
        top = max(top, level)
    pad = 0.04 * (top - min(finite))
    axes[0].set_ylim(min(finite) - pad, top + pad)  # every finite point and the level
    axes[1].set_ylim(min(finite) - 0.05, min(max(finite), 1.25 * finite[0]) + 0.05)  # the dip, where the LR is chosen
    title = "LR range test" + (f"\nsuggested max LR = {bound}" if bound else "")
    axes[0].set(xscale="log", ylabel="smoothed loss", title=f"{title}\nthe whole test")
    axes[1].set(xlabel="learning rate", ylabel="smoothed loss", title="zoom on the minimum")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
    return _finish(fig, path, show, tight=False)


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


def plot_heatmap(matrix, ax=None, *, uniform=None, departure=False, xlabel="key", ylabel="query", title=None,
                 colorbar=True, norm=None):
    """One attention matrix (rows: queries) on ax (None: a new figure); returns the image. Its weights on a log
    scale, white = uniform (default 1/keys), norm shared if given; departure=True: AM - uniform instead, on a
    linear scale symmetric around 0 (white), its largest departure also given as a share of uniform."""
    m = _np(matrix).astype(np.float64)
    n = m.shape[-1]
    uniform = uniform or 1 / n
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    if departure:
        m = m - uniform
        a = float(np.abs(m).max()) or uniform  # all uniform: any scale shows white
        norm = Normalize(-a, a)
    else:
        norm = norm or _ratio_norm(m.max(), uniform)
        low, m = bool(m.min() < norm.vmin), np.maximum(m, norm.vmin)  # clipped, not masked: zero stays coloured
    im = ax.imshow(m, cmap="RdBu_r", norm=norm, interpolation="nearest")
    if n <= 16:
        ax.set_xticks(range(n))
        ax.set_yticks(range(m.shape[0]))
    ax.tick_params(labelsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if colorbar and departure:
        ax.figure.colorbar(im, ax=ax, label=f"AM - {_fraction(uniform)} (white: 0 = uniform)\n"
                                            f"bar ends: \u00b1{a:.2g} = \u00b1{100 * a / uniform:.2g}% of uniform")
    elif colorbar:
        _weight_colorbar(im, ax, uniform, low)
    return im


def plot_attention(images, maps, titles, queries=None, path=None, show=False):
    """Each image beside its blocks' attention, on one log colour scale (white = uniform): each AM (B, T, T) whole,
    or for queries [(row, col), ...] over positions, where each query (+) attends: its row of AM over the A x A map."""
    n, t, maps = len(images), maps[0].shape[-1], [_np(m).astype(np.float64) for m in maps]
    side, uniform = math.isqrt(t), 1 / t
    small = bool(queries)  # where positions attend: more panels, smaller ones
    cells = [(q, b) for q in (queries if small else [None]) for b in range(len(maps))]  # each panel's (query, block)
    panels = [[maps[b][i] if q is None else maps[b][i, q[0] * side + q[1]].reshape(side, side) for q, b in cells]
              for i in range(n)]
    norm = _ratio_norm(max(p.max() for row in panels for p in row), uniform)  # one colour scale for every panel
    axis_names = ("column", "row") if small else ("key j", "query i")
    size = (1.9, 2.0) if small else (2.3, 2.3)  # inches a panel
    fig, axes = plt.subplots(n, len(cells) + 1, figsize=(size[0] * (len(cells) + 1) + 1.5, size[1] * n + 0.6),
                             squeeze=False, layout="constrained")
    for i in range(n):
        axes[i, 0].imshow(_np(images[i]).transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
        axes[i, 0].set_title(titles[i], fontsize=8 if small else 9)
        axes[i, 0].axis("off")
        for c, (ax, panel, (q, b)) in enumerate(zip(axes[i, 1:], panels[i], cells)):
            im = plot_heatmap(panel, ax, uniform=uniform, norm=norm, colorbar=False,  # the outer panels name the axes
                              xlabel=axis_names[0] if i == n - 1 else None, ylabel=axis_names[1] if c == 0 else None)
            ax.tick_params(labelbottom=i == n - 1, labelleft=c == 0)
            if q is not None:
                ax.plot(q[1], q[0], "k+", ms=10, mew=2, path_effects=[withStroke(linewidth=4, foreground="white")])
            if i == 0:
                ax.set_title(f"({q[0]},{q[1]}), block {b + 1}" if small else f"block {b + 1} AM",
                             fontsize=8 if small else None)
    fig.suptitle(f"where a position (+; (row, col), counted from 0) attends: its row of AM ({t}x{t}) over the "
                 f"{side}x{side} map, one colour scale" if small else
                 f"attention matrices AM ({t}x{t}; row i: query i's weights over the keys)")
    _weight_colorbar(im, axes[:, 1:], uniform, min(p.min() for row in panels for p in row) < norm.vmin, shrink=0.8)
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
