"""LR range test: torch-lr-finder's exponential sweep, a robust max-LR rule, no side effects. Needs: torch,
torch-lr-finder; copy it alone. find_lr raises the LR exponentially, one batch a step, stops when the smoothed loss
diverges (5x its best, or NaN) and restores the model and optimizer, however it ends. Rules: "min/N" is the LR of
the lowest smoothed loss / N; "safe" is min/2, but never above the divergence point / SAFE_DIV (a flat curve's
minimum moves from seed to seed, the divergence point barely); "steepest" is torch-lr-finder's
own suggestion, noisy: kept for comparison."""
import contextlib
import functools
import io
import math
import warnings

import numpy as np
import torch

with warnings.catch_warnings():  # it imports tqdm.autonotebook, which warns in notebooks
    warnings.simplefilter("ignore")
    import torch_lr_finder.lr_finder as _tlf
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

RULES = ("safe", "min/N", "steepest")  # min/N: any number N > 0, e.g. min/10 (fastai's habit), min/2
SAFE_DIV = 6  # "safe": never above the divergence point / SAFE_DIV
SKIP_START = 10  # like torch-lr-finder's plot: the first points of the smoothed curve are mostly noise


class _Diverged(Exception):
    pass


def _divisor(rule):
    try:
        return float(rule[4:]) if rule.startswith("min/") else math.nan
    except (AttributeError, TypeError, ValueError):
        return math.nan


def check_rule(rule):
    """Raise a one-line ValueError unless rule is "safe", "steepest" or "min/N" with a number N > 0."""
    if rule not in ("safe", "steepest") and not 0 < _divisor(rule) < math.inf:
        raise ValueError(f"unknown LR rule {rule!r}; choose from {list(RULES)}, N any number > 0 (e.g. min/10)")


def _finite(lrs, losses):
    pts = [(lr, l) for lr, l in zip(lrs, losses) if math.isfinite(l)]
    if len(pts) < 3:
        raise ValueError("the LR range test has fewer than 3 finite points; start lr_range lower or raise num_iter")
    return pts


def _loss_min_lr(pts):
    body = pts[SKIP_START:] if len(pts) > SKIP_START + 2 else pts  # the first points are barely smoothed
    return min(body, key=lambda p: p[1])[0]


def _safe(lrs, losses, diverged):
    """The "safe" LR and which bound chose it: the minimum's half, capped by the divergence point / SAFE_DIV."""
    half = _loss_min_lr(_finite(lrs, losses)) / 2
    cap = (lrs[-1] if diverged else max(lrs)) / SAFE_DIV
    if half <= cap:
        return half, "minimum / 2"
    return cap, f"divergence / {SAFE_DIV}" if diverged else f"highest LR tested / {SAFE_DIV}"


def suggest_lr(lrs, losses, rule="safe", diverged=False):
    """Suggested max LR from a range test's (lrs, smoothed losses); diverged: its last LR is where it blew up."""
    check_rule(rule)
    if rule == "safe":
        return _safe(lrs, losses, diverged)[0]
    pts = _finite(lrs, losses)
    if rule.startswith("min/"):
        return _loss_min_lr(pts) / _divisor(rule)
    # steepest, as LRFinder.plot(suggest_lr=True): the most negative gradient, first 10 and last 5 points skipped
    lr_s, loss_s = [p[0] for p in pts[SKIP_START:-5]], [p[1] for p in pts[SKIP_START:-5]]
    if len(loss_s) < 2:
        raise ValueError("the LR range test is too short for the steepest rule; raise num_iter")
    return lr_s[int(np.argmin(np.gradient(loss_s)))]


def read_curve(lrs, losses, rule="safe", diverged=False):
    """The curve's landmarks: {"loss_min_lr", "diverged_lr" (None: it did not diverge), "bound" (what chose the LR)}."""
    check_rule(rule)
    return {"loss_min_lr": _loss_min_lr(_finite(lrs, losses)), "diverged_lr": lrs[-1] if diverged else None,
            "bound": _safe(lrs, losses, diverged)[1] if rule == "safe" else rule}


@contextlib.contextmanager
def _bar(progress):
    """torch-lr-finder's own tqdm bar, labelled, and silenced when progress is False."""
    original = _tlf.tqdm
    _tlf.tqdm = functools.partial(original, desc="LR range test", leave=False, disable=not progress)
    try:
        yield
    finally:
        _tlf.tqdm = original


def find_lr(model, optimizer, criterion, loader, *, num_iter, amp_dtype=None, lr_range=(1e-5, 1.0), rule="safe",
            progress=True):
    """Run the range test over loader's (x, y) batches from lr_range[0] to lr_range[1], under autocast in amp_dtype
    if given; return {"lrs", "losses", "suggested", "steepest", "diverged"} and read_curve's keys."""
    check_rule(rule)  # before the test, not after it
    dev = next(model.parameters()).device
    amp = {} if amp_dtype is None else {
        "amp_backend": "torch", "grad_scaler": torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16),
        "amp_config": {"device_type": dev.type, "dtype": amp_dtype}}

    def finite_loss(out, y):  # a NaN or infinite loss ends the sweep
        loss = criterion(out, y)
        if not torch.isfinite(loss):
            raise _Diverged
        return loss
    finder = LRFinder(model, optimizer, finite_loss, device=dev, **amp)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _bar(progress):  # silence its "see the graph" prints
            finder.range_test(TrainDataLoaderIter(loader), start_lr=lr_range[0], end_lr=lr_range[1],
                              num_iter=num_iter, step_mode="exp", diverge_th=5)
    except _Diverged:
        pass
    finally:  # the weights, batch-norm statistics and optimizer state as they were before the sweep
        finder.reset()
    lrs, losses = finder.history["lr"], finder.history["loss"]
    diverged = len(lrs) < num_iter
    try:
        steepest = suggest_lr(lrs, losses, "steepest")
    except ValueError:  # too few points for that rule
        steepest = None
    return {"lrs": lrs, "losses": losses, "diverged": diverged, "suggested": suggest_lr(lrs, losses, rule, diverged),
            "steepest": steepest, **read_curve(lrs, losses, rule, diverged)}
