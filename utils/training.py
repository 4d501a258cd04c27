"""Train and test loops, N-epoch fit with checkpoints, resume and divergence checks.

Nothing here is CIFAR-specific: any classifier, any iterable of (inputs, labels) batches.
train_epoch and evaluate each run one pass and return their metrics; fit runs N epochs,
steps the scheduler per batch, keeps the history, prints one line per epoch and saves a
checkpoint after each epoch (atomically), from which fit(resume=True) continues.
"""
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .device import autocast

CHECKPOINT = "checkpoint.pt"


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


def current_lr(optimizer):
    return optimizer.param_groups[0]["lr"]


def train_epoch(model, loader, optimizer, scheduler=None, *, device, precision="fp32", scaler=None,
                criterion=F.cross_entropy, epoch=1, progress=True):
    """One pass over loader; returns {"loss", "acc", "lrs"} (lrs: the LR used at each step)."""
    model.train()
    total_loss, correct, seen, lrs = 0.0, 0, 0, []
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not progress)
    for step, (x, y) in enumerate(bar, 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = current_lr(optimizer)
        with autocast(device, precision):
            out = model(x)
            loss = criterion(out, y)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            raise DivergenceError(f"loss became {loss_value} at epoch {epoch}, step {step}/{len(loader)}, "
                                  f"lr {lr:.3g}: training diverged; lower max_lr (e.g. to {lr / 10:.2g})")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss_value * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
        lrs.append(lr)
        if step % 10 == 0 or step == len(loader):
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{100 * correct / seen:.1f}%", lr=f"{lr:.2e}")
    return {"loss": total_loss / seen, "acc": 100 * correct / seen, "lrs": lrs}


@torch.no_grad()
def predict(model, loader, *, device, precision="fp32", flip=False, progress=False):
    """Logits (N, classes) in float32 and labels (N,) for every batch; flip=True averages with mirrored images."""
    model.eval()
    logits, labels = [], []
    for x, y in tqdm(loader, desc="predict", leave=False, disable=not progress):
        x = x.to(device)
        with autocast(device, precision):
            out = model(x).float()
            if flip:
                out = (out + model(x.flip(3)).float()) / 2
        logits.append(out)
        labels.append(y.to(device))
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, loader, *, device, precision="fp32", criterion=F.cross_entropy, progress=False):
    """One pass without gradients; returns {"loss", "acc"}."""
    logits, labels = predict(model, loader, device=device, precision=precision, progress=progress)
    return {"loss": criterion(logits, labels).item(), "acc": 100 * (logits.argmax(1) == labels).float().mean().item()}


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
        scaler=None, criterion=F.cross_entropy, run_dir=None, config=None, resume=False, progress=True, log=print):
    """Train for `epochs` epochs; return the history {"epochs": [...], "step_lrs": [...], "epoch_seconds": [...]}.

    With run_dir, a checkpoint (model, optimizer, scheduler, scaler, history, RNG states,
    config) is saved there after each epoch; resume=True continues from it.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    history = {"epochs": [], "step_lrs": [], "epoch_seconds": []}
    ckpt = Path(run_dir) / CHECKPOINT if run_dir else None
    if ckpt:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if resume and ckpt and ckpt.exists():
        state = load_checkpoint(ckpt, config)
        getattr(model, "_orig_mod", model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        history = state["history"]
        _set_rng_state(state["rng"])
        log(f"resumed from {ckpt} after epoch {len(history['epochs'])}")
    elif resume:
        log(f"no checkpoint in {run_dir}: starting from epoch 1")
    for epoch in range(len(history["epochs"]) + 1, epochs + 1):
        t0 = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        tr = train_epoch(model, train_loader, optimizer, scheduler, device=device, precision=precision,
                         scaler=scaler, criterion=criterion, epoch=epoch, progress=progress)
        te = evaluate(model, test_loader, device=device, precision=precision, criterion=criterion)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"], "lr": tr["lrs"][-1]}
        history["epochs"].append(row)
        history["step_lrs"].extend(tr["lrs"])
        history["epoch_seconds"].append(seconds)
        log(f"Epoch {epoch:2d}/{epochs}  LR {row['lr']:.3e}  train loss {tr['loss']:.4f} acc {tr['acc']:5.2f}%  "
            f"test loss {te['loss']:.4f} acc {te['acc']:5.2f}%  ({seconds:.1f}s)")
        if ckpt:
            plain = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
            save_checkpoint(ckpt, {"model": plain.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(),
                                   "scaler": scaler.state_dict() if scaler is not None else {},
                                   "history": history, "rng": _rng_state(), "config": config})
    return history


def confusion_matrix(preds, labels, num_classes):
    """(num_classes, num_classes) counts; rows: true class, columns: predicted."""
    idx = labels.cpu().long() * num_classes + preds.cpu().long()
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)
