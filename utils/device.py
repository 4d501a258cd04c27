"""Device, precision and seeding: pick the hardware and the number format it runs natively.

Needs: torch. Nothing here is CIFAR-specific; copy it alone into another project.

precision_for chooses by what the hardware computes natively, not by what torch can
emulate: bf16 autocast on CUDA GPUs of compute capability 8.0 or more (A100, L4, H100)
and on CPUs with AVX512-BF16/AMX; fp16 with a gradient scaler on capability 7.x (Colab's
T4 is 7.5: torch reports bf16 as "supported" there, but only emulated, and sends bf16
convolutions to cuDNN only from 8.0); fp32 everywhere else.
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
    """'bf16', 'fp16' or 'fp32': the autocast format this device runs natively."""
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"
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
    """Keyword arguments for torch.optim.Adam/AdamW: the fused kernel where torch has one (CUDA, CPU).

    The fused kernel also lets a GradScaler skip an inf step on the device, with no host sync.
    """
    return {"fused": True} if torch.device(device).type in ("cuda", "cpu") else {"foreach": True}


def grad_scaler(device, precision):
    """A GradScaler, enabled only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def compile_mode(device):
    """torch.compile's mode: CUDA graphs on CUDA (one launch a step), the default elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"


def set_seed(seed):
    """Seed Python's and torch's generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)
