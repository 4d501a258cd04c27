"""A convolutional teacher for distillation: trained on the 50,000 training images alone, its logits saved.

    python -m benchmarks.teacher                     # 12 epochs -> runs/teacher/logits.pt (and its name in
                                                     # runs/teacher/teacher.json), results/teacher.json
    python -m benchmarks.teacher --epochs 1 --train-subset 2048 --test-subset 1000 --width 8
        --out /tmp/t --results /tmp/t/rows.json          # a smoke run (one command line)

The teacher is a ResNet-9 (the DAWNBench CIFAR-10 network) at half width: 1.6M parameters, trained with
Adam and the one-cycle schedule of utils/ on random crops and flips, on the GPU if there is one (else the
CPU), in the precision the hardware runs natively (utils/device.py). Its logits on every training image
(the mean over the image and its mirror) are what the distilled preset (RunConfig.teacher) mixes into the
student's labels. It never trains on the test set; its accuracy there is reported after each epoch.
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from benchmarks.common import RESULTS, provenance, update_json
from utils.data import Loader, load_cifar10
from utils.device import grad_scaler, optimizer_kwargs, pick_device, precision_for
from utils.schedule import one_cycle_scheduler
from utils.training import evaluate, predict, train_epoch


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


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--max-lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto", help="'auto' (cuda > mps > cpu), 'cpu', 'cuda' or 'mps'")
    p.add_argument("--out", default="runs/teacher", help="folder for logits.pt")
    p.add_argument("--results", default=str(RESULTS / "teacher.json"))
    return p


def name(a):
    """The teacher's name in teacher.json and beside its logits: its width, epochs and any subsets."""
    subsets = "".join(f", first {n} {what} images" for n, what in ((a.train_subset, "training"), (a.test_subset, "test")) if n)
    return f"ResNet-9 width {a.width}, {a.epochs} epochs{subsets}"


def main(argv=None):
    a = parser().parse_args(argv)
    torch.manual_seed(0)
    device = pick_device(a.device)
    precision = precision_for(device)  # what the hardware runs natively: bf16 on this CPU if it has bf16 instructions
    x, y = load_cifar10(a.data_dir, train=True)
    x, y = x[: a.train_subset or None], y[: a.train_subset or None]
    x_test, y_test = load_cifar10(a.data_dir, train=False)
    x_test, y_test = x_test[: a.test_subset or None], y_test[: a.test_subset or None]
    train_loader = Loader(x, y, 512, train=True, augment=("crop", "flip"), device=device, channels_last=True)
    test_loader = Loader(x_test, y_test, 1000, device=device, channels_last=True)
    net = resnet9(a.width).to(device, memory_format=torch.channels_last)
    scaler = grad_scaler(device, precision)  # fp16 (a T4) needs one
    optimizer = torch.optim.Adam(net.parameters(), lr=a.max_lr, **optimizer_kwargs(device))
    scheduler = one_cycle_scheduler(optimizer, a.max_lr, a.epochs, len(train_loader), warmup_frac=0.25)
    history, t0 = [], time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        train_loader.set_epoch(epoch)
        tr = train_epoch(net, train_loader, optimizer, scheduler, grad_clip=0, precision=precision, scaler=scaler)
        te = evaluate(net, test_loader, precision=precision)
        history.append({"epoch": epoch, "train_acc": tr["acc"], "test_acc": te["acc"], "seconds": time.perf_counter() - t0})
        print(f"teacher epoch {epoch}: train {tr['acc']:.2f}%  test {te['acc']:.2f}%  ({history[-1]['seconds']:.0f}s)")
    plain = Loader(x, y, 1000, device=device, channels_last=True)
    logits = predict(net, plain, precision=precision)[0]
    logits = (logits + predict(_Mirror(net), plain, precision=precision)[0]) / 2
    Path(a.out).mkdir(parents=True, exist_ok=True)
    logits = logits.cpu()
    torch.save(logits, Path(a.out) / "logits.pt")
    train_fit = 100 * (logits.argmax(1) == y).float().mean().item()
    row = {"name": name(a), "params": sum(q.numel() for q in net.parameters()),
           "epochs": a.epochs, "max_lr": a.max_lr, "precision": precision, "train_subset": a.train_subset,
           "test_subset": a.test_subset,
           "test_acc": history[-1]["test_acc"], "train_images_right": train_fit, "history": history,
           "wall_s": time.perf_counter() - t0, "threads": torch.get_num_threads(), **provenance(device, a.data_dir)}
    update_json(a.results, {row["name"]: row})
    (Path(a.out) / "teacher.json").write_text(json.dumps({"name": row["name"], "test_acc": row["test_acc"]}))
    print(f"teacher: test {row['test_acc']:.2f}%, {train_fit:.2f}% of the training images right; logits in {a.out}")
    return 0


class _Mirror(nn.Module):
    """A model's logits on the mirrored images."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.flip(3))


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ValueError as e:  # a device or data folder that cannot be used (DataError is one), in one line
        raise SystemExit(f"error: {e}")
