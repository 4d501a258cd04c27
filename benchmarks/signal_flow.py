"""Why the reference network cannot start learning: how much of the input survives each block.

    python benchmarks/signal_flow.py      # writes benchmarks/results/signal_flow.json

For 256 test images and freshly initialised networks (seed 0), prints per UltimusBlock:
how far AM is from uniform (1/8 everywhere), how different the 8 entries of Z = AM V are
(relative to V's), and how much X still differs between images. Uniform attention makes
every entry of Z the mean of V: one number per block. Without the residual connection the
differences between images vanish after two blocks and the logits are the same for every
image, so the loss sits at ln 10 = 2.3026 whatever the LR.
"""
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import PRESETS, Net  # noqa: E402
from utils.data import Loader, load_cifar10  # noqa: E402


@torch.no_grad()
def trace(net, x):
    """X's spread across images after the pool; per block: AM's largest deviation from uniform, Z's spread / V's
    spread, X's spread across images; the logits' spread."""
    rows, h = [], net.gap(net.feature_map(x)).flatten(1)  # X (B, 48)
    pooled = h.std(0).mean().item()
    for block in net.blocks:
        out, am = block.attend(h)  # (B, 48), (B, 8, 8)
        v = block.v(h)  # (B, 8)
        z = torch.einsum("bij,bj->bi", am, v)  # (B, 8)
        h = h + out if net.config.residual else out
        rows.append({"am_max_dev_from_uniform": (am - am.mean(-1, keepdim=True)).abs().max().item(),
                     "z_spread_over_v_spread": (z.std(1) / v.std(1)).mean().item(),
                     "x_spread_across_images": h.std(0).mean().item()})
    return pooled, rows, net.fc(h).std(0).mean().item()


def main():
    x, y = load_cifar10(train=False, download=False)
    batch = next(iter(Loader(x[:256], y[:256], 256)))[0]
    result = {}
    for name in ("reference", "best"):
        torch.manual_seed(0)
        net = Net(PRESETS[name]).eval()
        pooled, blocks, logit_spread = trace(net, batch)
        result[name] = {"model_config": asdict(net.config), "pooled_x_spread_across_images": pooled, "blocks": blocks, "logit_spread_across_images": logit_spread}
        print(f"{name}: X spread across images after the pool {pooled:.2e}")
        for i, r in enumerate(blocks, 1):
            print(f"  block {i}: AM off uniform by <= {r['am_max_dev_from_uniform']:.4f}; Z spread / V spread "
                  f"{r['z_spread_over_v_spread']:.4f}; X spread across images {r['x_spread_across_images']:.2e}")
        print(f"  logits' spread across images: {logit_spread:.2e}")
    out = ROOT / "benchmarks" / "results" / "signal_flow.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
