"""The distilled preset's teacher: a ResNet-9 (the DAWNBench CIFAR-10 network) at half width, 1.6M parameters, and
train_teacher, which trains it with Adam and the one-cycle schedule on random crops and flips and returns its logits
on every training image (the mean over the image and its mirror). It never trains on the test set; its accuracy
there is reported after each epoch. train.py trains it on first use, python -m benchmarks.teacher measures it."""
import json
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from utils.data import Loader
from utils.device import grad_scaler, optimizer_kwargs
from utils.schedule import one_cycle_scheduler
from utils.training import evaluate, predict, train_epoch

RECIPE = {"epochs": 12, "width": 32, "max_lr": 2e-3, "seed": 0}  # the distilled preset's teacher: 86.5% on the test set
BATCH = 512  # training images per step
TIMED = (2, 7)  # the first epoch's steps between which the pace is timed (step 1 pays one-time costs)


def conv_bn(c_in, c_out, pool=False):
    """3x3 conv, batch norm, ReLU, then 2x2 max pooling if pool."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    """x + two conv_bn layers of x."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


def resnet9(width=32, classes=10):
    """ResNet-9 with channels width, 2, 4, 8 x width (32: half the DAWNBench widths)."""
    w = [width, 2 * width, 4 * width, 8 * width]
    return nn.Sequential(conv_bn(3, w[0]), conv_bn(w[0], w[1], pool=True), Residual(w[1]),
                         conv_bn(w[1], w[2], pool=True), conv_bn(w[2], w[3], pool=True), Residual(w[3]),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w[3], classes))


def teacher_name(width, epochs, train_subset=0, test_subset=0):
    """The teacher's name in teacher.json beside its logits: its width, epochs and any subsets."""
    subsets = [f", first {n} {what} images" for n, what in ((train_subset, "training"), (test_subset, "test")) if n]
    return f"ResNet-9 width {width}, {epochs} epochs{''.join(subsets)}"


class _Mirror(nn.Module):
    """A model's logits on the mirrored images."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.flip(3))


def _estimate(seconds, source):
    """'teacher: about 37 min in all (an estimate from ...)'."""
    shown = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return f"teacher: about {shown} in all (an estimate from the pace of {source})"


def train_teacher(x, y, x_test, y_test, *, epochs, width, max_lr, seed, device="cpu", precision="fp32", progress=True,
                  log=tqdm.write):
    """Train resnet9(width) on uint8 images x (N, 3, 32, 32) and labels y (N,), tested on x_test after each epoch;
    says how long it will take after its first steps. Returns the network, its logits on x (N, 10) in float32 on
    the CPU and the history (one row per epoch)."""
    torch.manual_seed(seed)
    train_loader = Loader(x, y, BATCH, train=True, augment=("crop", "flip"), device=device, seed=seed,
                          channels_last=True)
    test_loader = Loader(x_test, y_test, 1000, device=device, channels_last=True)
    net = resnet9(width).to(device, memory_format=torch.channels_last)
    scaler = grad_scaler(device, precision)  # fp16 (a T4) needs one
    optimizer = torch.optim.Adam(net.parameters(), lr=max_lr, **optimizer_kwargs(device))
    scheduler = one_cycle_scheduler(optimizer, max_lr, epochs, len(train_loader), warmup_frac=0.25)
    # the test passes and the two passes for the logits, each image's forward pass about a third of a training step's
    steps = epochs * len(train_loader) + (epochs * len(y_test) + 2 * len(y)) / (3 * BATCH)
    marks = []

    def pace(step, loss):  # two syncs, in the first epoch only: the steps between TIMED give the estimate
        if step in TIMED:
            float(loss.detach())
            marks.append(time.perf_counter())
            if len(marks) == 2:
                log(_estimate((marks[1] - marks[0]) / (TIMED[1] - TIMED[0]) * steps, f"its first {TIMED[1]} steps"))

    history, t0 = [], time.perf_counter()
    for epoch in tqdm(range(1, epochs + 1), desc="teacher", unit="epoch", leave=False, disable=not progress):
        train_loader.set_epoch(epoch)
        tr = train_epoch(net, train_loader, optimizer, scheduler, grad_clip=0, precision=precision, scaler=scaler,
                         progress=progress, on_step=pace if epoch == 1 else None)
        te = evaluate(net, test_loader, precision=precision)
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_acc": tr["acc"], "test_acc": te["acc"], "seconds": seconds})
        log(f"teacher epoch {epoch}/{epochs}: train {tr['acc']:.2f}%  test {te['acc']:.2f}%  ({seconds:.0f}s)")
        if epoch == 1 and len(marks) < 2:  # an epoch too short to time its steps
            log(_estimate(history[0]["seconds"] * epochs, "epoch 1"))
    plain = Loader(x, y, 1000, device=device, channels_last=True)
    logits = predict(net, plain, precision=precision)[0]
    logits = (logits + predict(_Mirror(net), plain, precision=precision)[0]) / 2
    return net, logits.cpu(), history


def save_logits(path, logits, name, test_acc):
    """logits at path and {"name", "test_acc"} in teacher.json beside it, both written to temporary files first and
    then renamed: an interrupted save leaves no half file, and the two renames follow each other at once."""
    path = Path(path)
    named = path.with_name("teacher.json")
    tmps = [path.with_name(path.name + ".tmp"), named.with_name(named.name + ".tmp")]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.save(logits, tmps[0])
        tmps[1].write_text(json.dumps({"name": name, "test_acc": test_acc}))
        os.replace(tmps[1], named)
        os.replace(tmps[0], path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
