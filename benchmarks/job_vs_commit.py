"""The whole default job, this code against an older commit, side by side on one machine.

    python -m benchmarks.job_vs_commit --old d0454dd     # writes benchmarks/results/job_vs_commit.json

The job is the notebook's: `python train.py` with the default configuration (LR range
test, 24 epochs with an evaluation after each, the final report and plots). Each code
version runs in its own process from its own checkout (the old one extracted with git
archive), one after the other, `--rounds` times each, alternating; the time is the wall
clock of the whole process, start-up included.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, provenance, update_json


def extract(commit, into):
    """The tree of `commit` as files in `into` (no .git)."""
    Path(into).mkdir(parents=True)
    archive = Path(into) / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return Path(into)


def job(code_dir, out_dir, epochs):
    """Run the default job from code_dir; returns its wall time and metrics.json's figures."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "train.py", "--no-progress", "--no-download", "--epochs", str(epochs),
                           "--out", str(out_dir)], cwd=code_dir, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{code_dir}: train.py failed:\n{done.stderr[-2000:]}")
    m = json.loads((Path(out_dir) / "metrics.json").read_text())
    return {"seconds": seconds, "train_s": m["train_s"], "test_acc": m["final_test_acc"], "max_lr": m["max_lr"],
            "model_config": m["model_config"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default="d0454dd", help="the commit to compare against")
    p.add_argument("--rounds", type=int, default=1, help="runs of each version, alternating old and new")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--out", default=str(RESULTS / "job_vs_commit.json"))
    a = p.parse_args(argv)
    if not os.environ.get("CIFAR10_DIR"):
        raise SystemExit("set CIFAR10_DIR: both versions read the data from there")
    runs = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(a.old, Path(tmp) / "old")
        for r in range(a.rounds):
            for name, code in (("old", old), ("new", ROOT)):
                runs[name].append(job(code, Path(tmp) / f"{name}{r}", a.epochs))
                print(f"{name} ({a.old if name == 'old' else 'this code'}): {runs[name][-1]}", flush=True)
    mean = {k: statistics.mean(x["seconds"] for x in v) for k, v in runs.items()}
    result = {**provenance("cpu"), "job": f"python train.py (default configuration, {a.epochs} epochs)",
              "old_commit": a.old, "runs": runs, "mean_seconds": mean, "ratio_new_over_old": mean["new"] / mean["old"]}
    update_json(a.out, result)
    print(f"new / old = {result['ratio_new_over_old']:.2f}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
