"""Speed benchmark: our training pipeline against the reference pipeline, side by side.

    python benchmarks/speed.py                  # writes benchmarks/results/speed.json
    python benchmarks/speed.py --acc-epochs 0   # throughput only

Reference pipeline: torchvision's CIFAR10 dataset code with PIL transforms (RandomCrop(32,
padding=4), RandomHorizontalFlip, ToTensor, Normalize), DataLoader(batch_size=256,
shuffle=True, num_workers=2), fp32, NCHW. Ours: the uint8 set as one tensor on the
device, augmentation per batch there, channels_last, autocast by device, foreach/fused
Adam. Same model (the reference preset), same batch size, same machine, one process.
It also measures the bf16 matmul throughput (for utilisation), torch.compile, and the
notebook's whole default job (LR range test, 24 epochs, evaluation).
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import PRESETS, Net  # noqa: E402
from train import DATA_NOTE, RunConfig, machine_name, train_and_report  # noqa: E402
from utils.data import MEAN, STD, Loader, load_cifar10  # noqa: E402
from utils.device import autocast, optimizer_kwargs, pick_device, precision_for, set_seed  # noqa: E402
from utils.schedule import one_cycle_scheduler  # noqa: E402
from utils.training import evaluate, train_epoch  # noqa: E402


def model_flops(config, image_size=32):
    """Analytic FLOPs per image: (forward, training step). A multiply-add counts as 2."""
    chans, size, convs = (3, 16, 32, 48), image_size, []
    for i, s in enumerate(config.strides):
        size //= s
        convs.append(2 * chans[i] * 9 * chans[i + 1] * size * size)
    linear = 4 * (3 * 2 * 48 * 8 + 2 * 8 * 48 + 2 * 64 + 64) + 2 * 48 * 10  # K, Q, V, Out, QK^T, AM V; FC
    fwd = sum(convs) + linear
    # backward: gradients for weights and for inputs (2x forward), but none for the image itself
    return fwd, fwd + 2 * fwd - convs[0]


def matmul_gflops(device, dtype=torch.bfloat16, n=2048, reps=10):
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


def train_steps(model, loader, optimizer, device, precision, steps):
    """Images per second over `steps` training steps (after 3 warm-up steps), no per-step sync."""
    model.train()
    it, done, t = iter(loader), 0, None
    for i in range(steps + 3):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        if i == 3:
            sync(device)
            t, done = time.perf_counter(), 0
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += len(y)
    sync(device)
    return done / (time.perf_counter() - t)


def pipelines(device, data, steps, batch_size=256):
    """Our pipeline (eager and compiled) against the reference pipeline, images/s each."""
    (x_train, y_train), _ = data
    out = {}
    set_seed(0)
    ref_model = Net(PRESETS["reference"]).to(device)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    out["reference"] = train_steps(ref_model, reference_loader(x_train, y_train, batch_size), ref_opt, device, "fp32", steps)
    precision = precision_for(device)
    ours_loader = Loader(x_train, y_train, batch_size, train=True, device=device, channels_last=True)
    for name, compile_ in (("ours", False), ("ours_compiled", True)):
        set_seed(0)
        net = Net(PRESETS["reference"]).to(device).to(memory_format=torch.channels_last)
        model = torch.compile(net) if compile_ else net
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **optimizer_kwargs(device))
        if compile_:
            t = time.perf_counter()
            train_steps(model, ours_loader, opt, device, precision, 1)
            out["compile_s"] = time.perf_counter() - t
        out[name] = train_steps(model, ours_loader, opt, device, precision, steps)
    out["precision"] = precision
    return out


def accuracy_side_by_side(device, data, epochs, subset, max_lr, batch_size=256):
    """Test accuracy of the reference preset after `epochs` one-cycle epochs through each pipeline."""
    (x_train, y_train), (x_test, y_test) = data
    if subset:
        x_train, y_train = x_train[:subset], y_train[:subset]
    precision = precision_for(device)
    result = {}
    setups = {
        "reference": (reference_loader(x_train, y_train, batch_size), reference_loader(x_test, y_test, 1000, False),
                      "fp32", False, {}),
        "ours": (Loader(x_train, y_train, batch_size, train=True, device=device, channels_last=True),
                 Loader(x_test, y_test, 1000, device=device, channels_last=True), precision, True,
                 optimizer_kwargs(device)),
    }
    for name, (train_ld, test_ld, prec, cl, opt_kw) in setups.items():
        set_seed(0)
        model = Net(PRESETS["reference"]).to(device)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=max_lr, **opt_kw)
        sched = one_cycle_scheduler(opt, max_lr, epochs, len(train_ld))
        t = time.perf_counter()
        for epoch in range(1, epochs + 1):
            tr = train_epoch(model, train_ld, opt, sched, device=device, precision=prec, epoch=epoch, progress=False)
            print(f"  {name}: epoch {epoch}/{epochs}, train loss {tr['loss']:.4f}", flush=True)
        acc = evaluate(model, test_ld, device=device, precision=prec)["acc"]
        result[name] = {"test_acc": acc, "seconds": time.perf_counter() - t}
        print(f"{name} pipeline: {acc:.2f}% after {epochs} epochs", flush=True)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=60, help="training steps timed per pipeline")
    p.add_argument("--acc-epochs", type=int, default=24, help="epochs of the side-by-side accuracy check (0: skip)")
    p.add_argument("--acc-subset", type=int, default=0, help="train the accuracy check on the first N images (0: all)")
    p.add_argument("--acc-max-lr", type=float, default=1.2e-2,
                   help="max LR of the accuracy check (both pipelines); the reference preset's range-test LR")
    p.add_argument("--accuracy-only", action="store_true", help="rerun only the accuracy check, into the existing output")
    p.add_argument("--no-whole-job", action="store_true", help="skip the notebook's whole default job")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    data = (load_cifar10(train=True, download=False), load_cifar10(train=False, download=False))
    if a.accuracy_only:
        result = json.loads(Path(a.out).read_text())
        result["accuracy"] = {"epochs": a.acc_epochs, "train_images": a.acc_subset or 50_000, "max_lr": a.acc_max_lr,
                              **accuracy_side_by_side(device, data, a.acc_epochs, a.acc_subset, a.acc_max_lr)}
        Path(a.out).write_text(json.dumps(result, indent=1))
        print(f"updated the accuracy check in {a.out}")
        return 0
    fwd, train_flops = model_flops(PRESETS["reference"])
    peak = matmul_gflops(device)
    print(f"bf16 matmul: {peak:.0f} GFLOP/s; reference preset: {fwd / 1e6:.1f} MFLOP forward, "
          f"{train_flops / 1e6:.1f} MFLOP per training image", flush=True)
    speed = pipelines(device, data, a.steps)
    best_ours = max(speed["ours"], speed["ours_compiled"])
    model_gflops = best_ours * train_flops / 1e9
    print(f"images/s: reference {speed['reference']:.0f}, ours {speed['ours']:.0f}, "
          f"ours compiled {speed['ours_compiled']:.0f}; model {model_gflops:.0f} GFLOP/s = "
          f"{100 * model_gflops / peak:.0f}% of matmul", flush=True)
    result = {
        "machine": machine_name(device), "device": str(device), "platform": platform.platform(),
        "torch": torch.__version__, "data": DATA_NOTE, "batch_size": 256, "model": "reference preset",
        "precision_ours": speed["precision"], "precision_reference": "fp32",
        "images_per_s": {"reference": speed["reference"], "ours": speed["ours"], "ours_compiled": speed["ours_compiled"]},
        "ratio": speed["ours"] / speed["reference"], "ratio_compiled": speed["ours_compiled"] / speed["reference"],
        "compile_s": speed["compile_s"], "matmul_bf16_gflops": peak,
        "model_mflop_forward": fwd / 1e6, "model_mflop_train_step_per_image": train_flops / 1e6,
        "model_gflops": model_gflops, "utilisation": model_gflops / peak,
    }
    if a.acc_epochs:
        result["accuracy"] = {"epochs": a.acc_epochs, "train_images": a.acc_subset or 50_000, "max_lr": a.acc_max_lr,
                              **accuracy_side_by_side(device, data, a.acc_epochs, a.acc_subset, a.acc_max_lr)}
    if not a.no_whole_job:
        t = time.perf_counter()
        m = train_and_report(RunConfig(device=a.device, download=False), ROOT / "runs" / "speed_whole_job", progress=False)
        result["whole_job"] = {"config": "notebook default (RunConfig())", "seconds": time.perf_counter() - t,
                               "train_s": m["train_s"], "test_acc": m["final_test_acc"], "peak_rss_mib": m["peak_rss_mib"]}
        print(f"whole job: {result['whole_job']['seconds']:.0f}s, {m['final_test_acc']:.2f}%", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
