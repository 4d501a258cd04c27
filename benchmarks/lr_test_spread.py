"""How much the LR range test's readings move between seeds and precisions.

    python benchmarks/lr_test_spread.py                                   # best preset, seeds 0-19, fp32 and bf16
    python benchmarks/lr_test_spread.py --presets reference --seeds 5 --precisions fp32
    python benchmarks/lr_test_spread.py --precisions fp16 --seeds 5 --out part.json

Runs the notebook's LR range test (100 steps, batch 128) and records per run: where the
smoothed loss is lowest and how far it dips below its 10th point, the LR at which the loss
diverged (5x its best), and what each rule makes of the curve ("min/2" reads the minimum
alone, "safe" also reads the divergence point: utils/lr_finder.py). A flat curve makes the
minimum's position mostly noise; the divergence point barely moves. Writes
benchmarks/results/lr_test_spread.json (rows of the same preset, seed and precision are
replaced, the others kept).
"""
import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, find_max_lr, machine_name, setup  # noqa: E402
from utils.lr_finder import SKIP_START, suggest_lr  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "lr_test_spread.json"
ISSUE_SEED = 20261202  # a seed whose min/2 suggestion (4.35e-2, fp32, AMD EPYC) blew the default up


def summary(rows):
    """Per (preset, precision): the spread of each reading over the seeds."""
    out = {}
    for key in sorted({(r["preset"], r["precision"]) for r in rows}):
        group = [r for r in rows if (r["preset"], r["precision"]) == key]
        out[f"{key[0]}, {key[1]}"] = {
            "runs": len(group),
            **{name: {"min": min(v), "median": statistics.median(v), "max": max(v)}
               for name in ("min/2", "safe", "diverged_at", "dip_pct")
               if (v := [r[name] for r in group if r[name] is not None])}}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["best"])
    p.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (and the seed %d)" % ISSUE_SEED)
    p.add_argument("--no-issue-seed", action="store_true", help="leave out the seed %d" % ISSUE_SEED)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    out = Path(a.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    rows = []
    seeds = [*range(a.seeds), *([] if a.no_issue_seed else [ISSUE_SEED])]
    jobs = [(pr, prec, s) for pr in a.presets for prec in a.precisions for s in seeds]
    for preset, precision, seed in tqdm(jobs, desc="LR range tests"):
        run = setup(RunConfig(preset=preset, seed=seed, precision=precision, download=False), verbose=False)
        r = find_max_lr(run, progress=False)
        lrs, losses = r["lrs"], r["losses"]
        i = min(range(SKIP_START, len(losses)), key=losses.__getitem__)
        rows.append({"preset": preset, "precision": precision, "seed": seed, "model_config": asdict(run.net.config),
                     "min_lr": lrs[i],
                     "dip_pct": 100 * (1 - losses[i] / losses[SKIP_START]),
                     "diverged_at": lrs[-1] if r["diverged"] else None,
                     "min/2": suggest_lr(lrs, losses, "min/2", r["diverged"]),
                     "safe": suggest_lr(lrs, losses, "safe", r["diverged"])})
        done = {(r["preset"], r["precision"], r["seed"]) for r in rows}
        kept = [r for r in old.get("rows", []) if (r["preset"], r.get("precision"), r["seed"]) not in done
                and "min/2" in r]  # rows of the older layout (no precision) are dropped
        out.write_text(json.dumps({"machine": machine_name(run.device), "data": run.data, "batch_size": run.cfg.batch_size,
                                   "summary": summary(kept + rows), "rows": kept + rows}, indent=1))  # after each run
    print(json.dumps(summary(kept + rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
