"""How reliably the course's reference network sits at chance while the same network with the residual learns.

    python -m benchmarks.chance_start        # writes benchmarks/results/chance_start.json

The notebook's live cell, over seeds and on the full training set: the reference preset and the same network
with X = X + Block(X), each trained for 2 epochs at max LR 1e-2 (batch 128, no clipping, fp32), on the first
5,120 training images (seeds 0-4) and on all 50,000 (seeds 0-2); test accuracy on the first 2,000 test images.
"""
import argparse
import sys

from tqdm.auto import tqdm

from benchmarks.common import RESULTS, provenance, update_json
from train import recipe, setup, train

SETTINGS = dict(max_lr=1e-2, batch_size=128, grad_clip=0.0, epochs=2, test_subset=2000, precision="fp32",
                download=False)  # the notebook's cell uses these
SETS = {"first 5,120 images": (5120, range(5)), "all 50,000 images": (0, range(3))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS / "chance_start.json"))
    a = p.parse_args(argv)
    result = {"settings": SETTINGS, **provenance("cpu")}
    jobs = [(s, n, seed, r) for s, (n, seeds) in SETS.items() for seed in seeds for r in (False, True)]
    for data, n, seed, residual in tqdm(jobs, desc="runs"):
        run = setup(recipe("reference", model={"residual": residual}, train_subset=n, seed=seed, device="cpu",
                           **SETTINGS), verbose=False)
        history = train(run, SETTINGS["max_lr"], progress=False, log=lambda line: None)
        name = "reference + residual" if residual else "reference"
        result.setdefault(data, {}).setdefault(name, {})[str(seed)] = [
            {k: r[k] for k in ("epoch", "train_loss", "test_acc")} for r in history["epochs"]]
    update_json(a.out, result)
    for data in SETS:
        for name, seeds in result[data].items():
            print(data, name, {s: [round(r["test_acc"], 1) for r in h] for s, h in seeds.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
