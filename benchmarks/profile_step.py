"""Where a training step's time goes: torch.profiler over our pipeline, by operator, and by part.

    python -m benchmarks.profile_step --preset reference   # writes benchmarks/results/profile_reference.txt
    python -m benchmarks.profile_step --preset tokens      # writes benchmarks/results/profile_tokens.txt
    python -m benchmarks.profile_step --compile            # writes benchmarks/results/profile_best_compiled.txt
    python -m benchmarks.profile_step --parts              # writes benchmarks/results/step_parts.json

The steps are the project's own (train_epoch, clipping as the preset's recipe has it).
--parts times each part of a step on its own (eager): the batch from the loader; the
features (convolutions, pooling, batch norm, ReLU), forward and backward; the head
(blocks, FC, loss), forward and backward, eager and torch.compile'd; the optimizer step;
and the whole step. Parts timed alone do not add up exactly to the whole step (caches,
the allocator, zero_grad, clipping and autocast entry are in the whole only).
"""
import argparse
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch.profiler import profile

from benchmarks.common import RESULTS, images_per_s, provenance, update_json
from train import make_optimizer, recipe, setup
from utils.training import autocast


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="profile the torch.compile'd model")
    p.add_argument("--parts", action="store_true", help="time the step's parts instead (eager)")
    a = p.parse_args(argv)
    run = setup(recipe(a.preset, download=False, compile=a.compile and not a.parts), verbose=False)
    opt = make_optimizer(run, 1e-3)

    def ms_per_step(steps, warmup=3):
        """Milliseconds per training step of train_epoch over `steps` steps."""
        return 1000 * run.cfg.batch_size / images_per_s(run.model, run.train_loader, opt, steps, run.precision,
                                                        run.cfg.grad_clip, warmup)
    if a.parts:
        return parts(run, opt, ms_per_step(200))
    ms = ms_per_step(a.steps)
    with profile() as prof:
        ms_per_step(a.steps, warmup=0)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    where = provenance(run.device, run.cfg.data_dir)
    header = (f"{a.preset} preset{' compiled' if a.compile else ''}, batch {run.cfg.batch_size}, {run.precision}, "
              f"{a.steps} steps, {where['machine']}, commit {where['commit']}: {ms:.1f} ms per step unprofiled\n")
    out = RESULTS / f"profile_{a.preset}{'_compiled' if a.compile else ''}.txt"
    out.write_text(header + table)
    print(header + table)
    return 0


def ms_per_call(fn, steps=100, warmup=10):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps * 1000


def parts(run, opt, whole_step_ms):
    """Milliseconds per call of each part of a training step; writes step_parts.json."""
    net, (x, y) = run.model, next(iter(run.train_loader))
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
          "optimizer step": ms_per_call(opt.step), "whole step": whole_step_ms,
          "head and loss compiled, forward+backward": ms_per_call(lambda: compiled_head(feats).backward())}
    result = {"preset": run.cfg.preset, "batch_size": run.cfg.batch_size, "grad_clip": run.cfg.grad_clip,
              "precision": run.precision, **provenance(run.device, run.cfg.data_dir), "model_config": asdict(run.net.config),
              "ms": ms, "head_compile_s": compile_s, "steps_per_epoch": batches_per_epoch}
    out = RESULTS / "step_parts.json"
    update_json(out, result)
    for k, v in ms.items():
        print(f"{k:32s} {v:6.2f} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
