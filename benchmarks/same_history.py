"""The default run's per-epoch history, this code against an older commit, on a slice of CIFAR-10.

    python -m benchmarks.same_history --old adb1580    # writes benchmarks/results/same_history.json

Three runs of `python train.py` with the same seed and the same slice, in fp32 on the CPU: the
old commit's code; this code with each block's AM written out (softmax(QK^T / sqrt 8), then
AM V, as the old code computed it); this code as it trains, with torch's fused
scaled_dot_product_attention. The first two must agree exactly; the fused kernel rounds
differently (about 1e-7 in the logits), and the difference grows over the steps.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, provenance, update_json
from benchmarks.job_vs_commit import extract

WRITTEN_OUT = """
import sys
import models.model_9 as m
from benchmarks.common import written_out_forward
m.UltimusBlock.forward = written_out_forward  # the old code's arithmetic
import train
sys.exit(train.main(sys.argv[1:]))
"""


def run(code_dir, out_dir, args, written_out=False):
    """train.py from code_dir on the slice; returns metrics.json's history and step LRs."""
    command = [sys.executable, *(["-c", WRITTEN_OUT] if written_out else ["train.py"]), *args, "--out", str(out_dir)]
    done = subprocess.run(command, cwd=code_dir, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{code_dir}: train.py failed:\n{done.stderr[-2000:]}")
    m = json.loads((Path(out_dir) / "metrics.json").read_text())
    return {"max_lr": m["max_lr"], "history": m["history"], "step_lrs": m["step_lrs"], "model_config": m["model_config"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default="adb1580", help="the commit to compare against")
    p.add_argument("--train-subset", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "same_history.json"))
    a = p.parse_args(argv)
    if not os.environ.get("CIFAR10_DIR"):
        raise SystemExit("set CIFAR10_DIR: every run reads the data from there")
    args = ["--train-subset", str(a.train_subset), "--test-subset", "1024", "--epochs", str(a.epochs),
            "--precision", "fp32", "--device", "cpu", "--no-download", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        old = run(extract(a.old, Path(tmp) / "old"), Path(tmp) / "o", args)
        written = run(ROOT, Path(tmp) / "w", args, written_out=True)
        fused = run(ROOT, Path(tmp) / "f", args)
    same = lambda x, y: x["history"] == y["history"] and x["step_lrs"] == y["step_lrs"]  # noqa: E731
    result = {**provenance("cpu"), "old_commit": a.old, "command": "python train.py " + " ".join(args),
              "identical_old_and_written_out": same(old, written), "identical_old_and_fused": same(old, fused),
              "max_test_acc_gap_fused": max(abs(x["test_acc"] - y["test_acc"]) for x, y in zip(old["history"], fused["history"])),
              "runs": {"old": old, "new, AM written out": written, "new, fused attention": fused}}
    update_json(a.out, result)
    print(f"old == new with AM written out: {result['identical_old_and_written_out']}; old == new fused: "
          f"{result['identical_old_and_fused']} (largest test accuracy gap {result['max_test_acc_gap_fused']:.2f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
