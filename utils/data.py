"""CIFAR-10 as uint8 tensors, and a loader that augments whole batches on the device. Needs: torch (torchvision
only to download); copy it alone. load_cifar10 reads the official binary layout (cifar-10-batches-bin) and checks
every file: a wrong path or a damaged file is one DataError. Loader keeps the set as one tensor on the device and
crops, flips and normalises there, a batch at a time: no workers, no PIL."""
import os
from pathlib import Path

import torch
import torch.nn.functional as F

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
AUGMENTATIONS = ("crop", "crop2", "flip")  # crop: random +-4-pixel shifts, crop2: +-2; flip: mirror half the images
RECORD = 1 + 3 * 32 * 32  # a label byte, then the R, G and B planes
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the archive's, as published on the CIFAR-10 page


class DataError(ValueError):
    """A data folder or file that cannot be used; the message says which and why."""


def resolve_data_dir(data_dir=None):
    """The data folder: the argument, else $CIFAR10_DIR, else ./data."""
    return Path(data_dir or os.environ.get("CIFAR10_DIR") or "data").expanduser()


def _read_bin(path):
    """One binary-layout file -> (images (N, 3, 32, 32) uint8, labels (N,) int64)."""
    if not path.is_file():
        raise DataError(f"{path}: file missing from the CIFAR-10 binary layout")
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(f"{path}: truncated or corrupt, {len(raw)} bytes is not a whole number of {RECORD}-byte records")
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD)
    labels = rows[:, 0].long()
    if (labels > 9).any():
        i = (labels > 9).nonzero()[0].item()
        raise DataError(f"{path}: label {labels[i].item()} out of range 0-9 at record {i}")
    return rows[:, 1:].reshape(-1, 3, 32, 32).clone(), labels


def load_cifar10(data_dir=None, train=True, download=True):
    """CIFAR-10's train or test split, (images (N, 3, 32, 32) uint8, labels (N,) int64), from
    data_dir/cifar-10-batches-bin (downloaded there if missing and download is on)."""
    root = resolve_data_dir(data_dir)
    folder = root / "cifar-10-batches-bin"
    if not folder.is_dir():
        if not download:
            raise DataError(f"no CIFAR-10 in {root.resolve()}: expected cifar-10-batches-bin/ there; "
                            "pass data_dir, set CIFAR10_DIR, or allow the download")
        try:  # torchvision checks the MD5 and extracts
            from torchvision.datasets.utils import download_and_extract_archive
            download_and_extract_archive(URL, str(root), md5=MD5)
        except Exception as e:
            raise DataError(f"could not download CIFAR-10 into {root.resolve()} ({type(e).__name__}: {e}); "
                            "without internet, put cifar-10-batches-bin/ there or set CIFAR10_DIR") from None
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    parts = [_read_bin(folder / f"{n}.bin") for n in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


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
    """Batches (images float (B, 3, 32, 32) normalised, labels (B,)) from uint8 tensors on a device; a training
    loader shuffles and augments with a generator seeded by (seed, epoch): set_epoch replays an epoch exactly."""

    def __init__(self, images, labels, batch_size, train=False, augment=(), device="cpu", seed=0, channels_last=False):
        check_augment(augment)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, tuple(augment)
        self.seed, self.epoch, self.channels_last = seed, 0, channels_last
        self.mean, self.std = (torch.tensor(v, device=self.device).view(1, 3, 1, 1) * 255 for v in (MEAN, STD))
        n = len(self.labels)  # training drops the last partial batch (batch norm dislikes tiny ones), unless alone
        self.num_batches = max(1, n // batch_size) if train else -(-n // batch_size)

    def __len__(self):
        return self.num_batches

    def set_epoch(self, epoch):
        """Choose which epoch's shuffle and augmentation the next iteration replays."""
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.labels), device=self.device, generator=g) if self.train else None
        for i in range(self.num_batches):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[idx] if order is not None else idx
            x, y = self.images[idx], self.labels[idx]
            if self.train:
                x = augment_batch(x, self.augment, g)
            x = (x.float() - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
