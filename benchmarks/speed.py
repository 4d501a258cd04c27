"""Speed benchmark: our training pipeline against the reference pipeline, side by side.

    python -m benchmarks.speed               # writes benchmarks/results/speed.json
    python -m benchmarks.speed --steps 20    # fewer steps timed per pipeline (quicker, noisier)

Reference pipeline: torchvision's CIFAR10 dataset code with PIL transforms (RandomCrop(32,
padding=4), RandomHorizontalFlip, ToTensor, Normalize), DataLoader(batch_size=256,
shuffle=True, num_workers=2), fp32, NCHW. Ours: the uint8 set as one tensor on the
device, augmentation per batch there, channels_last, autocast in the device's precision
(fp16 with a GradScaler), fused Adam, clipping at norm 1. Same model (the reference preset),
same batch size, same machine, one process; both train through the project's train_epoch
(benchmarks.common.images_per_s). It also times the default network's training step (eager,
NCHW, compiled) and measures the matmul throughput in the device's precision (for
utilisation). The whole default job against an older commit: benchmarks/job_vs_commit.py.
"""
import argparse
import platform
import sys
import time
from dataclasses import asdict

import torch

from benchmarks.common import RESULTS, images_per_s, provenance, update_json
from models import Net
from train import PRESETS, RunConfig
from utils.data import MEAN, STD, Loader, load_cifar10
from utils.device import optimizer_kwargs, pick_device, precision_for

CLIP = RunConfig.grad_clip  # our pipeline clips as training does


def model_flops(config, image_size=32):
    """Analytic FLOPs per image: (forward, training step). A multiply-add counts as 2."""
    chans, size, convs = (3, 16, 32, 48), image_size, []
    for i, s in enumerate(config.strides):
        if config.downsample == "stride":
            size //= s  # a strided conv computes only the outputs it keeps
        convs.append(2 * chans[i] * 9 * chans[i + 1] * size * size)
        if config.downsample == "maxpool":
            size //= s  # max pooling after a full-size conv
    linear = 4 * (3 * 2 * 48 * 8 + 2 * 8 * 48 + 2 * 64 + 64) + 2 * 48 * 10  # K, Q, V, Out, QK^T, AM V; FC
    fwd = sum(convs) + linear
    # backward: gradients for weights and for inputs (2x forward), but none for the image itself
    return fwd, fwd + 2 * fwd - convs[0]


def matmul_gflops(device, dtype, n=2048, reps=10):
    """Best-of-3 throughput of an n x n matmul in dtype, in GFLOP/s."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reference_loader(images, labels, batch_size=256, train=True):
    """The reference pipeline: torchvision's CIFAR10 __getitem__ (PIL) and a 2-worker DataLoader."""
    import torchvision
    import torchvision.transforms as T

    ds = torchvision.datasets.CIFAR10.__new__(torchvision.datasets.CIFAR10)  # its code, our (local) pixels
    ds.data, ds.targets = images.permute(0, 2, 3, 1).numpy(), labels.tolist()
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    ds.transform, ds.target_transform = T.Compose(aug + [T.ToTensor(), T.Normalize(MEAN, STD)]), None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, num_workers=2,
                                       persistent_workers=train, pin_memory=False)


def ours(device, x_train, y_train, preset, batch_size, steps, variants=("ours", "ours_nchw", "ours_compiled")):
    """Images/s of our pipeline for one preset: eager channels_last, eager NCHW, compiled channels_last."""
    precision, out = precision_for(device), {}
    for name in variants:
        cl = name != "ours_nchw"
        torch.manual_seed(0)
        loader = Loader(x_train, y_train, batch_size, train=True, augment=("flip",), device=device, channels_last=cl)
        net = Net(PRESETS[preset]["model"]).to(device)
        net = net.to(memory_format=torch.channels_last) if cl else net
        model = torch.compile(net) if name == "ours_compiled" else net
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **optimizer_kwargs(device))
        if name == "ours_compiled":
            t = time.perf_counter()
            images_per_s(model, loader, opt, 1, precision, CLIP)
            out["compile_s"] = time.perf_counter() - t
        out[name] = images_per_s(model, loader, opt, steps, precision, CLIP)
        print(f"  {preset} {name}: {out[name]:.0f} images/s", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=60, help="training steps timed per pipeline")
    p.add_argument("--out", default=str(RESULTS / "speed.json"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    x_train, y_train = load_cifar10(train=True, download=False)
    precision = precision_for(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    fwd, train_flops = model_flops(PRESETS["reference"]["model"])
    peak = matmul_gflops(device, dtype)
    print(f"{precision} matmul: {peak:.0f} GFLOP/s; reference preset: {fwd / 1e6:.1f} MFLOP forward, "
          f"{train_flops / 1e6:.1f} MFLOP per training image", flush=True)
    torch.manual_seed(0)
    ref_model = Net(PRESETS["reference"]["model"]).to(device)  # the reference pipeline: fp32, NCHW, plain Adam, no clipping
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    speed = {"reference": images_per_s(ref_model, reference_loader(x_train, y_train), ref_opt, a.steps),
             **ours(device, x_train, y_train, "reference", 256, a.steps, variants=("ours", "ours_compiled"))}
    best_ours = max(speed["ours"], speed["ours_compiled"])
    model_gflops = best_ours * train_flops / 1e9
    default = ours(device, x_train, y_train, "default", 128, a.steps * 2)
    best_train = model_flops(PRESETS["default"]["model"])[1]
    print(f"images/s: reference {speed['reference']:.0f}, ours {speed['ours']:.0f}, "
          f"ours compiled {speed['ours_compiled']:.0f}; model {model_gflops:.0f} GFLOP/s = "
          f"{100 * model_gflops / peak:.0f}% of matmul", flush=True)
    result = {
        **provenance(device), "device": str(device), "platform": platform.platform(), "batch_size": 256,
        "model": "reference preset", "grad_clip_ours": CLIP,
        "model_config": asdict(PRESETS["reference"]["model"]),
        "precision_ours": precision, "precision_reference": "fp32",
        "images_per_s": {k: speed[k] for k in ("reference", "ours", "ours_compiled")},
        "ratio": speed["ours"] / speed["reference"], "ratio_compiled": speed["ours_compiled"] / speed["reference"],
        "compile_s": speed["compile_s"], "matmul_gflops": peak,
        "model_mflop_forward": fwd / 1e6, "model_mflop_train_step_per_image": train_flops / 1e6,
        "model_gflops": model_gflops, "utilisation": model_gflops / peak,
        "default_network": {"preset": "default", "model_config": asdict(PRESETS["default"]["model"]), "batch_size": 128,
                            "precision": precision,
                            "ms_per_step": {k: 1000 * 128 / v for k, v in default.items() if k != "compile_s"},
                            "compile_s": default["compile_s"], "model_mflop_train_step_per_image": best_train / 1e6,
                            "utilisation": default["ours"] * best_train / 1e9 / peak},
    }
    update_json(a.out, result)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
