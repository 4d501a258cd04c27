"""The training step of each lever measured against 80%, beside the default's: one process, alternating rounds.

    python -m benchmarks.lever_speed            # writes benchmarks/results/lever_speed.json

The accuracy rows of these levers ran two or three at a time on two cores, so their seconds per epoch
measure the contention as much as the network. Here each network trains through the project's own
train_epoch (batch 128, fp32 as the rows, clipping as its recipe) on the real training images, in turn,
`--rounds` times, on the threads torch is given (set OMP_NUM_THREADS=1 for a lane's view). Distillation's step
is the tokens step on soft labels; its teacher's one-off cost is in results/teacher.json.
"""
import argparse
import statistics
import sys

import torch.nn.functional as F

from benchmarks.common import RESULTS, images_per_s, provenance, update_json
from train import make_optimizer, recipe, setup

TOKENS = {"preset": "tokens", "lr_rule": "min/5", "augment": ["crop2", "flip"]}
CASES = {"default": {"preset": "default"}, "tokens recipe": TOKENS,
         "+ 2 heads": TOKENS | {"model": {"heads": 2}},
         "+ relative position bias": TOKENS | {"model": {"rel_bias": True, "conv_bias": False}},
         "+ 2 heads + relative position bias": TOKENS | {"model": {"heads": 2, "rel_bias": True, "conv_bias": False}},
         "+ distillation (soft labels)": TOKENS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "lever_speed.json"))
    a = p.parse_args(argv)
    runs = {}
    for name, cfg in CASES.items():
        run = setup(recipe(**cfg, precision="fp32", download=False), verbose=False)
        if "distillation" in name:  # the same step on class probabilities
            run.train_loader.labels = F.one_hot(run.train_loader.labels, 10).float()
        runs[name] = (run, make_optimizer(run, 1e-3), [])
    for _ in range(a.rounds):
        for name, (run, opt, ms) in runs.items():
            ms.append(1000 * run.cfg.batch_size / images_per_s(run.model, run.train_loader, opt, a.steps,
                                                             run.precision, run.cfg.grad_clip))
    default = statistics.median(runs["default"][2])
    rows = {name: {"ms_per_step": statistics.median(ms), "rounds_ms": ms, "over_default": statistics.median(ms) / default}
            for name, (_, _, ms) in runs.items()}
    result = {"cases": rows, "steps": a.steps, "rounds": a.rounds, "precision": "fp32", "batch_size": 128,
              **provenance("cpu")}
    update_json(a.out, result)
    for name, r in rows.items():
        print(f"{name:38s} {r['ms_per_step']:7.1f} ms/step  {r['over_default']:.2f} x the default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
