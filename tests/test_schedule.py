import pytest
import torch

from utils.schedule import one_cycle_lr, one_cycle_scheduler

EPOCHS, STEPS, MAX_LR = 24, 97, 0.01


def run_scheduler(extra_steps=0):
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = one_cycle_scheduler(opt, MAX_LR, EPOCHS, STEPS, 5 / 24)
    lrs = []
    for _ in range(EPOCHS * STEPS + extra_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_full_24_epoch_schedule_stays_in_bounds():
    lrs = run_scheduler()
    assert len(lrs) == EPOCHS * STEPS
    assert all(0 < lr <= MAX_LR for lr in lrs)
    assert lrs[0] == pytest.approx(MAX_LR / 10)
    assert max(lrs) == pytest.approx(MAX_LR)
    assert lrs[-1] == pytest.approx(MAX_LR / 1000)


def test_schedule_peaks_after_five_of_24_epochs_then_anneals():
    lrs = run_scheduler()
    peak = lrs.index(max(lrs))
    assert peak == round(EPOCHS * STEPS * 5 / 24)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # warm-up strictly rises
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # annealing strictly falls


def test_stepping_past_the_end_never_raises_nor_goes_negative():
    lrs = run_scheduler(extra_steps=5)
    assert all(lr > 0 for lr in lrs)
    assert one_cycle_lr(10_000, 100, 1.0, 20) == pytest.approx(1e-3)


def test_non_positive_max_lr_is_rejected():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="max_lr must be positive"):
        one_cycle_scheduler(opt, 0.0, 24, 10, 5 / 24)


def test_torchs_one_cycle_read_one_step_past_the_end_is_negative_and_ours_is_not():
    """README's third reason: the reference's negative LR, reproduced with torch's own OneCycleLR."""
    steps = 24 * 98
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=steps, anneal_strategy="linear")
    for _ in range(steps):
        opt.step()
        sched.step()  # the last call moves one step past the schedule's end (torch warns)
    assert opt.param_groups[0]["lr"] == pytest.approx(-6.03e-6, rel=0.01)
    assert one_cycle_lr(steps, steps, 0.01, round(steps * 5 / 24)) == pytest.approx(1e-5)
