"""Helpers for training small image classifiers; copy any one file into a later assignment."""
from .data import CLASSES, DataError, Loader, load_cifar10
from .device import autocast, pick_device, precision_for, set_seed
from .lr_finder import find_lr, suggest_lr
from .schedule import one_cycle_lr, one_cycle_scheduler
from .training import DivergenceError, confusion_matrix, evaluate, fit, predict, train_epoch

__all__ = ["CLASSES", "DataError", "Loader", "load_cifar10", "autocast", "pick_device", "precision_for",
           "set_seed", "find_lr", "suggest_lr", "one_cycle_lr", "one_cycle_scheduler", "DivergenceError",
           "confusion_matrix", "evaluate", "fit", "predict", "train_epoch"]
