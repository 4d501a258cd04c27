"""Shared test helpers: the real CIFAR-10 copy, and small files in the official layouts."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_DIR = Path(os.environ.get("CIFAR10_DIR") or ROOT.parent / "shared" / "cifar10")


@pytest.fixture(scope="session")
def cifar_dir():
    """The real CIFAR-10 folder; in CI its absence is a failure, never a skip."""
    if not (CIFAR_DIR / "cifar-10-batches-bin").is_dir() and not (CIFAR_DIR / "cifar-10-batches-py").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CIFAR-10 not found at {CIFAR_DIR}: set CIFAR10_DIR")
        pytest.skip(f"CIFAR-10 not found at {CIFAR_DIR}")
    return CIFAR_DIR


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


def write_py_layout(root, n=20, seed=0):
    """root/cifar-10-batches-py with the same content as write_bin_layout(root, n, seed)."""
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = fake_cifar(n, seed + i)
        with open(d / name, "wb") as f:
            pickle.dump({b"data": images.reshape(n, -1), b"labels": labels.tolist()}, f)
    return d
