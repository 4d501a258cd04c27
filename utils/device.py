"""Device and precision: pick the hardware and the number format it runs natively. Needs: torch; copy it alone.

precision_for: bf16 on CUDA GPUs of compute capability 8.0 or more and on CPUs with AVX512-BF16 or AMX; fp16 with a
gradient scaler on capability 7.x (Colab's T4: bf16 only emulated); fp32 everywhere else.
"""
import torch


def pick_device(device="auto", verbose=True):
    """'auto' -> cuda > mps > cpu; an explicit device must exist here, else a ValueError."""
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
        if verbose:
            print(f"device: {device} (picked by device='auto')")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    if not {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}[dev.type]:
        raise ValueError(f"device {device!r} asked for, but this machine has no usable {dev.type.upper()} GPU; "
                         "use 'cpu' or 'auto'")
    return dev


def precision_for(device):
    """'bf16', 'fp16' or 'fp32': the autocast format this device runs natively."""
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"
    if device.type == "cpu":  # bf16 instructions (AVX512-BF16 or AMX), not only AVX512 to emulate them
        has = [getattr(torch.cpu, f"_is_{name}_supported", lambda: False) for name in ("avx512_bf16", "amx_tile")]
        return "bf16" if any(f() for f in has) else "fp32"
    return "fp32"


def optimizer_kwargs(device):
    """Adam's keyword arguments: the fused kernel where torch has one (CUDA, CPU; a GradScaler skips on the device)."""
    return {"fused": True} if torch.device(device).type in ("cuda", "cpu") else {"foreach": True}


def grad_scaler(device, precision):
    """A GradScaler, enabled only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def compile_mode(device):
    """torch.compile's mode: CUDA graphs on CUDA (one launch a step), the default elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"

