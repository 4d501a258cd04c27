"""How much the LR range test's readings move between seeds.

    python benchmarks/lr_test_spread.py     # writes benchmarks/results/lr_test_spread.json

Runs the notebook's LR range test (100 steps, rule min/2, batch 128) for seeds 0-4 of the
reference preset (scale after the softmax, and inside it) and of the best preset, and
records per run: the suggested max LR, where the smoothed loss is lowest and how far it
dips below its 10th point, and the LR at which the loss diverged (5x its best). A flat
curve makes the minimum's position mostly noise; the divergence point is what the rule
"div/40" reads.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import RunConfig, find_max_lr, machine_name, setup  # noqa: E402
from utils.lr_finder import SKIP_START  # noqa: E402


def main():
    rows = []
    for preset, model in (("reference", {}), ("reference", {"scale": "inside"}), ("best", {})):
        for seed in range(5):
            run = setup(RunConfig(preset=preset, seed=seed, model=model, download=False), verbose=False)
            r = find_max_lr(run, progress=False)
            lrs, losses = r["lrs"], r["losses"]
            i = min(range(SKIP_START, len(losses)), key=losses.__getitem__)
            rows.append({"preset": preset, "scale": run.net.config.scale, "seed": seed, "model_config": run.net.config.to_dict(), "suggested": r["suggested"], "min_lr": lrs[i],
                         "dip_pct": 100 * (1 - losses[i] / losses[SKIP_START]),
                         "diverged_at": lrs[-1] if r["diverged"] else None})
            print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "lr_test_spread.json"
    out.write_text(json.dumps({"rows": rows, "batch_size": run.cfg.batch_size, "machine": machine_name(run.device), "data": run.data}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
