"""The one-cycle learning-rate policy as a pure function of the step, and its scheduler. Needs: torch; copy it alone.

Linear warm-up from max_lr/start_div to max_lr, then linear annealing to max_lr/final_div at the last step; steps
past the end stay at the floor, never <= 0 (torch's OneCycleLR, stepped once too often, went negative).
"""
from torch.optim.lr_scheduler import LambdaLR


def one_cycle_lr(step, total_steps, max_lr, warmup_steps, start_div=10.0, final_div=1000.0):
    """The learning rate at `step` (0-based) of a one-cycle schedule of `total_steps`."""
    start, floor = max_lr / start_div, max_lr / final_div
    step = min(max(step, 0), total_steps - 1)
    if step < warmup_steps:
        return start + (max_lr - start) * step / warmup_steps
    anneal = max(total_steps - 1 - warmup_steps, 1)
    return max_lr + (floor - max_lr) * (step - warmup_steps) / anneal


def one_cycle_scheduler(optimizer, max_lr, epochs, steps_per_epoch, warmup_frac, start_div=10.0, final_div=1000.0):
    """A per-batch LambdaLR for one_cycle_lr (warmup_frac: the share of the steps that warm up); sets the LR to max_lr."""
    if not max_lr > 0:
        raise ValueError(f"max_lr must be positive, got {max_lr}")
    if not 0 <= warmup_frac < 1:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
    for group in optimizer.param_groups:
        group["lr"] = max_lr
        group.pop("initial_lr", None)
    total = epochs * steps_per_epoch
    warmup = round(total * warmup_frac)
    return LambdaLR(optimizer, lambda step: one_cycle_lr(step, total, max_lr, warmup, start_div, final_div) / max_lr)
