"""The ULTIMUS network: C>C>C>U>U>U>U>FFC, a tiny per-sample self-attention net.

    image (B, 3, 32, 32) -> 3x3 convs 3->16->32->48 -> global average pool -> X (B, 48)
    -> 4 x UltimusBlock -> Linear(48, 10) -> logits (B, 10)

An UltimusBlock turns X into K, Q, V (B, 8) and builds, for each sample on its own,
the 8x8 attention matrix AM = softmax(Q^T K) (scaled by 1/sqrt(8)), then Z = AM V and
Out(Z) back to 48 features.

Design choices (all in ModelConfig), with their effect after 24 epochs (README.md, ablation):
- residual: X + block(X). The change that matters: uniform attention (small Q, K) makes
  every entry of Z the mean of V, one number per block, so without it the image is all
  but lost after two blocks. Reference 54.8% (3 seeds, 51-57) -> 68.6% with it.
- batch_norm: BN after each conv, +1 point on the reference; its 192 parameters keep the
  network at 26,074 (limit 26,100).
- strides (2, 2, 1) make A = 8 (same parameters, 8-15x fewer FLOPs than A = 32).
  downsample "maxpool" gets there with stride-1 convs, each followed by 2x2 max pooling,
  instead of strided convs: each feature sees 18x18 pixels instead of 15x15 and keeps
  the strongest response of each window. On best at batch 256: 71.8% strided -> 76.1%
  max pooling (3 seeds each), at twice the time per epoch (3.8 -> 7.7 s, 2-core CPU).
- scale "inside" (softmax(QK/sqrt 8), the usual form) beats "after" (the assignment's
  literal softmax(QK)/sqrt 8, which shrinks each block's output 2.8x) by ~1 point.
- relu after the convs is needed (without it the reference stays at 12%); block_relu
  (on the block outputs) moved results by under half a point in 12-epoch checks: off.
- attention "batch" reproduces a published bug (Q.T @ K over the batch): one 8x8
  matrix shared by all samples, so a prediction depends on the rest of the batch.
Nothing here is CIFAR-specific beyond the 3-channel 32x32 input and 10 classes.
"""
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelConfig:
    batch_norm: bool = True  # BatchNorm2d after each conv (adds 192 parameters)
    relu: bool = True  # ReLU after each conv (and its batch norm)
    block_relu: bool = False  # ReLU on each UltimusBlock's output, before the residual add
    residual: bool = True  # X = X + UltimusBlock(X) instead of X = UltimusBlock(X)
    strides: tuple = (2, 2, 1)  # downsampling after each conv; A = 32 / product. Changes no parameter
    downsample: str = "stride"  # "stride": strided convs; "maxpool": stride-1 convs, then max pooling
    scale: str = "inside"  # "inside": softmax(QK/sqrt8); "after": softmax(QK)/sqrt8
    attention: str = "sample"  # "sample": one 8x8 AM per sample; "batch": the Q.T@K bug
    image_size: int = 32  # input height and width

    def __post_init__(self):
        object.__setattr__(self, "strides", tuple(self.strides))
        if len(self.strides) != 3 or not all(isinstance(s, int) and s >= 1 for s in self.strides):
            raise ValueError(f"strides must be three positive integers, got {self.strides}")
        if self.image_size % math.prod(self.strides):
            raise ValueError(f"image_size {self.image_size} is not divisible by strides {self.strides}")
        if self.scale not in ("inside", "after"):
            raise ValueError(f"scale must be 'inside' or 'after', got {self.scale!r}")
        if self.downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be 'stride' or 'maxpool', got {self.downsample!r}")
        if self.attention not in ("sample", "batch"):
            raise ValueError(f"attention must be 'sample' or 'batch', got {self.attention!r}")

    @classmethod
    def from_dict(cls, d):
        """Build a config from a dict, rejecting unknown keys with the valid ones named."""
        valid = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; valid options: {valid}")
        return cls(**d)

    def to_dict(self):
        return {**asdict(self), "strides": list(self.strides)}


