"""CIFAR-10 as uint8 tensors, and a loader that augments whole batches on the device.

Needs: torch, numpy (torchvision only to download); copy it alone. load_cifar10 reads either official layout
(cifar-10-batches-py, what torchvision downloads, or -bin) and checks every file: a wrong path or a damaged file
is one DataError. The pickled python layout is read by an unpickler that builds only what the official files
hold, so a crafted file cannot run code. Loader keeps the set as one tensor on the device and crops, flips and
normalises there, a batch at a time: no worker processes, no PIL.
"""
import os
import pickle
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
AUGMENTATIONS = ("crop", "crop2", "flip")  # crop: random +-4-pixel shifts, crop2: +-2; flip: mirror half the images
RECORD = 1 + 3 * 32 * 32  # binary layout: label byte, then R, G, B planes
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


class DataError(ValueError):
    """A data folder or file that cannot be used; the message says which and why."""


def resolve_data_dir(data_dir=None):
    """The data folder: the argument, else $CIFAR10_DIR, else ./data."""
    return Path(data_dir or os.environ.get("CIFAR10_DIR") or "data").expanduser()


def _check_labels(labels, path):
    bad = ((labels < 0) | (labels > 9)).nonzero()
    if len(bad):
        i = bad[0].item()
        raise DataError(f"{path}: label {labels[i].item()} out of range 0-9 at record {i}")


def _read_bin(path):
    """One binary-layout file -> (images (N, 3, 32, 32) uint8, labels (N,) int64)."""
    if not path.is_file():
        raise DataError(f"{path}: file missing from the CIFAR-10 binary layout")
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(f"{path}: truncated or corrupt, {len(raw)} bytes is not a whole number of {RECORD}-byte records")
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD)
    labels = rows[:, 0].long()
    _check_labels(labels, path)
    return rows[:, 1:].reshape(-1, 3, 32, 32).clone(), labels


class _Refused(pickle.UnpicklingError):
    pass


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array rebuilder, wherever this numpy version keeps it


class _SafeUnpickler(pickle.Unpickler):
    """Builds only what an official CIFAR-10 file holds; any other global is refused, never called."""

    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 1 (and the official files)
               ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2
               ("_codecs", "encode"): __import__("codecs").encode}  # protocol-2 pickles store bytes this way

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"it asks for {module}.{name}, which a CIFAR-10 file never holds")
        return self.ALLOWED[(module, name)]


def _read_py(path):
    """One python-layout (pickled) file -> (images (N, 3, 32, 32) uint8, labels (N,) int64)."""
    if not path.is_file():
        raise DataError(f"{path}: file missing from the CIFAR-10 python layout")
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
        data, labels = d[b"data"], d[b"labels"]
    except _Refused as e:
        raise DataError(f"{path}: not a CIFAR-10 file, refused ({e})") from None
    except Exception as e:  # a truncated pickle raises any of several errors
        raise DataError(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None
    images = torch.as_tensor(data)
    if images.dtype != torch.uint8 or images.dim() != 2 or images.shape[1] != RECORD - 1:
        raise DataError(f"{path}: expected uint8 rows of {RECORD - 1} pixels, got {images.dtype} {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    _check_labels(labels, path)
    return images.reshape(-1, 3, 32, 32).clone(), labels


def load_cifar10(data_dir=None, train=True, download=True):
    """CIFAR-10 train or test split as (images (N, 3, 32, 32) uint8, labels (N,) int64).

    Reads data_dir/cifar-10-batches-bin or data_dir/cifar-10-batches-py; if neither is
    there and download is on, torchvision downloads the python layout into data_dir.
    """
    root = resolve_data_dir(data_dir)
    names = TRAIN_FILES if train else TEST_FILES
    bin_dir, py_dir = root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
    if not bin_dir.is_dir() and not py_dir.is_dir():
        if not download:
            raise DataError(f"no CIFAR-10 in {root.resolve()}: expected cifar-10-batches-bin/ or "
                            "cifar-10-batches-py/ there; pass data_dir, set CIFAR10_DIR, or allow the download")
        _download(root)
    if bin_dir.is_dir():
        parts = [_read_bin(bin_dir / f"{n}.bin") for n in names]
    else:
        parts = [_read_py(py_dir / n) for n in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _download(root):
    """Download and extract the official python-layout archive (its MD5 checked) with torchvision.

    Only the download: torchvision's CIFAR10 class would also unpickle the files without our checks.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except Exception as e:
        raise DataError(f"could not download CIFAR-10 into {root.resolve()} ({type(e).__name__}: {e}); "
                        "without internet, put cifar-10-batches-bin/ or cifar-10-batches-py/ there "
                        "or set CIFAR10_DIR") from None


def check_augment(augment):
    """A ValueError naming the valid choices for an unknown augmentation, or for two crops."""
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
    if {"crop", "crop2"} <= set(augment):
        raise ValueError(f"choose one crop, got {list(augment)}")


def augment_batch(x, augment, generator):
    """Random crop after zero padding (4 pixels: "crop", 2: "crop2"), random horizontal flip; x (B, C, H, W)."""
    b, _, h, w = x.shape
    dev = x.device
    pad = 4 if "crop" in augment else 2 if "crop2" in augment else 0
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
        dy, dx = torch.randint(0, 2 * pad + 1, (2, b, 1), device=dev, generator=generator)
        rows = (dy + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=dev)[:, None, None, None]  # (B, 1, 1, 1)
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]  # (1, C, 1, 1)
        x = xp[batch, chans, rows, cols]  # (B, C, H, W)
    if "flip" in augment:
        flip = torch.rand(b, device=dev, generator=generator) < 0.5  # (B,): which images to mirror
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


class Loader:
    """Batches (images float (B, 3, 32, 32) normalised, labels (B,)) from uint8 tensors on a device.

    Training loaders shuffle and augment with a generator seeded from (seed, epoch), so an
    epoch is the same whenever it is replayed (resume, a second run). set_epoch picks it.
    """

    def __init__(self, images, labels, batch_size, train=False, augment=(), device="cpu", seed=0, channels_last=False):
        check_augment(augment)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, tuple(augment)
        self.seed, self.epoch, self.channels_last = seed, 0, channels_last
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1) * 255
        # training drops the last partial batch (batch norm dislikes tiny ones), unless it is the only one
        n = len(self.labels)
        self.num_batches = max(1, n // batch_size) if train else -(-n // batch_size)

    def __len__(self):
        return self.num_batches

    def set_epoch(self, epoch):
        """Choose which epoch's shuffle and augmentation the next iteration replays."""
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, device=self.device, generator=g) if self.train else None
        for i in range(self.num_batches):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is not None:
                idx = order[idx]
            x, y = self.images[idx], self.labels[idx]
            if self.train:
                x = augment_batch(x, self.augment, g)
            x = (x.float() - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
