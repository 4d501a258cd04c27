"""Training on real slices of CIFAR-10: learning, determinism, divergence, checkpoints, LR finder."""
import math

import pytest
import torch

import train as recipe
from utils.lr_finder import find_lr, suggest_lr
from utils.training import CHECKPOINT, DivergenceError, load_checkpoint


def small_cfg(cifar_dir, **kw):
    base = dict(train_subset=1024, test_subset=512, batch_size=128, epochs=2, max_lr=5e-3, device="cpu",
                data_dir=str(cifar_dir), download=False)
    return recipe.RunConfig(**{**base, **kw})


def test_short_run_on_real_slice_lowers_the_loss(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir, train_subset=4096, epochs=3), verbose=False)
    h = recipe.train_model(run, 5e-3, progress=False)["epochs"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] < math.log(10)
    assert h[-1]["test_loss"] < math.log(10) - 0.1
    assert h[-1]["test_acc"] > 20


def test_same_seed_gives_identical_metrics(cifar_dir):
    runs = [recipe.train_model(recipe.setup(small_cfg(cifar_dir), verbose=False), 5e-3, progress=False)
            for _ in range(2)]
    assert runs[0]["epochs"] == runs[1]["epochs"] and runs[0]["step_lrs"] == runs[1]["step_lrs"]


def test_non_finite_loss_stops_at_once_and_keeps_last_good_checkpoint(cifar_dir, tmp_path):
    run = recipe.setup(small_cfg(cifar_dir, epochs=3), verbose=False)
    calls = {"n": 0}
    steps = len(run.train_loader)

    def criterion(out, y):  # real loss, until the 3rd step of epoch 2 (epoch 1: 8 steps + 1 evaluation)
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] == steps + 1 + 3 else loss

    run.criterion = criterion
    with pytest.raises(DivergenceError, match=r"epoch 2, step 3/8, lr [0-9.e-]+: .*lower max_lr"):
        recipe.train_model(run, 5e-3, out_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert len(state["history"]["epochs"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_of_another_configuration_is_refused(cifar_dir, tmp_path):
    recipe.train_model(recipe.setup(small_cfg(cifar_dir, epochs=1), verbose=False), 5e-3, out_dir=tmp_path, progress=False)
    other = recipe.setup(small_cfg(cifar_dir, epochs=1, seed=1, model={"residual": False}), verbose=False)
    with pytest.raises(ValueError, match=r"another configuration.*model: checkpoint \{\}, now \{'residual': False\}.*seed: checkpoint 0, now 1"):
        recipe.train_model(other, 5e-3, out_dir=tmp_path, resume=True, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT)


def test_lr_finder_suggests_and_restores_model_and_optimizer(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir), verbose=False)
    opt = recipe.make_optimizer(run, 1e-3)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    res = find_lr(run.model, opt, run.criterion, run.train_loader, device=run.device, precision=run.precision,
                  end_lr=1e-2, num_iter=30)
    assert len(res["lrs"]) == 30 and not res["diverged"]
    assert 1e-5 <= res["suggested"] <= 1 and math.isfinite(res["steepest"])
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert opt.state_dict()["state"] == {} and opt.param_groups[0]["lr"] == 1e-3


def test_lr_finder_stops_early_on_divergence(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir), verbose=False)
    res = find_lr(run.model, recipe.make_optimizer(run, 1e-3), run.criterion, run.train_loader,
                  device=run.device, precision=run.precision, start_lr=1e-2, end_lr=1e6, num_iter=100)
    assert res["diverged"] and len(res["lrs"]) < 100
    assert res["suggested"] < 1e3


def test_suggestion_ignores_the_diverged_tail():
    lrs = [10 ** (-5 + i / 10) for i in range(50)]
    losses = [2.3 - 0.02 * i for i in range(30)] + [float("nan")] * 20
    assert suggest_lr(lrs, losses, "min/10") == pytest.approx(lrs[29] / 10)
    assert suggest_lr(lrs, losses) == pytest.approx(lrs[29] / 2)
    with pytest.raises(ValueError, match="unknown LR rule"):
        suggest_lr(lrs, losses, "median")


def test_unknown_run_option_is_rejected():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['epoch'\]; valid options: \['preset'"):
        recipe.RunConfig.from_dict({"epoch": 3})
