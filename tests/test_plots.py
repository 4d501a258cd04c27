"""The plots read right (one colour scale, white = uniform, every landmark named) and the LR finder names its bounds."""
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
import torch  # noqa: E402

from utils import plots  # noqa: E402
from utils.lr_finder import SAFE_DIV, SKIP_START, check_rule, find_lr, read_curve, suggest_lr  # noqa: E402

TITLES = ["cat", "dog", "ship"]


def images():
    return torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)


def attention(n, t, sharpness):
    return torch.softmax(sharpness * torch.randn(n, t, t), -1)


def colorbars(fig):
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def heat_norms(fig):
    return [im.norm for ax in fig.axes if not hasattr(ax, "_colorbar") for im in ax.images
            if im.get_cmap().name == "RdBu_r"]


def test_attention_panels_share_one_colour_bar_white_at_one_eighth():
    torch.manual_seed(0)
    maps = [attention(3, 8, s) for s in (0.5, 1, 2, 4)]
    fig = plots.plot_attention(images(), maps, TITLES)
    assert len(colorbars(fig)) == 1 and "uniform 1/8" in colorbars(fig)[0].get_ylabel()
    norms = heat_norms(fig)
    assert len(norms) == 3 * 4
    assert len({(n.vmin, n.vcenter, n.vmax) for n in norms}) == 1
    assert (norms[0].vmin, norms[0].vcenter) == (0, 1 / 8)
    assert norms[0].vmax == pytest.approx(max(m.max().item() for m in maps))
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"key j", "query i"} <= labels


def test_position_attention_panels_share_one_colour_bar_white_at_one_over_t():
    torch.manual_seed(0)
    maps = [attention(3, 64, s).to(torch.bfloat16) for s in (0.5, 3)]  # bf16, as autocast may leave them
    fig = plots.plot_attention(images(), maps, TITLES, [(4, 4), (1, 1)])
    assert len(colorbars(fig)) == 1
    norms = heat_norms(fig)
    assert len(norms) == 3 * 2 * 2 and len({(n.vmin, n.vcenter, n.vmax) for n in norms}) == 1
    assert norms[0].vcenter == 1 / 64 and norms[0].vmax >= 2 / 64


