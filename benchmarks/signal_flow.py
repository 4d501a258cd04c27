"""Why the reference network cannot start learning: how much of the input survives each block.

    python -m benchmarks.signal_flow      # writes benchmarks/results/signal_flow.json

For 256 test images and freshly initialised networks (seed 0), prints per UltimusBlock:
how far AM is from uniform (1/8 everywhere), how different the 8 entries of Z = AM V are
(relative to V's), and how much X still differs between images. Uniform attention makes
every entry of Z the mean of V: one number per block. Without the residual connection the
differences between images vanish after two blocks and the logits are the same for every
image, so the loss sits at ln 10 = 2.3026 whatever the LR.
"""
import argparse
import sys
from dataclasses import asdict

import torch

from benchmarks.common import RESULTS, provenance, update_json
from models import Net
from train import PRESETS
from utils.data import Loader, load_cifar10


@torch.no_grad()
def trace(net, x):
    """X's spread across images after the pool; per block: AM's largest deviation from uniform, Z's spread / V's
    spread, X's spread across images; the logits' spread."""
    rows, h = [], net.pool(net.feature_map(x).flatten(2).transpose(1, 2))  # X (B, 48)
    pooled = h.std(0).mean().item()
    for block in net.blocks:
        am, v = block.attention_matrix(h), block.qkv(h)[2]  # (B, 8, 8), (B, 8, 1)
        z = (am @ v).squeeze(-1)  # (B, 8)
        out = block(h)
        h = h + out if net.config.residual else out
        rows.append({"am_max_dev_from_uniform": (am - am.mean(-1, keepdim=True)).abs().max().item(),
                     "z_spread_over_v_spread": (z.std(1) / v.squeeze(-1).std(1)).mean().item(),
                     "x_spread_across_images": h.std(0).mean().item()})
    return pooled, rows, net.fc(h).std(0).mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS / "signal_flow.json"))
    a = p.parse_args(argv)
    x, y = load_cifar10(train=False, download=False)
    batch = next(iter(Loader(x[:256], y[:256], 256)))[0]
    result = {}
    for name in ("reference", "default"):
        torch.manual_seed(0)
        net = Net(PRESETS[name]["model"]).eval()
        pooled, blocks, logit_spread = trace(net, batch)
        result[name] = {"model_config": asdict(net.config), "pooled_x_spread_across_images": pooled, "blocks": blocks,
                        "logit_spread_across_images": logit_spread, **provenance()}
        print(f"{name}: X spread across images after the pool {pooled:.2e}")
        for i, r in enumerate(blocks, 1):
            print(f"  block {i}: AM off uniform by <= {r['am_max_dev_from_uniform']:.4f}; Z spread / V spread "
                  f"{r['z_spread_over_v_spread']:.4f}; X spread across images {r['x_spread_across_images']:.2e}")
        print(f"  logits' spread across images: {logit_spread:.2e}")
    update_json(a.out, result)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
