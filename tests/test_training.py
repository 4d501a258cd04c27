"""Training on real slices of CIFAR-10: learning, determinism, divergence, checkpoints, LR finder."""
import math

import pytest
import torch
import torch.nn.functional as F

import train as recipe
from utils.device import grad_scaler
from utils.lr_finder import find_lr, suggest_lr
from utils.schedule import one_cycle_scheduler
from utils.training import SYNC_EVERY, Checkpoint, DivergenceError, degrading, health, train_epoch

CHECKPOINT = "checkpoint.pt"


class HostReads(torch.overrides.TorchFunctionMode):
    """Counts reads of tensor values into Python: each one is a host sync on a GPU."""
    READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu", "__format__"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", "") in self.READS
        return func(*args, **(kwargs or {}))


class FailingAt(torch.nn.Module):
    """The run's model, except at its `call`-th forward pass (training and evaluation batches alike), where
    make_bad(logits) is returned."""

    def __init__(self, model, call, make_bad):
        super().__init__()
        self.model, self.call, self.make_bad, self.calls = model, call, make_bad, 0

    def forward(self, x):
        self.calls += 1
        out = self.model(x)
        return self.make_bad(out) if self.calls == self.call else out


# fp16 on a CPU is emulated (10-100x slower than bf16): its runs take a few small batches, 3 steps an epoch
FP16_SMALL = dict(train_subset=96, test_subset=32, batch_size=32)


def small_cfg(cifar_dir, **kw):
    base = dict(train_subset=1024, test_subset=512, batch_size=128, epochs=2, max_lr=5e-3, device="cpu",
                data_dir=str(cifar_dir), download=False)
    return recipe.RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def healthy_run(cifar_dir):
    """A healthy default run, 5 epochs on 4,096 images at a sound LR: (its history, its log lines); read only."""
    lines = []
    history = recipe.train(recipe.setup(small_cfg(cifar_dir, train_subset=4096, epochs=5), verbose=False), 5e-3,
                           progress=False, log=lines.append)
    return history, tuple(lines)


def test_short_run_on_real_slice_lowers_the_loss(healthy_run):
    h = healthy_run[0]["epochs"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] < math.log(10)
    assert h[-1]["test_loss"] < math.log(10) - 0.1
    assert h[-1]["test_acc"] > 20


