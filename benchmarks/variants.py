"""Variants of the tokens network that accuracy.py measures; not part of the lesson's model.

Each one wraps the blocks of a built Net in place and adds no parameter, so a row of
accuracy.json that names a variant is rebuilt by Net(model_config) and then apply().
What they gave: docs/attention_over_positions.md.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PreNorm(nn.Module):
    """block(LayerNorm(x)), the LayerNorm without parameters: ViT's norm before each block."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def attend(self, x):
        return self.block.attend(F.layer_norm(x, x.shape[-1:]))

    def forward(self, x):
        return self.attend(x)[0]


def sincos_positions(side, dim=48):
    """ViT's fixed 2-D sine-cosine code: (side*side, dim), half the features for the row, half for the column."""
    quarter = dim // 4
    freqs = 1 / 10000 ** (torch.arange(quarter) / quarter)  # (12,)
    pos = torch.arange(side).float()[:, None] * freqs  # (side, 12)
    code = torch.cat([pos.sin(), pos.cos()], dim=1)  # (side, 24): one position along an axis
    rows, cols = code[:, None, :].expand(side, side, -1), code[None, :, :].expand(side, side, -1)
    return torch.cat([rows, cols], dim=-1).reshape(side * side, dim)  # (A*A, 48), token t = row * A + col


class AddPositions(nn.Module):
    """On the first block: x + P enters the stream and the block, as ViT adds its position code to the tokens."""

    def __init__(self, block, tokens):
        super().__init__()
        self.block = block
        self.register_buffer("code", sincos_positions(math.isqrt(tokens)))  # a buffer, not a parameter

    def attend(self, x):
        out, am = self.block.attend(x + self.code)  # x (B, A*A, 48)
        return out + self.code, am  # the residual adds x: x + P + block(x + P)

    def forward(self, x):
        return self.attend(x)[0]


def apply(net, variant):
    """Wrap net's blocks over positions for variant: "prenorm", "positions" or "prenorm+positions"; returns net."""
    parts = variant.split("+")
    if not set(parts) <= {"prenorm", "positions"}:
        raise ValueError(f"unknown variant {variant!r}; choose from prenorm, positions, prenorm+positions")
    c = net.config
    if not c.token_blocks or not c.residual:
        raise ValueError("the variants wrap blocks over positions with a residual: token_blocks > 0, residual true")
    side = 32 // math.prod(c.strides)
    for i in range(c.token_blocks):
        block = PreNorm(net.blocks[i]) if "prenorm" in parts else net.blocks[i]
        net.blocks[i] = AddPositions(block, side * side) if "positions" in parts and i == 0 else block
    return net.to(next(net.parameters()).device)
