"""The plots read right (one colour scale, white = uniform, every colour on its bar, every landmark named and inside
the axes) and the LR finder names its bounds."""
import inspect
import math
import warnings
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
import torch  # noqa: E402

import analysis  # noqa: E402
from models import ModelConfig, Net  # noqa: E402
from utils import plots  # noqa: E402
from utils.data import CLASSES, Loader  # noqa: E402
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


def centre(norm):
    """The weight a log norm draws in the middle of its colours (white in RdBu_r)."""
    return math.sqrt(norm.vmin * norm.vmax)


def bar_ticks(bar_ax):
    return [(t, label.get_text()) for t, label in zip(bar_ax.get_yticks(), bar_ax.get_yticklabels())]


def test_attention_panels_share_one_log_colour_bar_white_at_one_eighth():
    torch.manual_seed(0)
    maps = [attention(3, 8, s) for s in (0.5, 1, 2, 4)]
    fig = plots.plot_attention(images(), maps, TITLES)
    (bar,) = colorbars(fig)
    assert "times uniform" in bar.get_ylabel()
    norms = heat_norms(fig)
    assert len(norms) == 3 * 4 and len({(n.vmin, n.vmax) for n in norms}) == 1
    assert centre(norms[0]) == pytest.approx(1 / 8) and norms[0].vmax >= max(m.max().item() for m in maps)
    ticks = bar_ticks(bar)
    assert (1 / 8, "uniform 1/8") in [(pytest.approx(t), label) for t, label in ticks]
    ratios = np.diff(np.log(np.array([t for t, _ in ticks])))  # evenly spaced on the bar's log scale
    assert len(ticks) >= 5 and np.allclose(ratios, ratios[0])
    assert sum(t < 1 / 8 for t, _ in ticks) == sum(t > 1 / 8 for t, _ in ticks) >= 2  # labelled below uniform too
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"key j", "query i"} <= labels


def test_position_attention_panels_share_one_colour_bar_white_at_one_over_t_with_row_and_column_ticks():
    torch.manual_seed(0)
    maps = [attention(3, 64, s).to(torch.bfloat16) for s in (0.5, 3)]  # bf16, as autocast may leave them
    fig = plots.plot_attention(images(), maps, TITLES, [(4, 4), (1, 1)])
    (bar,) = colorbars(fig)
    norms = heat_norms(fig)
    assert len(norms) == 3 * 2 * 2 and len({(n.vmin, n.vmax) for n in norms}) == 1
    assert centre(norms[0]) == pytest.approx(1 / 64) and norms[0].vmax >= 2 / 64
    ticks = bar_ticks(bar)
    assert any(label.startswith("1/4") and t < 1 / 64 for t, label in ticks)
    peaked = torch.full((1, 64, 64), 0.7 / 63)
    peaked[0, :, 0] = 0.3  # 19x uniform: the bar reaches past 16x, to 64x, and names both ends
    fig = plots.plot_attention(images()[:1], [peaked], TITLES[:1], [(4, 4)])
    ticks, norm = bar_ticks(colorbars(fig)[0]), heat_norms(fig)[0]
    assert norm.vmax >= 0.3 and (ticks[0][0], ticks[-1][0]) == (pytest.approx(norm.vmin), pytest.approx(norm.vmax))
    grids = [ax for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "RdBu_r"]
    assert all(list(ax.get_xticks()) == list(range(8)) == list(ax.get_yticks()) for ax in grids)
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"column", "row"} <= labels


def test_every_weight_drawn_is_a_colour_of_the_bar():
    am = torch.full((1, 8, 8), 1 / 8)
    am[0, 0] = torch.tensor([0.0, 1e-6, 0.1, 0.2, 0.2, 0.2, 0.15, 0.15])  # exact zero: masked on a log scale
    fig = plots.plot_attention(images()[:1], [am], TITLES[:1])
    (bar,) = colorbars(fig)
    panel = heat_norms(fig)[0], fig.axes[1].images[0].get_array()
    assert not np.ma.is_masked(panel[1]) and panel[1].min() >= panel[0].vmin  # clipped to the bar's bottom
    assert bar._colorbar.extend == "min"  # whose arrow says "or less"
    assert colorbars(plots.plot_attention(images()[:1], [torch.full((1, 8, 8), 1 / 8)], TITLES[:1]))[0] \
        ._colorbar.extend == "neither"


