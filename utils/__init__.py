"""Helpers for training small image classifiers; each file also works copied alone into a later assignment.

The LR finder (and so torch-lr-finder) is imported only when find_lr or suggest_lr is first used.
"""
from .data import CLASSES, DataError, Loader, load_cifar10
from .device import pick_device, precision_for, set_seed
from .schedule import one_cycle_lr, one_cycle_scheduler
from .training import Checkpoint, DivergenceError, autocast, confusion_matrix, evaluate, health, predict, train_epoch

__all__ = ["CLASSES", "DataError", "Loader", "load_cifar10", "autocast", "pick_device", "precision_for",
           "set_seed", "find_lr", "suggest_lr", "one_cycle_lr", "one_cycle_scheduler", "Checkpoint", "DivergenceError",
           "confusion_matrix", "evaluate", "health", "predict", "train_epoch"]


def __getattr__(name):  # PEP 562: a lazy attribute of the package
    if name in ("find_lr", "suggest_lr"):
        from . import lr_finder
        return getattr(lr_finder, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
