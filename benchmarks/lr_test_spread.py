"""How much the LR range test's readings move between seeds and precisions.

    python -m benchmarks.lr_test_spread                                   # best preset, seeds 0-19, fp32 and bf16
    python -m benchmarks.lr_test_spread --presets reference --seeds 5 --precisions fp32
    python -m benchmarks.lr_test_spread --precisions fp16 --seeds 5 --out part.json

Runs the notebook's LR range test (100 steps, batch 128) and records per run: where the
smoothed loss is lowest and how far it dips below its 10th point, the LR at which the loss
diverged (5x its best), and what each rule makes of the curve ("min/2" reads the minimum
alone, "safe" also reads the divergence point: utils/lr_finder.py). A flat curve makes the
minimum's position mostly noise; the divergence point barely moves. Writes
benchmarks/results/lr_test_spread.json, one entry per preset, precision and seed (an entry
run again is replaced, the others kept).
"""
import argparse
import json
import statistics
import sys
from dataclasses import asdict

from tqdm.auto import tqdm

from benchmarks.common import RESULTS, provenance, update_json
from train import find_max_lr, recipe, setup
from utils.lr_finder import SKIP_START, suggest_lr

STRESS_SEED = 20261202  # a seed whose min/2 suggestion (3.87e-2 in fp32) blew the default up (stability.json)


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


def reading(preset, precision, seed):
    """One range test's readings, with the network and the machine."""
    run = setup(recipe(preset, seed=seed, precision=precision, download=False), verbose=False)
    r = find_max_lr(run, progress=False)
    lrs, losses = r["lrs"], r["losses"]
    i = min(range(SKIP_START, len(losses)), key=losses.__getitem__)
    return {"preset": preset, "precision": precision, "seed": seed, "model_config": asdict(run.net.config),
            "min_lr": lrs[i], "dip_pct": 100 * (1 - losses[i] / losses[SKIP_START]),
            "diverged_at": lrs[-1] if r["diverged"] else None,
            "min/2": suggest_lr(lrs, losses, "min/2", r["diverged"]), "safe": suggest_lr(lrs, losses, "safe", r["diverged"]),
            "batch_size": run.cfg.batch_size, **provenance(run.device, run.cfg.data_dir)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["default"])
    p.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (and the seed %d)" % STRESS_SEED)
    p.add_argument("--no-stress-seed", action="store_true", help="leave out the seed %d" % STRESS_SEED)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--out", default=str(RESULTS / "lr_test_spread.json"))
    a = p.parse_args(argv)
    seeds = [*range(a.seeds), *([] if a.no_stress_seed else [STRESS_SEED])]
    jobs = [(pr, prec, s) for pr in a.presets for prec in a.precisions for s in seeds]
    for preset, precision, seed in tqdm(jobs, desc="LR range tests"):
        results = update_json(a.out, {f"{preset}, {precision}, seed {seed}": reading(preset, precision, seed)})
    print(json.dumps(summary(list(results.values())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
