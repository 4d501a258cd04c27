"""The GPU check: what CI cannot see, run once on a CUDA machine.

    CIFAR10_DIR=... python benchmarks/gpu_check.py     # writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --out /tmp/gpu_check.json --skip-tests

The result file is rewritten after each part, so a run stopped by a time limit keeps what it measured.

1. the test suite, on this machine (its CUDA-only paths included);
2. the default job (LR range test, 24 epochs, report) in the device's own precision, then
   forced to fp16 with a gradient scaler (a T4's mode), then compiled (CUDA graphs);
3. a few training steps under torch.cuda.set_sync_debug_mode("warn"): every host sync
   there is a warning, and the step should make none between its reads every SYNC_EVERY steps.
On a machine without CUDA it says so in one line and exits with status 2.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, make_optimizer, machine_name, setup, train_and_report  # noqa: E402
from utils.device import grad_scaler  # noqa: E402
from utils.training import SYNC_EVERY, train_epoch  # noqa: E402


def test_suite():
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=ROOT, capture_output=True, text=True)
    return {"exit_code": done.returncode, "summary": done.stdout.strip().splitlines()[-1:],
            "seconds": time.perf_counter() - t}


def default_job(name, **overrides):
    t = time.perf_counter()
    m = train_and_report(RunConfig(**overrides), ROOT / "runs" / f"gpu_{name}", progress=False)
    return {"seconds": time.perf_counter() - t, "train_s": m["train_s"], "test_acc": m["final_test_acc"],
            "precision": m["precision"], "max_lr": m["max_lr"], "epoch_seconds": m["epoch_seconds"]}


def syncs_in_steps(steps=2 * SYNC_EVERY):
    """Host-sync warnings in `steps` training steps (whole epoch of that many batches)."""
    run = setup(RunConfig(train_subset=128 * steps), verbose=False)
    opt = make_optimizer(run, 1e-3)
    train_epoch(run.model, run.train_loader, opt, device=run.device, precision=run.precision,
                scaler=grad_scaler(run.device, run.precision), progress=False)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(run.model, run.train_loader, opt, device=run.device, precision=run.precision,
                        scaler=grad_scaler(run.device, run.precision), progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"steps": steps, "expected_reads": steps // SYNC_EVERY, "sync_warnings": len(syncs), "first": syncs[:5]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    p.add_argument("--skip-tests", action="store_true", help="leave out the test suite (part 1)")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    if not os.environ.get("CIFAR10_DIR"):
        print("gpu_check: set CIFAR10_DIR (or let train.py download into ./data)", file=sys.stderr)
    result = {"machine": machine_name(torch.device("cuda")), "capability": list(torch.cuda.get_device_capability()),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    out = Path(a.out)
    parts = [("syncs", syncs_in_steps)] + [
        (f"job_{name}", lambda o=overrides, n=name: default_job(n, **o))
        for name, overrides in (("native", {}), ("fp16", {"precision": "fp16"}), ("compiled", {"compile": True}))]
    if not a.skip_tests:
        parts.insert(0, ("tests", test_suite))
    for key, part in parts:
        result[key] = part()
        print(key, {k: v for k, v in result[key].items() if k != "epoch_seconds"}, flush=True)
        out.write_text(json.dumps(result, indent=1))  # after every part: a stopped run keeps what it measured
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
