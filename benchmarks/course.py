"""The course's own run, reproduced from its published log (course/training_log.csv), one change at a time.

    python -m benchmarks.course --rows course --seeds 0 1 2 --out a.json          # the course's recipe, 24 epochs
    python -m benchmarks.course --rows "+ residual" --stop-after 12 --out b.json  # the first 12 of its 24 epochs
    python -m benchmarks.course --mechanism --out c.json   # each layer's gradient and Adam's step through epoch 1
    python -m benchmarks.course --merge a.json b.json c.json                      # into results/course.json

Every row is the course preset (train.py) with one change, on all 50,000 training images.
"""
import argparse
import json
import sys
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from analysis import layer_rms
from benchmarks.accuracy import merge, run_seed
from benchmarks.common import RESULTS, provenance, update_json
from train import recipe, setup, train

LADDER = {  # one change each from the course's run
    "course": ({}, "the course's recipe: its network, batch 256, Adam, its schedule peaking at 1.07e-3, no clipping"),
    "+ residual": ({"model": {"residual": True}}, "X = X + Block(X)"),
    "+ safe max LR": ({"max_lr": 0.0, "lr_rule": "safe"}, "the max LR the range test's safe rule picks"),
    "+ batch norm": ({"model": {"batch_norm": True}}, "BatchNorm2d after each conv"),
    "+ scale inside": ({"model": {"scale": "inside"}}, "softmax(QK / sqrt 8) instead of softmax(QK) / sqrt 8"),
    "+ one AM per batch": ({"model": {"attention": "batch"}}, "the other reading of SoftMax(Q^T K): Q.T @ K over the batch"),
    "+ batch 128": ({"batch_size": 128}, "128 images a step, twice the steps"),
    "+ Adam eps 1e-12": ({"adam_eps": 1e-12}, "Adam's epsilon 1e-12 instead of 1e-8"),
    "course, fp32": ({"precision": "fp32"}, "the course's recipe without autocast, every product in float32"),
}
BENCH = {"download": False, "channels_last": False}  # NCHW: the faster layout for the 32 x 32 maps on the CPU
MECHANISM = {"course": ({}, 0), "course, seed 1": ({}, 1), "+ residual": ({"model": {"residual": True}}, 0),
             "+ Adam eps 1e-12": ({"adam_eps": 1e-12}, 0)}  # name: (changes, seed)


def mechanism(changes, seed=0):
    """Each layer's gradient (RMS) and the step Adam takes with it (RMS of the change, over the LR) at every
    training step of epoch 1."""
    run = setup(recipe("course", **changes, seed=seed, **BENCH), verbose=False)
    trace, before = {"grad": [], "step": [], "lr": []}, {}

    def pre(opt, *_):
        before.update({n: p.detach().clone() for n, p in run.net.named_parameters()})
        trace["grad"].append(layer_rms({n: p.grad for n, p in run.net.named_parameters()}))
        trace["lr"].append(opt.param_groups[0]["lr"])

    def post(opt, *_):
        lr = opt.param_groups[0]["lr"]
        trace["step"].append({k: v / lr for k, v in layer_rms(
            {n: p.detach() - before[n] for n, p in run.net.named_parameters()}).items()})

    optimizer_hooks = [register_optimizer_step_pre_hook(lambda o, a, k: pre(o)),
                       register_optimizer_step_post_hook(lambda o, a, k: post(o))]
    try:
        history = train(run, run.cfg.max_lr, progress=True, log=print, stop_after=1)
    finally:
        for h in optimizer_hooks:
            h.remove()
    return {"changes": changes, "seed": seed, "adam_eps": run.cfg.adam_eps, "epoch_1": history["epochs"][0], **trace}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="*", default=[], help=f"among {list(LADDER)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--stop-after", type=int, help="train only the first N epochs of the 24-epoch schedule")
    p.add_argument("--mechanism", action="store_true", help="trace gradients and Adam's steps through epoch 1")
    p.add_argument("--out", default=str(RESULTS / "course.json"))
    p.add_argument("--merge", nargs="+", metavar="FILE", help="merge these files' rows into --out and stop")
    a = p.parse_args(argv)
    if a.merge:
        parts, traces = {}, {}
        for f in a.merge:
            result = json.loads(Path(f).read_text())
            for name, row in result.get("rows", {}).items():
                parts.setdefault(name, []).append(row)
            traces |= result.get("mechanism", {})
        old = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
        rows = old.get("rows", {}) | {name: merge(r) for name, r in parts.items()}
        update_json(a.out, {"rows": {n: rows[n] for n in LADDER if n in rows}, "mechanism": old.get("mechanism", {}) | traces})
        return 0
    unknown = [r for r in a.rows if r not in LADDER]
    if unknown:
        p.error(f"unknown row(s) {unknown}; choose from {list(LADDER)}")
    result = {"rows": {}, "mechanism": {}}
    for name in a.rows:
        changes, why = LADDER[name]
        result["rows"][name] = merge([run_seed(recipe("course", **changes, seed=s, **BENCH), name, why,
                                               stop_after=a.stop_after) for s in a.seeds])
        update_json(a.out, result)
    if a.mechanism:
        for name, (changes, seed) in MECHANISM.items():
            result["mechanism"][name] = mechanism(changes, seed) | provenance("cpu")
            update_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
