"""Torch's fused attention against AM written out: the training step of each preset, side by side.

    python -m benchmarks.attention_speed       # writes benchmarks/results/attention_speed.json

The blocks train with F.scaled_dot_product_attention; before, they wrote AM out
(softmax(QK^T / sqrt 8), then AM V: the same arithmetic, common.written_out_forward). Both run
here in one process on one machine, alternating, `--rounds` times each: milliseconds per
training step of the project's own train_epoch (batch 128, clipping as in training), for
the default, the tokens preset, and the tokens preset on a 16 x 16 map (256 tokens).
"""
import argparse
import statistics
import sys
from dataclasses import asdict

from benchmarks.common import RESULTS, images_per_s, provenance, update_json, written_out_forward
from models.model_9 import UltimusBlock
from train import make_optimizer, recipe, setup

CASES = {"default": {"preset": "default"}, "tokens": {"preset": "tokens"},
         # 256 tokens: conv3 and the blocks on a 16 x 16 map (one max pool instead of two), no parameter added
         "tokens, 16 x 16 map": {"preset": "tokens", "model": {"strides": [2, 1, 1]}}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "attention_speed.json"))
    a = p.parse_args(argv)
    fused = UltimusBlock.forward
    result = {}
    for name, cfg in CASES.items():
        run = setup(recipe(**cfg, download=False), verbose=False)
        opt = make_optimizer(run, 1e-3)
        ms = {"fused": [], "written out": []}
        for _ in range(a.rounds):
            for path, forward in (("written out", written_out_forward), ("fused", fused)):
                UltimusBlock.forward = forward
                ms[path].append(1000 * run.cfg.batch_size / images_per_s(run.model, run.train_loader, opt, a.steps,
                                                                          run.precision, run.cfg.grad_clip))
        UltimusBlock.forward = fused
        mean = {k: statistics.mean(v) for k, v in ms.items()}
        result[name] = {"ms_per_step": ms, "mean_ms": mean, "fused_over_written_out": mean["fused"] / mean["written out"],
                          "precision": run.precision, "batch_size": run.cfg.batch_size,
                          "model_config": asdict(run.net.config)}
        print(f"{name}: fused {mean['fused']:.1f} ms/step, written out {mean['written out']:.1f} "
              f"({result[name]['fused_over_written_out']:.2f}x)", flush=True)
    update_json(a.out, {**provenance("cpu"), "steps": a.steps, "rounds": a.rounds, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
