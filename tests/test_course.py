"""The course preset: the recipe its published log shows (course/training_log.csv), and why it stays at chance."""
import pytest

import train
from analysis import course_log, layer_grads
from models import count_parameters
from utils.schedule import one_cycle_lr

LOG_STEPS = 196  # the log's training steps an epoch: 50,000 images in batches of 256, the last partial one kept


def test_the_course_preset_replays_every_lr_its_log_printed():
    cfg, log = train.recipe("course"), course_log()
    total = cfg.epochs * LOG_STEPS
    ours = [one_cycle_lr(row["epoch"] * LOG_STEPS, total, cfg.max_lr, round(total * cfg.warmup_frac), cfg.start_div,
                         cfg.final_div) for row in log]  # the LR after epoch e: the one its next step would take
    assert len(log) == cfg.epochs == 24
    for row, lr in zip(log[:-1], ours[:-1]):
        assert lr == pytest.approx(row["lr_after_epoch"], rel=2e-3), row["epoch"]
    step = (log[-3]["lr_after_epoch"] - log[-2]["lr_after_epoch"]) / LOG_STEPS  # the fall of one step
    assert log[-1]["lr_after_epoch"] < 0 < ours[-1] < step  # the log went one step past zero; ours stays above it


def test_the_course_preset_is_the_write_ups_network_trained_as_its_log_shows():
    cfg = train.recipe("course")
    net = train.Net(cfg.model_config())
    assert count_parameters(net) == 25_882  # the write-up's torchsummary total
    assert (cfg.batch_size, cfg.grad_clip, cfg.augment, cfg.lr_rule) == (256, 0.0, (), "safe")
    assert cfg.max_lr == 1.07e-3  # fixed: no range test picks it


def test_stop_after_trains_the_first_epochs_of_the_longer_schedule(cifar_dir):
    cfg = train.recipe(train_subset=512, test_subset=256, epochs=3, max_lr=5e-3, device="cpu",
                       data_dir=str(cifar_dir), download=False)
    part = train.train(train.setup(cfg, verbose=False), 5e-3, progress=False, log=lambda line: None, stop_after=1)
    whole = train.train(train.setup(cfg, verbose=False), 5e-3, progress=False, log=lambda line: None)
    assert len(part["epochs"]) == 1 and len(whole["epochs"]) == 3
    assert part["step_lrs"] == whole["step_lrs"][: len(part["step_lrs"])]  # the same schedule, cut short
    assert part["epochs"][0] == whole["epochs"][0]


def test_adam_eps_reaches_the_optimizer(cifar_dir):
    run = train.setup(train.recipe("course", adam_eps=1e-12, train_subset=256, test_subset=256, device="cpu",
                                   data_dir=str(cifar_dir), download=False), verbose=False)
    assert train.make_optimizer(run, 1e-3).param_groups[0]["eps"] == 1e-12


def test_the_course_networks_convs_get_gradients_far_below_adams_eps_and_the_residuals_do_not(cifar_dir):
    """The lesson's mechanism: without the residual, the convs' first Adam step is a small share of the LR."""
    grads, steps = {}, {}
    for name, change in (("course", {}), ("residual", {"model": {"residual": True}})):
        run = train.setup(train.recipe("course", **change, train_subset=256, test_subset=256, device="cpu",
                                       precision="fp32", data_dir=str(cifar_dir), download=False), verbose=False)
        grads[name], steps[name] = layer_grads(run.net, *next(iter(run.train_loader)))
    for conv in ("conv 1", "conv 2", "conv 3"):
        assert grads["course"][conv] < 0.1 * 1e-8 < 1e-8 < grads["residual"][conv]  # Adam eps: 1e-8
        assert steps["course"][conv] < 0.05 and steps["residual"][conv] > 0.9
    assert steps["course"]["fc"] > 0.9  # the last layer learns at full speed in both
