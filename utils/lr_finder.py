"""LR range test: torch-lr-finder's exponential sweep, a robust max-LR rule, no side effects.

Nothing here is CIFAR-specific. find_lr raises the LR exponentially from start_lr to
end_lr, one batch a step, records the smoothed loss, stops early when the loss diverges
(5x its best, or NaN), then restores the model and optimizer as they were.

The rule ("min/10"): the suggested max LR is the LR at which the smoothed loss is
lowest, divided by 10. At that LR the loss still falls, an order of magnitude below
where it blows up, and, unlike the steepest-slope point that torch-lr-finder prints,
it hardly moves between runs. The steepest-slope suggestion ("steepest") is kept for
comparison: published solutions that trusted it sat at 10% accuracy.
"""
import contextlib
import io
import math

import torch
from torch_lr_finder import LRFinder, TrainDataLoaderIter

from .device import grad_scaler

RULES = ("min/10", "steepest")


class _Diverged(Exception):
    pass


def _finite_loss(criterion):
    def loss_fn(out, y):
        loss = criterion(out, y)
        if not torch.isfinite(loss):
            raise _Diverged
        return loss
    return loss_fn


def suggest_lr(lrs, losses, rule="min/10"):
    """Suggested max LR from a range test's (lrs, smoothed losses), ignoring the diverged tail."""
    if rule not in RULES:
        raise ValueError(f"unknown LR rule {rule!r}; choose from {list(RULES)}")
    pts = [(lr, l) for lr, l in zip(lrs, losses) if math.isfinite(l)]
    if len(pts) < 3:
        raise ValueError("the LR range test has fewer than 3 finite points; lower start_lr or raise num_iter")
    best = min(range(len(pts)), key=lambda i: pts[i][1])
    if rule == "min/10":
        return pts[best][0] / 10
    # steepest: the most negative slope of loss against log(lr), before the minimum
    upto = pts[: best + 1] if best >= 2 else pts
    slopes = [(upto[i + 1][1] - upto[i][1]) / math.log(upto[i + 1][0] / upto[i][0]) for i in range(len(upto) - 1)]
    return upto[min(range(len(slopes)), key=slopes.__getitem__)][0]


def find_lr(model, optimizer, criterion, loader, *, device, precision="fp32", start_lr=1e-5, end_lr=1.0,
            num_iter=100, rule="min/10"):
    """Run the range test; return {"lrs", "losses", "suggested", "steepest", "diverged"}.

    model and optimizer are restored afterwards. loader: any iterable of (x, y) batches.
    """
    dev = torch.device(device)
    amp = {} if precision == "fp32" else {
        "amp_backend": "torch", "grad_scaler": grad_scaler(dev, precision),
        "amp_config": {"device_type": dev.type, "dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]}}
    finder = LRFinder(model, optimizer, _finite_loss(criterion), device=dev, **amp)
    with contextlib.redirect_stdout(io.StringIO()):  # silence its "see the graph" prints
        try:
            finder.range_test(TrainDataLoaderIter(loader), start_lr=start_lr, end_lr=end_lr,
                              num_iter=num_iter, step_mode="exp", diverge_th=5)
        except _Diverged:
            pass
    lrs, losses = finder.history["lr"], finder.history["loss"]
    diverged = len(lrs) < num_iter
    finder.reset()
    return {"lrs": lrs, "losses": losses, "diverged": diverged,
            "suggested": suggest_lr(lrs, losses, rule), "steepest": suggest_lr(lrs, losses, "steepest")}
