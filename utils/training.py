"""Train and test loops, N-epoch fit with checkpoints, resume, and the checks a student needs.

Needs: torch, tqdm. Nothing here is CIFAR-specific: any classifier, any iterable of
(inputs, labels) batches; copy it alone into another project.

train_epoch and evaluate each run one pass and return their metrics; fit runs N epochs,
steps the scheduler per batch, keeps the history, prints one line per epoch and saves a
checkpoint after each epoch (atomically), from which fit(resume=True) continues.

The step never waits for the device: each step's loss and the count of correct
predictions stay on it, and are read once every `sync_every` steps (when the progress
bar updates) and at the end of the epoch. That read also checks every loss since the
last one: a non-finite loss, or one above BLOWUP x ln(classes), stops training and names
the first bad step, its epoch and its LR; the checkpoint left is the last good epoch's.
(In full runs every step above that limit was followed by a blow-up or a collapse to
chance: docs/robustness.md.) fit also names, once each in the epoch log, a run stuck at
chance and a run that is degrading (its train loss far above its best for two epochs).
Optional gradient-norm clipping (grad_clip) runs on the device before each step.
"""
import contextlib
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

CHECKPOINT = "checkpoint.pt"
SYNC_EVERY = 50  # steps between reads of the loss from the device
BLOWUP = 10  # a loss above BLOWUP * ln(classes) (23 for 10 classes) is a divergence, like NaN
CHANCE_EPOCHS = 3  # this many epochs at chance (loss ~ ln(classes), test accuracy ~ 1/classes) -> a warning
DEGRADE_EPOCHS = 2  # this many epochs in a row with the train loss far above its best -> a warning
DEGRADE_LOSS = 1.3  # "far above": more than 1.3 x the best epoch's train loss (and 0.1 above it)
DEGRADE_ACC = 15  # or a train accuracy this many points under its best


class DivergenceError(RuntimeError):
    """The loss became NaN, infinite, or blew up past BLOWUP x ln(classes)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or the notebook's stop button) during fit; the last complete epoch's checkpoint stays."""

    def __init__(self, epoch, checkpoint):
        self.epoch, self.checkpoint = epoch, checkpoint
        kept = f"; the checkpoint after epoch {epoch - 1} is {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted in epoch {epoch}{kept}")