def test_same_seed_gives_identical_metrics(cifar_dir):
    runs = [recipe.train(recipe.setup(small_cfg(cifar_dir), verbose=False), 5e-3, progress=False)
            for _ in range(2)]
    assert runs[0]["epochs"] == runs[1]["epochs"] and runs[0]["step_lrs"] == runs[1]["step_lrs"]


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(cifar_dir, tmp_path, precision):
    cfg = small_cfg(cifar_dir, epochs=3, precision=precision, **FP16_SMALL if precision == "fp16" else {})
    run = recipe.setup(cfg, verbose=False)
    calls = len(run.train_loader) + len(run.test_loader)  # epoch 1: its steps and its evaluation's batches
    run.model = FailingAt(run.model, calls + 3, lambda out: out * float("nan"))  # step 3 of epoch 2
    with pytest.raises(DivergenceError, match=r"epoch 2: loss became nan at step 3, lr [0-9.e-]+: .*lower max_lr.*"
                                              r"the checkpoint after epoch 1 is"):
        recipe.train(run, 5e-3, out_dir=tmp_path, progress=False)
    state = Checkpoint(tmp_path / CHECKPOINT, resume=True).read()
    assert len(state["history"]["epochs"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_finite_blow_up_stops_like_nan(cifar_dir, tmp_path):
    run = recipe.setup(small_cfg(cifar_dir, epochs=3), verbose=False)
    run.model = FailingAt(run.model, 5, lambda out: out * 3e7)  # the 'LR at the loss minimum' row: 7e7 in epoch 4
    with pytest.raises(DivergenceError, match=r"epoch 1: loss became [0-9.e+]+ at step 5, lr .*above 10 x ln 10 = 23.0.*lower max_lr") as e:
        recipe.train(run, 5e-3, out_dir=tmp_path, progress=False)
    assert "checkpoint" not in str(e.value) and not (tmp_path / CHECKPOINT).exists()  # no epoch finished: nothing to keep


def test_a_training_epoch_reads_from_the_device_only_every_n_steps(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir, train_subset=1024, batch_size=8), verbose=False)  # 128 steps
    opt = recipe.make_optimizer(run, 1e-3)
    with HostReads() as reads:
        train_epoch(run.model, run.train_loader, opt, grad_clip=0, precision=run.precision, progress=True)
    assert len(run.train_loader) == 128
    assert reads.count <= 128 // SYNC_EVERY + 1  # the old loop read the loss and the accuracy every step: 256


def test_a_run_stuck_at_chance_says_so_and_a_healthy_one_does_not(cifar_dir, healthy_run):
    lines = []
    stuck = recipe.setup(small_cfg(cifar_dir, preset="reference", epochs=4, train_subset=512, test_subset=2000),
                         verbose=False)
    recipe.train(stuck, 1e-7, progress=False, log=lines.append)  # an LR that never moves it off chance
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and lines.index(warnings[0]) == 3  # after epoch 3, once
    assert "3 epochs at chance" in warnings[0] and "peak LR 1.00e-07" in warnings[0] and "min/10" in warnings[0]
    healthy = healthy_run[1]
    assert len(healthy) == 5 and not [line for line in healthy if "warning" in line]


class LabelsScrambledFrom:
    """A loader whose labels are shuffled within each batch from epoch `start` on: the run then unlearns."""

    def __init__(self, loader, start):
        self.loader, self.start, self.epoch = loader, start, 1

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.loader.set_epoch(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epoch)
        for x, y in self.loader:
            yield x, (y[torch.randperm(len(y), generator=g)] if self.epoch >= self.start else y)


def test_a_degrading_run_is_named_with_its_lr_and_healthy_runs_of_both_presets_are_not(cifar_dir, healthy_run):
    run = recipe.setup(small_cfg(cifar_dir, train_subset=4096, epochs=6), verbose=False)
    run.train_loader = LabelsScrambledFrom(run.train_loader, start=4)
    lines = []
    h = recipe.train(run, 5e-3, progress=False, log=lines.append)["epochs"]
    warnings = [line for line in lines if line.startswith("warning:")]
    assert h[-1]["train_acc"] < max(r["train_acc"] for r in h) - 15  # it did unlearn
    assert len(warnings) == 1 and lines.index(warnings[0]) == 5  # after the second bad epoch (5), once
    assert "degrading" in warnings[0] and f"at LR {h[4]['lr']:.2e}" in warnings[0] and "'safe' LR rule" in warnings[0]
    healthy = {"default": healthy_run[1], "reference": []}  # the reference's slow start may see the chance warning
    recipe.train(recipe.setup(small_cfg(cifar_dir, preset="reference", train_subset=2048, epochs=5), verbose=False),
                 5e-3, progress=False, log=healthy["reference"].append)
    for preset, lines in healthy.items():
        assert len([line for line in lines if line.startswith("Epoch")]) == 5, preset
        assert not [line for line in lines if "degrading" in line], preset


def test_degrading_needs_a_sustained_rise_not_one_bad_epoch():
    rows = [{"train_loss": l, "train_acc": a} for l, a in [(1.5, 45), (1.2, 57), (1.1, 61), (1.05, 62.6)]]
    assert not degrading(rows + [{"train_loss": 1.5, "train_acc": 50}])  # one bad epoch
    assert degrading(rows + [{"train_loss": 1.5, "train_acc": 50}, {"train_loss": 2.5, "train_acc": 20}])
    assert not degrading(rows + [{"train_loss": 1.1, "train_acc": 60}, {"train_loss": 1.12, "train_acc": 59}])  # noise


def test_gradient_clipping_bounds_the_norm_the_optimizer_sees(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir), verbose=False)
    opt = recipe.make_optimizer(run, 1e-3)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(
        torch.cat([p.grad.flatten() for g in o.param_groups for p in g["params"]]).norm().item()))
    train_epoch(run.model, run.train_loader, opt, precision=run.precision, progress=False, grad_clip=0.05)
    assert len(seen) == len(run.train_loader) and max(seen) <= 0.05 * 1.001


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_interrupted_training_resumes_to_the_uninterrupted_result(cifar_dir, tmp_path, precision):
    """What the notebook's stop button does: KeyboardInterrupt mid-epoch, then RESUME = True."""
    cfg = small_cfg(cifar_dir, epochs=3, precision=precision, **FP16_SMALL if precision == "fp16" else {})
    whole = recipe.train(recipe.setup(cfg, verbose=False), 5e-3, out_dir=tmp_path / "whole", progress=False)
    run = recipe.setup(cfg, verbose=False)

    def stop(out):
        raise KeyboardInterrupt
    run.model = FailingAt(run.model, len(run.train_loader) + len(run.test_loader) + 2, stop)
    with pytest.raises(recipe.Interrupted, match=r"interrupted in epoch 2; the checkpoint after epoch 1 is .*checkpoint.pt"):
        recipe.train(run, 5e-3, out_dir=tmp_path, progress=False)
    resumed = recipe.train(recipe.setup(cfg, verbose=False), 5e-3, out_dir=tmp_path, resume=True, progress=False)
    assert resumed["epochs"] == whole["epochs"] and resumed["step_lrs"] == whole["step_lrs"]
    a, b = (Checkpoint(d / CHECKPOINT, resume=True).read() for d in (tmp_path / "whole", tmp_path))
    assert a["scaler"] == b["scaler"]  # fp16: the scaler's scale and growth count carried over the restart
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resuming_in_another_precision_is_refused_naming_it(cifar_dir, tmp_path):
    first = recipe.setup(small_cfg(cifar_dir, epochs=1, train_subset=256), verbose=False)  # "auto"
    recipe.train(first, 5e-3, out_dir=tmp_path, progress=False)
    other = "fp16" if first.precision != "fp16" else "fp32"
    again = recipe.setup(small_cfg(cifar_dir, epochs=1, train_subset=256, precision=other), verbose=False)
    with pytest.raises(ValueError, match=rf"precision: checkpoint '{first.precision}', now '{other}'"):
        recipe.train(again, 5e-3, out_dir=tmp_path, resume=True, progress=False)


