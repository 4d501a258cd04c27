"""Where a training step's time goes: torch.profiler over our pipeline, by operator.

    python benchmarks/profile_step.py --preset reference   # writes benchmarks/results/profile_reference.txt
    python benchmarks/profile_step.py --compile            # writes benchmarks/results/profile_best_compiled.txt
"""
import argparse
import sys
import time
from pathlib import Path

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
    a = p.parse_args(argv)
    run = setup(RunConfig(preset=a.preset, download=False, compile=a.compile), verbose=False)
    opt = make_optimizer(run, 1e-3)
    batches = iter(run.train_loader)

    def step():
        x, y = next(batches)
        with autocast(run.device, run.precision):
            loss = F.cross_entropy(run.model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    ms = (time.perf_counter() - t) / a.steps * 1000
    with profile() as prof:
        for _ in range(a.steps):
            step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    header = (f"{a.preset} preset{' compiled' if a.compile else ''}, batch {run.cfg.batch_size}, {run.precision}, "
              f"{a.steps} steps, {machine_name(run.device)}: {ms:.1f} ms per step unprofiled\n")
    out = ROOT / "benchmarks" / "results" / f"profile_{a.preset}{'_compiled' if a.compile else ''}.txt"
    out.write_text(header + table)
    print(header + table)


if __name__ == "__main__":
    sys.exit(main())
