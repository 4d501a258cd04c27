"""Train and test loops, a checkpoint that survives interruption, and the checks a student needs. Needs: torch,
tqdm; any classifier and any iterable of (inputs, labels) batches: copy it alone. The epoch loop is the caller's
(train.py shows one). The step never waits for the device: the losses are read and checked every SYNC_EVERY steps
(docs/robustness.md). health() names a run stuck at chance or degrading."""
import contextlib
import math
import os
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

SYNC_EVERY = 50  # steps between reads of the loss from the device
BLOWUP = 10  # a loss above BLOWUP * ln(classes) (23 for 10 classes) is a divergence, like NaN
CHANCE_EPOCHS = 3  # this many epochs at chance (loss ~ ln(classes), test accuracy ~ 1/classes) -> a warning
DEGRADE_EPOCHS = 2  # this many epochs in a row with the train loss far above its best -> a warning
DEGRADE_LOSS = 1.3  # "far above": more than 1.3 x the best epoch's train loss (and 0.1 above it)
DEGRADE_ACC = 15  # or a train accuracy this many points under its best


class DivergenceError(RuntimeError):
    """The loss became NaN, infinite, or blew up past BLOWUP x ln(classes)."""


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # precision -> autocast's dtype


def autocast(device, precision):
    """A context that runs the forward pass in `precision` on `device` (a no-op for fp32)."""
    dtype = DTYPES[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()


def has_foreach(device):
    """Whether clip_grad_norm_'s one-kernel (foreach) path runs on this device: CUDA and CPU, not a Mac's mps."""
    return torch.device(device).type in ("cuda", "cpu")


class _Tally:
    """Each step's loss and correct count, kept on the device; read() brings them to the host and checks them."""

    def __init__(self, device):
        self.losses, self.sizes, self.lrs, self.checked, self.total_loss = [], [], [], 0, 0.0
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def add(self, loss, out, y, lr):
        self.losses.append(loss.detach().float())
        self.correct += (out.argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()  # labels or class probabilities
        self.sizes.append(len(y))
        self.lrs.append(lr)
        self.classes = out.shape[1]

    def read(self):
        """The one host sync: (mean loss, accuracy %) so far; DivergenceError for a NaN, inf or too large a loss."""
        *values, n_correct = torch.cat([torch.stack(self.losses[self.checked:]), self.correct.float()[None]]).tolist()
        limit = BLOWUP * math.log(self.classes)
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v) or v > limit), None)
        if bad is not None:
            i, v = self.checked + bad, values[bad]
            why = "" if not math.isfinite(v) else f" (above {BLOWUP} x ln {self.classes} = {limit:.1f})"
            raise DivergenceError(f"loss became {v:.3g} at step {i + 1}, lr {self.lrs[i]:.3g}{why}: "
                                  f"training diverged; lower max_lr (e.g. to {self.lrs[i] / 10:.2g})")
        self.total_loss += sum(v * n for v, n in zip(values, self.sizes[self.checked:]))
        self.checked = len(self.losses)
        return self.total_loss / sum(self.sizes), 100 * n_correct / sum(self.sizes)


def train_epoch(model, loader, optimizer, scheduler=None, *, grad_clip, precision="fp32", scaler=None,
                progress=True, on_step=None):
    """One pass over loader with cross-entropy (labels: classes (B,) or probabilities (B, classes)); returns {"loss",
    "acc", "lrs": each step's LR}. grad_clip > 0: the gradients' norm capped there. on_step(step, loss): a hook."""
    model.train()
    device = next(model.parameters(), torch.empty(0)).device  # the CPU for a model without parameters
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)  # a disabled scaler is a plain step
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tally = _Tally(device)
    with tqdm(loader, desc="train", leave=False, disable=not progress) as bar:
        for step, (x, y) in enumerate(bar, 1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            lr = optimizer.param_groups[0]["lr"]
            with autocast(device, precision):
                out = model(x)
                loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:  # on the unscaled gradients; a non-finite norm is left to the loss check
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=has_foreach(device))
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            tally.add(loss, out, y, lr)
            if on_step is not None:
                on_step(step, loss)
            if step % SYNC_EVERY == 0:
                loss_so_far, acc = tally.read()
                bar.set_postfix(loss=f"{loss_so_far:.3f}", acc=f"{acc:.1f}%", lr=f"{lr:.2e}")
    if not tally.losses:
        raise ValueError("the training loader yielded no batch")
    loss, acc = tally.read()
    return {"loss": loss, "acc": acc, "lrs": tally.lrs}