PRESETS = {
    # the course write-up's network: 25,882 parameters, no BN, no residual, A = 32
    "reference": ModelConfig(batch_norm=False, relu=True, residual=False, strides=(1, 1, 1), scale="after"),
    # the configuration that trains best (README.md, ablation table)
    "best": ModelConfig(downsample="maxpool"),
}


class UltimusBlock(nn.Module):
    """K, Q, V = FC(X); AM = softmax(Q^T K) per sample; Out(AM V)."""

    def __init__(self, dim=48, heads_dim=8, scale="inside", attention="sample", relu=False):
        super().__init__()
        self.k = nn.Linear(dim, heads_dim)
        self.q = nn.Linear(dim, heads_dim)
        self.v = nn.Linear(dim, heads_dim)
        self.out = nn.Linear(heads_dim, dim)
        self.scale, self.attention, self.relu = scale, attention, relu
        self.inv_sqrt_d = 1.0 / math.sqrt(heads_dim)

    def attend(self, x):
        """Return (Out(Z), AM) for x of shape (B, 48)."""
        k, q, v = self.k(x), self.q(x), self.v(x)  # (B, 8) each
        if self.attention == "sample":
            logits = q.unsqueeze(2) * k.unsqueeze(1)  # (B, 8, 8): q_i k_j, one matrix per sample
        else:
            logits = (q.t() @ k).expand(x.shape[0], -1, -1)  # (B, 8, 8): one matrix for the batch
        if self.scale == "inside":
            am = F.softmax(logits * self.inv_sqrt_d, dim=-1)  # (B, 8, 8), rows sum to 1
        else:
            am = F.softmax(logits, dim=-1) * self.inv_sqrt_d  # (B, 8, 8), rows sum to 1/sqrt(8)
        z = torch.einsum("bij,bj->bi", am, v)  # (B, 8)
        out = self.out(z)  # (B, 48)
        return (F.relu(out) if self.relu else out), am

    def forward(self, x):
        return self.attend(x)[0]


class Net(nn.Module):
    """C>C>C>GAP>U>U>U>U>FFC: CIFAR-10 images to 10 logits."""

    def __init__(self, config=ModelConfig()):
        super().__init__()
        self.config = c = config
        chans = (3, 16, 32, 48)
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], 3, stride=c.strides[i] if c.downsample == "stride" else 1, padding=1)
            for i in range(3)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(n) for n in chans[1:]) if c.batch_norm else None
        self.pools = nn.ModuleList(nn.MaxPool2d(s) for s in c.strides) if c.downsample == "maxpool" else None
        self.gap = nn.AvgPool2d(c.image_size // math.prod(c.strides))  # (B, 48, A, A) -> (B, 48, 1, 1)
        self.blocks = nn.ModuleList(UltimusBlock(48, 8, c.scale, c.attention, c.block_relu) for _ in range(4))
        self.fc = nn.Linear(48, 10)

    def features(self, x):
        """Images (B, 3, H, W) -> X (B, 48)."""
        s = self.config.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"Net expects images of shape (B, 3, {s}, {s}), got {tuple(x.shape)}")
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.bns is not None:
                x = self.bns[i](x)
            if self.pools is not None and self.config.strides[i] > 1:
                x = self.pools[i](x)  # (B, C, H/s, W/s); ReLU then max = max then ReLU, on 4x fewer values
            if self.config.relu:
                x = F.relu(x)  # functional: no extra rows in the model summary
        return self.gap(x).flatten(1)  # (B, 48)

    def forward(self, x):
        x = self.features(x)
        for block in self.blocks:
            x = x + block(x) if self.config.residual else block(x)
        return self.fc(x)  # (B, 10)

    @torch.no_grad()
    def attention_maps(self, x):
        """The four blocks' attention matrices for images x: a list of (B, 8, 8)."""
        x, maps = self.features(x), []
        for block in self.blocks:
            out, am = block.attend(x)
            x = x + out if self.config.residual else out
            maps.append(am.float())
        return maps


def count_parameters(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
