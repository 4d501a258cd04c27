"""The training step of each lever measured against 80%, beside the default's: one process, alternating rounds.

    python -m benchmarks.lever_speed            # writes benchmarks/results/lever_speed.json

The accuracy rows of these levers ran two or three at a time on two cores, so their seconds per epoch
measure the contention as much as the network. Here each network trains through the project's own
train_epoch (batch 128, fp32 as the rows, clipping as its recipe) on the real training images, in turn,
`--rounds` times, on the threads torch is given (set OMP_NUM_THREADS=1 for a lane's view). The distilled
step is the tokens step on class probabilities (from random logits here: their values do not change the time).
The teacher (benchmarks/teacher.py: batch 512, its own precision) is timed in the same rounds; every case is
also given as seconds per epoch (its steps per epoch x its time per step).
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import RESULTS, images_per_s, provenance, update_json
from benchmarks.teacher import resnet9
from train import make_optimizer, recipe, setup
from utils.data import Loader, load_cifar10
from utils.device import optimizer_kwargs, precision_for

TOKENS = {"preset": "tokens", "lr_rule": "min/5", "augment": ["crop2", "flip"]}
# the heads and relative-bias switches have left the model: lever_speed.json keeps their rows until this runs again
CASES = {"default": {"preset": "default"}, "tokens recipe": TOKENS, "distilled preset": {"preset": "distilled"}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "lever_speed.json"))
    a = p.parse_args(argv)
    runs, logits = {}, Path(tempfile.mkdtemp()) / "logits.pt"
    torch.save(torch.randn(50_000, 10), logits)  # a step's time does not depend on the teacher's values
    for name, cfg in CASES.items():
        cfg = cfg | ({"teacher": str(logits)} if cfg["preset"] == "distilled" else {})
        run = setup(recipe(**cfg, precision="fp32", download=False), verbose=False)
        runs[name] = (run.model, run.train_loader, make_optimizer(run, 1e-3), run.precision, run.cfg.grad_clip, [])
    teacher = resnet9().to(memory_format=torch.channels_last)
    loader = Loader(*load_cifar10(train=True, download=False), 512, train=True, augment=("crop", "flip"), channels_last=True)
    runs["teacher (ResNet-9, batch 512)"] = (teacher, loader, torch.optim.Adam(teacher.parameters(), **optimizer_kwargs("cpu")),
                                              precision_for("cpu"), 0.0, [])
    for _ in range(a.rounds):
        for model, loader, opt, precision, clip, ms in runs.values():
            ms.append(1000 * loader.batch_size / images_per_s(model, loader, opt, a.steps, precision, clip))
    default = statistics.median(runs["default"][-1]) * len(runs["default"][1])  # ms per epoch
    rows = {name: {"ms_per_step": statistics.median(ms), "s_per_epoch": statistics.median(ms) * len(loader) / 1000,
                   "precision": precision, "rounds_ms": ms, "over_default": statistics.median(ms) * len(loader) / default}
            for name, (_, loader, _, precision, _, ms) in runs.items()}
    result = {"cases": rows, "steps": a.steps, "rounds": a.rounds, "threads": torch.get_num_threads(),
              **provenance("cpu")}
    update_json(a.out, result)
    for name, r in rows.items():
        print(f"{name:38s} {r['ms_per_step']:7.1f} ms/step  {r['s_per_epoch']:6.1f} s/epoch  "
              f"{r['over_default']:.2f} x the default's epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