def soft_labels(labels, teacher_logits, share, temperature):
    """Distillation's targets (N, classes): (1 - share) x the one-hot labels + share x the teacher's softmax at temperature."""
    teacher = (teacher_logits.float().to(labels.device) / temperature).softmax(1)
    return (1 - share) * F.one_hot(labels, teacher.shape[1]).float() + share * teacher


@torch.no_grad()
def predict(model, loader, *, precision="fp32"):
    """Logits (N, classes) in float32 and labels (N,), each batch's copied out (a CUDA graph reuses its output)."""
    model.eval()
    device, logits, labels = next(model.parameters(), torch.empty(0)).device, [], []
    for x, y in loader:
        with autocast(device, precision):
            logits.append(model(x.to(device)).to(torch.float32, copy=True))
        labels.append(y.to(device))
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, loader, *, precision="fp32"):
    """One pass without gradients; returns {"loss", "acc"} (plain cross-entropy, in %)."""
    logits, labels = predict(model, loader, precision=precision)
    loss, acc = torch.stack([F.cross_entropy(logits, labels), 100 * (logits.argmax(1) == labels).float().mean()]).tolist()
    return {"loss": loss, "acc": acc}


def degrading(rows, epochs=DEGRADE_EPOCHS):
    """True when the last `epochs` epochs all trained far worse (DEGRADE_LOSS, DEGRADE_ACC) than the best before."""
    if len(rows) <= epochs:
        return False
    before, last = rows[:-epochs], rows[-epochs:]
    loss, acc = min(r["train_loss"] for r in before), max(r["train_acc"] for r in before)
    return all(r["train_loss"] > max(DEGRADE_LOSS * loss, loss + 0.1) or r["train_acc"] < acc - DEGRADE_ACC
               for r in last)


def health(rows, classes):
    """What is wrong with a run so far, from its epoch rows: {"chance": message} and/or {"degrading": message}."""
    problems, last = {}, rows[-CHANCE_EPOCHS:]
    if len(last) == CHANCE_EPOCHS and all(abs(x["train_loss"] - math.log(classes)) < 0.02  # loss ln 10, accuracy 10%
                                          and x["test_acc"] < 100 / classes + 2 for x in last):
        problems["chance"] = (f"{CHANCE_EPOCHS} epochs at chance (train loss {last[-1]['train_loss']:.4f} = ln {classes}, "
                              f"test accuracy {last[-1]['test_acc']:.1f}%): the network is not learning")
    if degrading(rows):
        r, best = rows[-1], min(rows, key=lambda row: row["train_loss"])
        problems["degrading"] = (f"training is degrading: train loss {r['train_loss']:.4f} (acc {r['train_acc']:.1f}%) "
                                 f"for {DEGRADE_EPOCHS} epochs, against {best['train_loss']:.4f} "
                                 f"({best['train_acc']:.1f}%) in epoch {best['epoch']}")
    return problems


class Checkpoint:
    """One run's checkpoint file, written atomically with the random state; only a run of the same config resumes it
    (without resume, a file an earlier run left at path is removed: a new run never points at another's epochs)."""

    def __init__(self, path, config=None, resume=False):
        self.path, self.config = Path(path), config
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.path.unlink(missing_ok=True)

    def save(self, model, optimizer, scheduler=None, scaler=None, history=None):
        """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "scaler": scaler.state_dict() if scaler is not None else None, "config": self.config,
                 "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def read(self):
        """The saved state (weights_only); a ValueError for an unreadable file or another config."""
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{self.path}: not a readable checkpoint ({type(e).__name__}); "
                             "delete it or use a fresh run folder") from None
        if self.config is not None and state.get("config") != self.config:
            old = state.get("config") or {}
            diff = [f"{k}: checkpoint {old.get(k)!r}, now {self.config.get(k)!r}"
                    for k in sorted(set(old) | set(self.config)) if old.get(k) != self.config.get(k)]
            raise ValueError(f"{self.path} was made with another configuration ({'; '.join(diff)}); "
                             "resume with the same settings or use a fresh run folder")
        return state

    def load(self, model, optimizer, scheduler=None, scaler=None):
        """Restore everything save() wrote, random state included; returns the saved history."""
        state = self.read()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return state["history"]

