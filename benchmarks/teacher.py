"""The distilled preset's teacher (models/teacher.py), trained on the 50,000 training images alone and measured.

    python -m benchmarks.teacher                     # 12 epochs -> runs/teacher/logits.pt (and its name in
                                                     # runs/teacher/teacher.json), results/teacher.json
    python -m benchmarks.teacher --epochs 1 --train-subset 2048 --test-subset 1000 --width 8
        --out /tmp/t --results /tmp/t/rows.json          # a smoke run (one command line)

The defaults make the teacher python train.py --preset distilled trains on first use: ResNet-9 at half width, on the
GPU if there is one (else the CPU), in the precision the hardware runs natively (utils/device.py). This script adds
its row in the results file: accuracy per epoch, the share of training images its logits get right, the machine.
"""
import argparse
import time

import torch

from benchmarks.common import RESULTS, provenance, update_json
from models.teacher import RECIPE, save_logits, teacher_name, train_teacher
from utils.data import load_cifar10
from utils.device import pick_device, precision_for


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--max-lr", type=float, default=RECIPE["max_lr"])
    p.add_argument("--width", type=int, default=RECIPE["width"])
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto", help="'auto' (cuda > mps > cpu), 'cpu', 'cuda' or 'mps'")
    p.add_argument("--out", default="runs/teacher", help="folder for logits.pt")
    p.add_argument("--results", default=str(RESULTS / "teacher.json"))
    return p


def name(a):
    """The teacher's name in teacher.json and beside its logits: its width, epochs and any subsets."""
    return teacher_name(a.width, a.epochs, a.train_subset, a.test_subset)


def main(argv=None):
    a = parser().parse_args(argv)
    device = pick_device(a.device)
    precision = precision_for(device)  # what the hardware runs natively: bf16 on this CPU if it has bf16 instructions
    x, y = load_cifar10(a.data_dir, train=True)
    x, y = x[: a.train_subset or None], y[: a.train_subset or None]
    x_test, y_test = load_cifar10(a.data_dir, train=False)
    x_test, y_test = x_test[: a.test_subset or None], y_test[: a.test_subset or None]
    t0 = time.perf_counter()
    net, logits, history = train_teacher(x, y, x_test, y_test, **(RECIPE | {"epochs": a.epochs, "width": a.width,
                                         "max_lr": a.max_lr}), device=device, precision=precision)
    train_fit = 100 * (logits.argmax(1) == y).float().mean().item()
    row = {"name": name(a), "params": sum(q.numel() for q in net.parameters()),
           "epochs": a.epochs, "max_lr": a.max_lr, "precision": precision, "train_subset": a.train_subset,
           "test_subset": a.test_subset,
           "test_acc": history[-1]["test_acc"], "train_images_right": train_fit, "history": history,
           "wall_s": time.perf_counter() - t0, "threads": torch.get_num_threads(), **provenance(device, a.data_dir)}
    update_json(a.results, {row["name"]: row})
    save_logits(f"{a.out}/logits.pt", logits, row["name"], row["test_acc"])
    print(f"teacher: test {row['test_acc']:.2f}%, {train_fit:.2f}% of the training images right; logits in {a.out}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ValueError as e:  # a device or data folder that cannot be used (DataError is one), in one line
        raise SystemExit(f"error: {e}")