def test_tensors_reach_matplotlib_as_numpy_no_deprecation_warning(tmp_path):
    torch.manual_seed(0)
    cm = torch.randint(0, 50, (4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_attention(images(), [attention(3, 8, 1)], TITLES, path=tmp_path / "a.png")
        plots.plot_attention(images(), [attention(3, 16, 1)], TITLES, [(1, 1)], tmp_path / "p.png")
        plots.plot_confusion(cm, list("abcd"), tmp_path / "c.png")
        plots.plot_gallery(images(), [0, 1, 2], [1, 2, 3], list("abcd"), tmp_path / "g.png")
        plots.plot_curves({"epochs": [{"epoch": 1, "train_loss": torch.tensor(2.0), "test_loss": 1.9, "train_acc": 10,
                                       "test_acc": 12}]}, tmp_path / "e.png")
        plots.plot_spread({"x": torch.tensor([1.0, 0.1])}, ["pool", "block 1"], tmp_path / "s.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("a.png", "p.png", "c.png", "e.png", "s.png"))


def lr_curve():
    """An LR range test falling until it blows up at lrs[44]: min/2 (lrs[43] / 2) is above divergence / SAFE_DIV."""
    lrs = [10 ** (-5 + i / 10) for i in range(45)]
    return lrs, [2.3 - 0.01 * i for i in range(44)] + [20.0]


def test_lr_finder_plot_names_every_landmark_and_the_bound():
    lrs, losses = lr_curve()
    result = {"lrs": lrs, "losses": losses, "suggested": suggest_lr(lrs, losses, "safe", True),
              "steepest": suggest_lr(lrs, losses, "steepest"), **read_curve(lrs, losses, "safe", True)}
    ax = plots.plot_lr_finder(result).axes[0]
    legend = " | ".join(t.get_text() for t in ax.get_legend().get_texts())
    for name in ("loss minimum", "divergence", "suggested", "steepest"):
        assert name in legend
    assert f"divergence / {SAFE_DIV}" in ax.get_title()
    old = {k: result[k] for k in ("lrs", "losses", "suggested", "steepest")}  # a result saved before those keys
    legend = " | ".join(t.get_text() for t in plots.plot_lr_finder(old).axes[0].get_legend().get_texts())
    assert "suggested" in legend and "loss minimum" not in legend and "divergence" not in legend


def test_read_curve_says_which_bound_chose_the_lr():
    lrs, falling = lr_curve()
    r = read_curve(lrs, falling, "safe", diverged=True)
    assert r == {"loss_min_lr": lrs[43], "diverged_lr": lrs[44], "bound": f"divergence / {SAFE_DIV}"}
    assert suggest_lr(lrs, falling, "safe", diverged=True) == pytest.approx(lrs[44] / SAFE_DIV)
    early = [2.3 - 0.01 * i for i in range(25)] + [2.3] * 15 + [3.0, 5.0, 8.0, 11.0, 20.0]  # minimum at lrs[24]
    assert read_curve(lrs, early, "safe", diverged=True)["bound"] == "minimum / 2"
    assert suggest_lr(lrs, early, "safe", diverged=True) == pytest.approx(lrs[24] / 2)
    noisy_start = [1.0] + [2.3 - 0.01 * i for i in range(1, 44)] + [20.0]  # its lowest point is in the skipped start
    assert read_curve(lrs, noisy_start, "min/10")["loss_min_lr"] == lrs[43] and SKIP_START > 0
    assert read_curve(lrs, noisy_start, "min/10") == {"loss_min_lr": lrs[43], "diverged_lr": None, "bound": "min/10"}


def test_check_rule_accepts_min_over_any_positive_number_and_nothing_else():
    for rule in ("safe", "steepest", "min/10", "min/2", "min/7", "min/1.5"):
        check_rule(rule)
    for rule in ("min/x", "foo", "div/40", "min/0", "min/-2", "min/", "min/inf", "min/nan", None):
        with pytest.raises(ValueError, match=r"unknown LR rule .*'safe', 'min/N', 'steepest'"):
            check_rule(rule)
    lrs, losses = lr_curve()
    assert suggest_lr(lrs, losses, "min/7") == pytest.approx(lrs[43] / 7)


def test_find_lr_returns_the_landmarks():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(30)]
    model = torch.nn.Linear(4, 3)
    r = find_lr(model, torch.optim.Adam(model.parameters()), torch.nn.functional.cross_entropy, batches,
                num_iter=30, progress=False)
    assert r["bound"] in ("minimum / 2", f"divergence / {SAFE_DIV}", f"highest LR tested / {SAFE_DIV}")
    assert r["loss_min_lr"] in r["lrs"] and (r["diverged_lr"] is None) == (not r["diverged"])
    with pytest.raises(ValueError, match="unknown LR rule"):  # before the test runs
        find_lr(model, None, None, [], num_iter=30, rule="div/40")


def test_compare_legend_sits_below_the_curves(tmp_path):
    rows = [{"epoch": e, "test_acc": 40 + e, "train_loss": 2 - e / 10} for e in range(1, 6)]
    fig = plots.plot_compare({"a": {"epochs": rows}, "b": {"epochs": rows}, "c": {"epochs": rows}}, tmp_path / "c.png")
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    FigureCanvasAgg(fig).draw()  # the closed figure, laid out again as it was saved
    renderer = fig.canvas.get_renderer()
    legend_top = fig.legends[0].get_window_extent(renderer).y1
    assert all(legend_top < ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)
    assert len({line.get_marker() for line in fig.axes[0].lines}) == 3


def test_spread_labels_its_stages_on_a_log_scale():
    spreads = {"default": [1.0, 0.1, 0.01], "reference": [1.0, 1e-4, 1e-8]}
    ax = plots.plot_spread(spreads, ["pool", "block 1", "block 2"]).axes[0]
    assert ax.get_yscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["pool", "block 1", "block 2"]
    assert len(ax.lines) == 2 and "spread" in ax.get_ylabel()
