"""Where a training step's time goes: torch.profiler over our pipeline, by operator, and by part.

    python benchmarks/profile_step.py --preset reference   # writes benchmarks/results/profile_reference.txt
    python benchmarks/profile_step.py --preset tokens      # writes benchmarks/results/profile_tokens.txt
    python benchmarks/profile_step.py --compile            # writes benchmarks/results/profile_best_compiled.txt
    python benchmarks/profile_step.py --parts              # writes benchmarks/results/step_parts.json

--parts times each part of a step on its own (eager): the batch from the loader; the
features (convolutions, pooling, batch norm, ReLU), forward and backward; the head
(GAP, blocks, FC, loss), forward and backward, eager and torch.compile'd; the optimizer step;
and the whole step. Parts timed alone do not add up exactly to the whole step (caches,
the allocator, zero_grad and autocast entry are in the whole only).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, machine_name, make_optimizer, setup  # noqa: E402
from utils.device import autocast  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="best")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="profile the torch.compile'd model")
    p.add_argument("--parts", action="store_true", help="time the step's parts instead (eager)")
    a = p.parse_args(argv)
    run = setup(RunConfig(preset=a.preset, download=False, compile=a.compile and not a.parts), verbose=False)
    opt = make_optimizer(run, 1e-3)
    batches = iter(run.train_loader)
    step = training_step(run, opt, batches)
    if a.parts:
        return parts(run, opt, batches, step, a.preset)
    ms = ms_per_call(step, steps=a.steps, warmup=3)
    with profile() as prof:
        for _ in range(a.steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    header = (f"{a.preset} preset{' compiled' if a.compile else ''}, batch {run.cfg.batch_size}, {run.precision}, "
              f"{a.steps} steps, {machine_name(run.device)}: {ms:.1f} ms per step unprofiled\n")
    out = ROOT / "benchmarks" / "results" / f"profile_{a.preset}{'_compiled' if a.compile else ''}.txt"
    out.write_text(header + table)
    print(header + table)


def training_step(run, opt, batches):
    """One optimizer step on the next batch, as train_epoch takes it (without its bookkeeping)."""
    def step():
        x, y = next(batches)
        with autocast(run.device, run.precision):
            loss = F.cross_entropy(run.model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def ms_per_call(fn, steps=100, warmup=10):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps * 1000


def parts(run, opt, batches, step, preset):
    """Milliseconds per call of each part of a training step; writes step_parts.json."""
    net, x, y = run.model, *next(batches)
    feats = net.feature_map(x).detach()  # conv3's map: what the head takes

    def features():
        with autocast(run.device, run.precision):
            f = net.feature_map(x)
        f.float().sum().backward()

    def head():
        with autocast(run.device, run.precision):
            loss = F.cross_entropy(net.head(feats.requires_grad_()), y)
        loss.backward()

    compiled_head = torch.compile(lambda f: F.cross_entropy(net.head(f), y))  # the part eager runs op by op
    t = time.perf_counter()
    compiled_head(feats.requires_grad_()).backward()
    compile_s = time.perf_counter() - t

    batches_per_epoch = len(run.train_loader)
    fresh = iter(run.train_loader)
    ms = {"loader batch": ms_per_call(lambda: next(fresh), steps=batches_per_epoch - 20),
          "features forward+backward": ms_per_call(features), "head and loss forward+backward": ms_per_call(head),
          "optimizer step": ms_per_call(opt.step), "whole step": ms_per_call(step, steps=200),
          "head and loss compiled, forward+backward": ms_per_call(lambda: compiled_head(feats).backward())}
    result = {"preset": preset, "batch_size": run.cfg.batch_size, "precision": run.precision,
              "machine": machine_name(run.device), "data": run.data, "model_config": asdict(run.net.config),
              "torch": torch.__version__, "ms": ms, "head_compile_s": compile_s, "steps_per_epoch": batches_per_epoch,
              "date": time.strftime("%Y-%m-%d")}
    out = ROOT / "benchmarks" / "results" / "step_parts.json"
    out.write_text(json.dumps(result, indent=1))
    for k, v in ms.items():
        print(f"{k:32s} {v:6.2f} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
