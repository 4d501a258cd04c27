"""Shared test helpers: the real CIFAR-10, and small files in the official binary layout.

The real data: $CIFAR10_DIR, else ./data beside this repository's files, downloaded there
once when it is missing and the internet is there.
"""
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CIFAR_DIR = Path(os.environ.get("CIFAR10_DIR") or ROOT / "data")


def real_cifar(root, ci):
    """root once it holds CIFAR-10 (downloaded there if missing); else a skip that says how to get
    the data, or in CI (ci=True) a failure: CI never skips for want of data."""
    from utils.data import DataError, load_cifar10

    try:
        load_cifar10(root, train=False, download=True)
    except DataError as e:
        message = (f"no CIFAR-10 for the real-data tests ({e}). Get it once with internet: "
                   "`python -c \"from utils.data import load_cifar10; load_cifar10()\"` downloads it into ./data, "
                   "or set CIFAR10_DIR to a folder with cifar-10-batches-bin/")
        (pytest.fail if ci else pytest.skip)(message)
    return root


@pytest.fixture(scope="session")
def cifar_dir():
    """The real CIFAR-10 folder."""
    return real_cifar(CIFAR_DIR, ci=bool(os.environ.get("CI")))


def fake_cifar(n, seed=0):
    """n random images (n, 3, 32, 32) uint8 and labels (n,) 0-9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_bin_layout(root, n=20, seed=0):
    """root/cifar-10-batches-bin with 5 train files and a test file of n records each."""
    d = Path(root) / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = fake_cifar(n, seed + i)
        rows = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (d / f"{name}.bin").write_bytes(rows.tobytes())
    return d