def test_fp16_with_a_live_scaler_trains_and_finds_an_lr(cifar_dir):
    """The T4's path (fp16 autocast + GradScaler + fused Adam), run on the CPU."""
    run = recipe.setup(small_cfg(cifar_dir, precision="fp16", epochs=2, train_subset=192, test_subset=32, batch_size=16),
                       verbose=False)  # 12 steps an epoch: epoch 1's mean loss already under ln 10
    res = find_lr(run.model, recipe.make_optimizer(run, 1e-5), F.cross_entropy, run.train_loader,
                  amp_dtype=torch.float16, lr_range=(1e-5, 1e-1), num_iter=12, progress=False)
    assert len(res["lrs"]) == 12 and all(math.isfinite(v) for v in res["losses"]) and res["suggested"] > 0
    optimizer = recipe.make_optimizer(run, 5e-3)
    scheduler = one_cycle_scheduler(optimizer, 5e-3, 2, len(run.train_loader), 5 / 24)
    scaler = grad_scaler(run.device, "fp16")
    losses = [train_epoch(run.model, run.train_loader, optimizer, scheduler, grad_clip=1.0, precision="fp16",
                          scaler=scaler, progress=False)["loss"] for _ in range(2)]
    assert scaler.is_enabled() and scaler.get_scale() > 1  # a live scaler, still scaling
    assert losses[-1] < losses[0] < math.log(10)


def test_checkpoint_of_another_configuration_is_refused(cifar_dir, tmp_path):
    recipe.train(recipe.setup(small_cfg(cifar_dir, epochs=1), verbose=False), 5e-3, out_dir=tmp_path, progress=False)
    other = recipe.setup(small_cfg(cifar_dir, epochs=1, seed=1, model={"residual": False}), verbose=False)
    with pytest.raises(ValueError, match=r"another configuration.*model: checkpoint \{\}, now \{'residual': False\}.*seed: checkpoint 0, now 1"):
        recipe.train(other, 5e-3, out_dir=tmp_path, resume=True, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        Checkpoint(tmp_path / CHECKPOINT, resume=True).read()


def test_lr_finder_suggests_and_restores_model_and_optimizer(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir), verbose=False)
    opt = recipe.make_optimizer(run, 1e-3)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    res = find_lr(run.model, opt, F.cross_entropy, run.train_loader, lr_range=(1e-5, 1e-2), num_iter=30, progress=False)
    assert len(res["lrs"]) == 30 and not res["diverged"]
    assert 1e-5 <= res["suggested"] <= 1 and math.isfinite(res["steepest"])
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert opt.state_dict()["state"] == {} and opt.param_groups[0]["lr"] == 1e-3


