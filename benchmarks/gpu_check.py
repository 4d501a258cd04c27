"""The GPU check: what CI cannot see, run once on a CUDA machine.

    CIFAR10_DIR=... python -m benchmarks.gpu_check     # writes benchmarks/results/gpu_check.json
    python -m benchmarks.gpu_check --out /tmp/gpu_check.json --skip-tests

Each part is merged into the result file as it ends, so a run stopped by a time limit keeps what it measured.

1. the test suite, on this machine (its CUDA-only paths included);
2. the default job (LR range test, 24 epochs, report) in the device's own precision, then
   forced to fp16 with a gradient scaler (a T4's mode), then compiled (CUDA graphs);
3. a few training steps under torch.cuda.set_sync_debug_mode("warn"): every host sync
   there is a warning, and the step should make none between its reads every SYNC_EVERY steps.
On a machine without CUDA it says so in one line and exits with status 2.
"""
import argparse
import os
import subprocess
import sys
import time
import warnings

import torch

from benchmarks.common import RESULTS, ROOT, provenance, update_json
from train import make_optimizer, recipe, setup, train_and_report
from utils.device import grad_scaler
from utils.training import SYNC_EVERY, train_epoch


def test_suite():
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=ROOT, capture_output=True, text=True)
    return {"exit_code": done.returncode, "summary": done.stdout.strip().splitlines()[-1:],
            "seconds": time.perf_counter() - t}


def default_job(name, **overrides):
    t = time.perf_counter()
    m = train_and_report(recipe(**overrides), ROOT / "runs" / f"gpu_{name}", progress=False)
    return {"seconds": time.perf_counter() - t, "train_s": m["train_s"], "test_acc": m["final_test_acc"],
            "precision": m["precision"], "max_lr": m["max_lr"], "epoch_seconds": m["epoch_seconds"]}


def syncs_in_steps(steps=2 * SYNC_EVERY):
    """Host-sync warnings in `steps` training steps (whole epoch of that many batches)."""
    run = setup(recipe(train_subset=128 * steps), verbose=False)
    opt = make_optimizer(run, 1e-3)
    kw = dict(precision=run.precision, scaler=grad_scaler(run.device, run.precision), grad_clip=run.cfg.grad_clip,
              progress=False)
    train_epoch(run.model, run.train_loader, opt, **kw)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(run.model, run.train_loader, opt, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = host_syncs(str(w.message) for w in caught)
    return {"steps": steps, "expected_reads": steps // SYNC_EVERY, "sync_warnings": len(syncs), "first": syncs[:5]}


def host_syncs(messages):
    """The warnings that report a sync, first lines only; the debug mode's notice that it is a prototype is none."""
    return [m.splitlines()[0] for m in messages if "called a synchronizing" in m]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS / "gpu_check.json"))
    p.add_argument("--skip-tests", action="store_true", help="leave out the test suite (part 1)")
    p.add_argument("--note", default="", help="how the data or the machine differ from the usual run, kept in the file")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    if not os.environ.get("CIFAR10_DIR"):
        print("gpu_check: set CIFAR10_DIR (or let train.py download into ./data)", file=sys.stderr)
    parts = [("syncs", syncs_in_steps)] + [
        (f"job_{name}", lambda o=overrides, n=name: default_job(n, **o))
        for name, overrides in (("native", {}), ("fp16", {"precision": "fp16"}), ("compiled", {"compile": True}))]
    if not a.skip_tests:
        parts.insert(0, ("tests", test_suite))
    update_json(a.out, {**provenance("cuda"), "capability": list(torch.cuda.get_device_capability()), "tests": "skipped",
                        **({"note": a.note} if a.note else {}),
                        **{key: "not run yet" for key, _ in parts}})  # no part of an earlier run stays
    for key, part in parts:
        result = part()
        update_json(a.out, {key: result})  # after every part: a stopped run keeps what it measured
        print(key, {k: v for k, v in result.items() if k != "epoch_seconds"}, flush=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