def test_heatmap_departure_is_symmetric_around_zero_and_says_its_scale():
    torch.manual_seed(0)
    am = torch.softmax(0.01 * torch.randn(8, 8), -1)  # as at initialisation: within 1% of uniform
    im = plots.plot_heatmap(am, departure=True)
    (bar,) = colorbars(im.figure)
    largest = (am - 1 / 8).abs().max().item()
    assert im.norm.vmin == -im.norm.vmax and im.norm.vmax == pytest.approx(largest)
    assert (im.norm.vmin + im.norm.vmax) / 2 == 0
    assert np.allclose(im.get_array(), am.numpy() - 1 / 8, atol=1e-7)
    assert "AM - 1/8" in bar.get_ylabel() and f"{100 * largest * 8:.2g}% of uniform" in bar.get_ylabel()
    weights = plots.plot_heatmap(am)  # without departure: the weights on the log scale around 1/8
    assert centre(weights.norm) == pytest.approx(1 / 8)


def test_attention_maps_titles_name_the_true_and_the_predicted_class(tmp_path, monkeypatch):
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([3, 5, 8, 3])
    net = Net(ModelConfig(token_blocks=2, positions=True))
    run = SimpleNamespace(net=net, precision="fp32", test_loader=Loader(x, y, batch_size=4))
    drawn = []
    monkeypatch.setattr(analysis.plots, "plot_attention", lambda images, maps, titles, *a, **k: drawn.append(titles))
    analysis.plot_attention_maps(run, tmp_path)
    with torch.no_grad():
        preds = net.eval()(next(iter(run.test_loader))[0]).argmax(1)
    expected = [f"{CLASSES[t]} (predicted: {CLASSES[p]})" for t, p in zip(y.tolist(), preds.tolist())]
    assert drawn == [expected, expected]  # positions and vector figures
    analysis.plot_attention_maps(run, tmp_path, titles=list("abcd"))
    assert drawn[-1] == list("abcd")


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


def lr_result(lrs, losses):
    return {"lrs": lrs, "losses": losses, "suggested": suggest_lr(lrs, losses, "safe", True),
            "steepest": suggest_lr(lrs, losses, "steepest"), **read_curve(lrs, losses, "safe", True)}


def legend_of(fig):
    return " | ".join(t.get_text() for legend in fig.legends for t in legend.get_texts())


def vlines_at(ax):
    return [line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]


def test_lr_finder_plot_names_every_landmark_and_the_bound():
    lrs, losses = lr_curve()
    result = lr_result(lrs, losses)
    fig = plots.plot_lr_finder(result)
    legend = legend_of(fig)
    for name in ("loss minimum", "divergence point", "divergence level", "suggested", "steepest",
                 f"cap: divergence point / {SAFE_DIV}", "loss minimum / 2"):
        assert name in legend
    assert f"divergence / {SAFE_DIV}" in fig.axes[0].get_title()
    old = {k: result[k] for k in ("lrs", "losses", "suggested", "steepest")}  # a result saved before those keys
    legend = legend_of(plots.plot_lr_finder(old))
    assert "suggested" in legend and "loss minimum" not in legend and "divergence" not in legend and "cap" not in legend


def test_lr_finder_whole_panel_holds_the_divergence_point_and_level():
    lrs, losses = lr_curve()
    whole, zoom = plots.plot_lr_finder(lr_result(lrs, losses)).axes[:2]
    bottom, top = whole.get_ylim()
    level = 5 * min(losses)
    assert bottom < min(losses) and top > max(losses[-1], level)  # the curve up to the divergence point, the level
    assert [line.get_ydata()[0] for line in whole.lines if list(line.get_xdata()) == [0, 1]] == [level]
    assert zoom.get_ylim()[1] < 3  # the zoom keeps the dip readable
    for ax in (whole, zoom):
        assert pytest.approx(lrs[44] / SAFE_DIV) in vlines_at(ax) and pytest.approx(lrs[43] / 2) in vlines_at(ax)
        assert pytest.approx(lrs[44]) in vlines_at(ax)


def test_lr_finder_draws_the_cap_when_the_minimum_chose_the_lr():
    lrs = [10 ** (-5 + i / 10) for i in range(45)]
    early = [2.3 - 0.01 * i for i in range(25)] + [2.3] * 15 + [3.0, 5.0, 8.0, 11.0, 20.0]  # minimum at lrs[24]
    fig = plots.plot_lr_finder(lr_result(lrs, early))
    assert "= minimum / 2" in legend_of(fig) and f"cap: divergence point / {SAFE_DIV}" in legend_of(fig)
    assert pytest.approx(lrs[44] / SAFE_DIV) in vlines_at(fig.axes[0])
    assert inspect.signature(plots.plot_lr_finder).parameters["safe_div"].default == SAFE_DIV


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
