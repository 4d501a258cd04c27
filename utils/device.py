"""Device, precision and seeding: pick the hardware and the fastest safe number format.

Nothing here is CIFAR-specific. precision_for chooses bf16 autocast where the hardware
has fast bf16 (Ampere+ GPUs, CPUs with AVX512-BF16/AMX), fp16 with a gradient scaler on
older GPUs (Colab's T4), fp32 otherwise.
"""
import contextlib
import random

import torch


def pick_device(device="auto", verbose=True):
    """'auto' -> cuda > mps > cpu; an explicit device must exist here, else a ValueError."""
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
        if verbose:
            print(f"device: {device} (picked by device='auto')")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no usable CUDA GPU; use 'cpu' or 'auto'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev


def precision_for(device):
    """'bf16', 'fp16' or 'fp32': the autocast format this device runs fastest without losing accuracy."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        try:
            return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
        except (AttributeError, RuntimeError):
            return "fp32"
    return "fp32"


def autocast(device, precision):
    """A context that runs the forward pass in `precision` on `device` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype)


def optimizer_kwargs(device):
    """Keyword arguments for torch.optim.Adam/AdamW: the fused kernel on CUDA, foreach elsewhere."""
    return {"fused": True} if torch.device(device).type == "cuda" else {"foreach": True}


def grad_scaler(device, precision):
    """A GradScaler, enabled only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def set_seed(seed):
    """Seed Python's and torch's generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)