def test_lr_finder_stops_early_on_divergence(cifar_dir):
    run = recipe.setup(small_cfg(cifar_dir), verbose=False)
    res = find_lr(run.model, recipe.make_optimizer(run, 1e-3), F.cross_entropy, run.train_loader,
                  lr_range=(1e-2, 1e6), num_iter=100, progress=False)
    assert res["diverged"] and len(res["lrs"]) < 100
    assert res["suggested"] < 1e3


def test_suggestion_ignores_the_diverged_tail():
    lrs = [10 ** (-5 + i / 10) for i in range(50)]
    losses = [2.3 - 0.02 * i for i in range(30)] + [float("nan")] * 20
    assert suggest_lr(lrs, losses, "min/10") == pytest.approx(lrs[29] / 10)
    assert suggest_lr(lrs, losses) == pytest.approx(lrs[29] / 2)
    with pytest.raises(ValueError, match="unknown LR rule"):
        suggest_lr(lrs, losses, "median")


def test_safe_rule_caps_the_minimum_by_the_divergence_point():
    lrs = [10 ** (-5 + i / 10) for i in range(45)]
    falling = [2.3 - 0.01 * i for i in range(44)] + [20.0]  # the minimum just before the blow-up at lrs[44]
    assert suggest_lr(lrs, falling, "safe", diverged=True) == pytest.approx(lrs[44] / 6)  # lrs[43]/2 is higher
    early = [2.3 - 0.01 * i for i in range(25)] + [2.3] * 15 + [3.0, 5.0, 8.0, 11.0, 20.0]  # minimum at lrs[24]
    assert suggest_lr(lrs, early, "safe", diverged=True) == pytest.approx(lrs[24] / 2)  # under the cap: min/2