def _autocast(device, precision):
    """Autocast to bf16/fp16 on `device`; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def current_lr(optimizer):
    return optimizer.param_groups[0]["lr"]


def train_epoch(model, loader, optimizer, scheduler=None, *, device, precision="fp32", scaler=None,
                criterion=F.cross_entropy, epoch=1, progress=True, sync_every=SYNC_EVERY, grad_clip=0.0):
    """One pass over loader; returns {"loss", "acc", "lrs", "classes"} (lrs: the LR used at each step).

    grad_clip > 0: before each step, scale the gradients down to at most this total norm
    (on the device: no host sync; with a scaler, after unscaling them).
    """
    model.train()
    losses, sizes, lrs = [], [], []  # losses: per-step device scalars not yet read
    correct = torch.zeros((), device=device, dtype=torch.long)
    total_loss, checked, classes = 0.0, 0, None
    params = [p for g in optimizer.param_groups for p in g["params"]]  # what clipping scales (grads of None are skipped)
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not progress)

    def check():  # the one host sync: every loss since the last check, and the correct count
        nonlocal total_loss, checked
        *values, n_correct = torch.cat([torch.stack(losses[checked:]), correct.float()[None]]).tolist()
        limit = BLOWUP * math.log(classes)
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v) or v > limit), None)
        if bad is not None:
            bar.close()
            i, v = checked + bad, values[bad]
            why = "" if not math.isfinite(v) else f" (above {BLOWUP} x ln {classes} = {limit:.1f})"
            of = len(loader) if hasattr(loader, "__len__") else "?"
            raise DivergenceError(f"loss became {v:.3g} at epoch {epoch}, step {i + 1}/{of}, lr {lrs[i]:.3g}{why}: "
                                  f"training diverged; lower max_lr (e.g. to {lrs[i] / 10:.2g})")
        total_loss += sum(v * n for v, n in zip(values, sizes[checked:]))
        checked = len(losses)
        return 100 * n_correct / sum(sizes)

    for step, (x, y) in enumerate(bar, 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lrs.append(current_lr(optimizer))
        with _autocast(device, precision):
            out = model(x)
            loss = criterion(out, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:  # a non-finite norm is left to the scaler or the loss check
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        classes = out.shape[1]
        losses.append(loss.detach().float())
        correct += (out.argmax(1) == y).sum()
        sizes.append(len(y))
        if step % sync_every == 0:
            acc = check()
            bar.set_postfix(loss=f"{total_loss / sum(sizes):.3f}", acc=f"{acc:.1f}%", lr=f"{lrs[-1]:.2e}")
    if not losses:
        raise ValueError("the training loader yielded no batch")
    if len(losses) > checked:
        acc = check()
    return {"loss": total_loss / sum(sizes), "acc": acc, "lrs": lrs, "classes": classes}


@torch.no_grad()
def predict(model, loader, *, device, precision="fp32", flip=False, progress=False):
    """Logits (N, classes) in float32 and labels (N,) for every batch; flip=True averages with mirrored images.

    Each batch's logits are copied out: a compiled model that replays a CUDA graph writes every
    batch's output into the same memory.
    """
    model.eval()
    logits, labels = [], []
    for x, y in tqdm(loader, desc="predict", leave=False, disable=not progress):
        x = x.to(device)
        with _autocast(device, precision):
            out = model(x).to(torch.float32, copy=True)
            if flip:
                out = (out + model(x.flip(3)).float()) / 2
        logits.append(out)
        labels.append(y.to(device))
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, loader, *, device, precision="fp32", criterion=F.cross_entropy, progress=False):
    """One pass without gradients; returns {"loss", "acc"}."""
    logits, labels = predict(model, loader, device=device, precision=precision, progress=progress)
    loss, acc = torch.stack([criterion(logits, labels), 100 * (logits.argmax(1) == labels).float().mean()]).tolist()
    return {"loss": loss, "acc": acc}


def at_chance(rows, classes, epochs=CHANCE_EPOCHS):
    """True when the last `epochs` epochs all sat at chance: train loss ~ ln(classes), test accuracy ~ 1/classes."""
    last = rows[-epochs:]
    return len(last) == epochs and all(
        abs(r["train_loss"] - math.log(classes)) < 0.02 and r["test_acc"] < 100 / classes + 2 for r in last)


def degrading(rows, epochs=DEGRADE_EPOCHS):
    """True when the last `epochs` epochs all trained far worse than the best epoch before them.

    Far worse: a train loss above DEGRADE_LOSS x the best one (and 0.1 above it), or a train
    accuracy DEGRADE_ACC points under the best one. A run that collapses without blowing up
    (loss 1.05 -> 2.50, accuracy 62.6% -> 20.0% at an LR a little too high) passes the
    divergence check and the chance warning; this names it.
    """
    if len(rows) <= epochs:
        return False
    before, last = rows[:-epochs], rows[-epochs:]
    loss, acc = min(r["train_loss"] for r in before), max(r["train_acc"] for r in before)
    return all(r["train_loss"] > max(DEGRADE_LOSS * loss, loss + 0.1) or r["train_acc"] < acc - DEGRADE_ACC
               for r in last)


def _rng_state():
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, state):
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, config=None):
    """Load a checkpoint (weights_only); refuse one made with a different config."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}); delete it or use a fresh run folder") from None
    if config is not None and state.get("config") != config:
        old = state.get("config") or {}
        diff = [f"{k}: checkpoint {old.get(k)!r}, now {config.get(k)!r}"
                for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
        raise ValueError(f"{path} was made with another configuration ({'; '.join(diff)}); "
                         "resume with the same settings or use a fresh run folder")
    return state


def fit(model, optimizer, scheduler, train_loader, test_loader, epochs, *, device, precision="fp32",
        scaler=None, criterion=F.cross_entropy, run_dir=None, config=None, resume=False, progress=True, log=print,
        grad_clip=0.0):
    """Train for `epochs` epochs; return the history {"epochs": [...], "step_lrs": [...], "epoch_seconds": [...]}.

    With run_dir, a checkpoint (model, optimizer, scheduler, scaler, history, RNG states,
    config) is saved there after each epoch; resume=True continues from it. Ctrl-C raises
    Interrupted, which names the epoch and the checkpoint that resume=True continues from.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    history = {"epochs": [], "step_lrs": [], "epoch_seconds": []}
    ckpt = Path(run_dir) / CHECKPOINT if run_dir else None
    if ckpt:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    plain = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    if resume and ckpt and ckpt.exists():
        state = load_checkpoint(ckpt, config)
        plain.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        history = state["history"]
        _set_rng_state(state["rng"])
        log(f"resumed from {ckpt} after epoch {len(history['epochs'])}")
    elif resume:
        log(f"no checkpoint in {run_dir}: starting from epoch 1")
    epoch, warned, warned_degrading = len(history["epochs"]) + 1, False, False
    try:
        for epoch in range(len(history["epochs"]) + 1, epochs + 1):
            t0 = time.perf_counter()
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            tr = train_epoch(model, train_loader, optimizer, scheduler, device=device, precision=precision,
                             scaler=scaler, criterion=criterion, epoch=epoch, progress=progress, grad_clip=grad_clip)
            te = evaluate(model, test_loader, device=device, precision=precision, criterion=criterion)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                   "test_loss": te["loss"], "test_acc": te["acc"], "lr": tr["lrs"][-1]}
            history["epochs"].append(row)
            history["step_lrs"].extend(tr["lrs"])
            history["epoch_seconds"].append(seconds)
            log(f"Epoch {epoch:2d}/{epochs}  LR {row['lr']:.3e}  train loss {tr['loss']:.4f} acc {tr['acc']:5.2f}%  "
                f"test loss {te['loss']:.4f} acc {te['acc']:5.2f}%  ({seconds:.1f}s)")
            if not warned and at_chance(history["epochs"], tr["classes"]):
                warned = True
                peak = max(history["step_lrs"])
                log(f"warning: {CHANCE_EPOCHS} epochs at chance (loss {tr['loss']:.4f} = ln {tr['classes']}, "
                    f"test accuracy {te['acc']:.1f}%) with max LR {peak:.2e}: the network is not learning. "
                    f"Try a lower max LR (e.g. {peak / 10:.1e}) or the 'min/10' LR rule; README.md, "
                    "'Why the reference stayed at 10%', explains this failure")
            if not warned_degrading and degrading(history["epochs"]):
                warned_degrading = True
                best = min(history["epochs"], key=lambda r: r["train_loss"])
                log(f"warning: training is degrading: train loss {tr['loss']:.4f} (acc {tr['acc']:.1f}%) for "
                    f"{DEGRADE_EPOCHS} epochs, against {best['train_loss']:.4f} ({best['train_acc']:.1f}%) in epoch "
                    f"{best['epoch']}, at LR {row['lr']:.2e} (peak so far {max(history['step_lrs']):.2e}). Most often the "
                    f"max LR is too high for this network: run again with a lower one (e.g. {max(history['step_lrs']) / 2:.1e}) "
                    "or the 'safe' LR rule")
            if ckpt:
                save_checkpoint(ckpt, {"model": plain.state_dict(), "optimizer": optimizer.state_dict(),
                                       "scheduler": scheduler.state_dict(),
                                       "scaler": scaler.state_dict() if scaler is not None else {},
                                       "history": history, "rng": _rng_state(), "config": config})
    except KeyboardInterrupt:
        raise Interrupted(epoch, ckpt if ckpt and ckpt.exists() else None) from None
    return history


def confusion_matrix(preds, labels, num_classes):
    """(num_classes, num_classes) counts; rows: true class, columns: predicted."""
    idx = labels.cpu().long() * num_classes + preds.cpu().long()
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)