def test_unknown_run_option_is_rejected():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['epoch'\]; valid options: \['preset'"):
        recipe.recipe(epoch=3)


def test_predict_keeps_every_batch_when_the_model_reuses_its_output_memory():
    """A compiled model replaying a CUDA graph writes each batch's output into the same memory."""
    from utils.training import predict

    class StaticOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.out = torch.zeros(4, 3)

        def forward(self, x):
            return self.out.copy_(x[:, :, 0, 0])

    batches = [(torch.full((4, 3, 1, 1), float(i)), torch.zeros(4, dtype=torch.long)) for i in range(3)]
    logits, labels = predict(StaticOutput(), batches)
    assert logits[:, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] * 4 and len(labels) == 12


def test_a_new_run_into_a_used_folder_never_points_at_the_old_runs_checkpoint(cifar_dir, tmp_path):
    """Interrupted in its epoch 1, a second run names no checkpoint: the first run's one is gone."""
    recipe.train(recipe.setup(small_cfg(cifar_dir, epochs=2), verbose=False), 5e-3, out_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).exists()
    second = recipe.setup(small_cfg(cifar_dir, epochs=2, seed=1), verbose=False)

    def stop(out):
        raise KeyboardInterrupt
    second.model = FailingAt(second.model, 2, stop)
    with pytest.raises(recipe.Interrupted) as e:
        recipe.train(second, 5e-3, out_dir=tmp_path, progress=False)
    assert str(e.value) == "interrupted in epoch 1" and not (tmp_path / CHECKPOINT).exists()


def test_ctrl_c_while_evaluating_names_the_last_checkpoint_this_run_wrote(cifar_dir, tmp_path):
    """The stop button pressed during epoch 2's test pass: the message says epoch 2 and offers epoch 1's checkpoint."""
    run = recipe.setup(small_cfg(cifar_dir, epochs=3), verbose=False)

    def stop(out):
        raise KeyboardInterrupt
    run.model = FailingAt(run.model, 2 * len(run.train_loader) + len(run.test_loader) + 1, stop)  # epoch 2's first test batch
    with pytest.raises(recipe.Interrupted, match=r"^interrupted in epoch 2; the checkpoint after epoch 1 is .*checkpoint.pt$"):
        recipe.train(run, 5e-3, out_dir=tmp_path, progress=False)


def test_a_checkpoint_saves_and_restores_without_a_scheduler(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    Checkpoint(tmp_path / CHECKPOINT, config={"a": 1}).save(model, opt, history={"epochs": [1]})
    expected = torch.rand(3)
    fresh = torch.nn.Linear(4, 3)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    torch.manual_seed(1)
    assert Checkpoint(tmp_path / CHECKPOINT, config={"a": 1}, resume=True).load(fresh, fresh_opt) == {"epochs": [1]}
    assert torch.equal(fresh.weight, model.weight) and fresh_opt.state_dict()["state"].keys() == {0, 1}
    assert torch.equal(torch.rand(3), expected)  # the random state is the one saved, not the one now


def test_health_names_a_run_at_chance_and_one_degrading_and_nothing_in_a_healthy_one():
    chance = [{"epoch": e, "train_loss": math.log(10), "train_acc": 10, "test_acc": 10} for e in (1, 2, 3)]
    assert list(health(chance, 10)) == ["chance"]
    good = [{"epoch": e, "train_loss": 2 - e / 10, "train_acc": 20 + 5 * e, "test_acc": 20 + 5 * e} for e in (1, 2, 3, 4)]
    assert health(good, 10) == {}
    bad = good + [{"epoch": 5, "train_loss": 2.5, "train_acc": 20, "test_acc": 20}] * 2
    assert list(health(bad, 10)) == ["degrading"] and "in epoch 4" in health(bad, 10)["degrading"]


def test_the_logged_test_loss_is_the_plain_cross_entropy_of_the_predictions():
    """The test loss in the log is comparable across recipes: no label smoothing or other training term in it."""
    from utils.training import evaluate

    torch.manual_seed(0)
    model = torch.nn.Linear(12, 10)
    batches = [(torch.randn(16, 12), torch.randint(0, 10, (16,))) for _ in range(3)]
    got = evaluate(model, batches)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        logits = model(x)
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert got["acc"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_the_range_test_restores_the_network_however_it_ends(error):
    """Interrupted (the stop button) or raising, the sweep leaves no trained weight or batch-norm statistic behind."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def batches():
        for i in range(30):
            if i == 5:
                raise error("stopped")
            yield torch.randn(16, 4), torch.randint(0, 3, (16,))
    with pytest.raises(error):
        find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, batches(), num_iter=30, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_failed_resume_leaves_the_run_retryable_and_a_missing_checkpoint_is_said(cifar_dir, tmp_path):
    run = recipe.setup(small_cfg(cifar_dir, epochs=1, train_subset=256), verbose=False)
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        recipe.train(run, 5e-3, out_dir=tmp_path, resume=True, progress=False)
    assert not run.trained  # a fresh start on the same network is still allowed
    (tmp_path / CHECKPOINT).unlink()
    said = []
    history = recipe.train(run, 5e-3, out_dir=tmp_path, resume=True, progress=False, log=said.append)
    assert said[0] == f"no checkpoint in {tmp_path}: training from epoch 1" and len(history["epochs"]) == 1


def test_clipping_takes_the_one_kernel_path_only_where_the_device_has_it(cifar_dir, monkeypatch):
    """A Mac's mps has no foreach clipping: the path is chosen by the device type (here the CPU's)."""
    from utils.training import has_foreach
    assert has_foreach("cpu") and has_foreach("cuda") and not has_foreach("mps")
    seen, real = [], torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **kw: seen.append(kw["foreach"]) or real(*a, **kw))
    run = recipe.setup(small_cfg(cifar_dir, train_subset=256), verbose=False)
    train_epoch(run.model, run.train_loader, recipe.make_optimizer(run, 1e-3), grad_clip=1.0, progress=False)
    assert seen == [True, True]


def test_class_probabilities_as_labels_train_exactly_like_the_class_indices(cifar_dir):
    """A teacher's soft labels go through the same loop: one-hot probabilities give the indices' loss and accuracy."""
    results = []
    for soft in (False, True):
        run = recipe.setup(small_cfg(cifar_dir, train_subset=512, epochs=1), verbose=False)
        if soft:
            run.train_loader.labels = F.one_hot(run.train_loader.labels, 10).float()
        optimizer = recipe.make_optimizer(run, 1e-3)
        results.append(train_epoch(run.model, run.train_loader, optimizer, grad_clip=1.0, progress=False))
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    assert results[0]["acc"] == results[1]["acc"] > 0
