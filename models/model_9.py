"""The ULTIMUS network: C>C>C>U>U>U>U>FFC, a tiny per-sample self-attention net.

    image (B, 3, 32, 32) -> 3x3 convs 3->16->32->48 -> global average pool -> X (B, 48)
    -> 4 x UltimusBlock -> Linear(48, 10) -> logits (B, 10)

An UltimusBlock turns X into K, Q, V (B, 8) and builds, for each sample on its own,
the 8x8 attention matrix AM = softmax(Q^T K) (scaled by 1/sqrt(8)), then Z = AM V and
Out(Z) back to 48 features. ModelConfig() is the configuration that trains best;
PRESETS["reference"] is the course write-up's network.

Design choices (all in ModelConfig). Effects are 24-epoch test accuracies from
benchmarks/results/accuracy.json (README.md, ablation; mean of 3 seeds unless marked):
- residual: X + block(X). The change that matters: uniform attention (small Q, K) makes
  every entry of Z the mean of V, one number per block, so without it the image is all
  but lost after two blocks (benchmarks/results/signal_flow.json). Reference 54.82% ->
  68.56% with it (1 seed).
- batch_norm: BN after each conv; reference 54.82% -> 55.82% (1 seed). Its 192
  parameters keep the network at 26,074 (limit 26,100).
- strides (2, 2, 1) make A = 8 (same parameters; 2.5 M instead of 19 M multiply-adds per
  image for the reference's A = 32, counted by benchmarks/speed.py's model_flops).
  downsample "maxpool" gets there with stride-1 convs, each followed by 2x2 max pooling,
  instead of strided convs: best at batch 256, 71.78% strided -> 76.10% max pooling.
- pool_first: the max pooling right after the conv, before batch norm and ReLU, so both
  run on 4x fewer values: 76.96% -> 76.73% (within noise) and a faster step (README.md, speed).
- pool_overlap: 3x3 max pooling windows at stride 2 instead of 2x2: 76.47% (1 seed), no gain.
- scale "inside" (softmax(QK/sqrt 8), the usual form) or "after" (the write-up's literal
  softmax(QK)/sqrt 8, which shrinks each block's output 2.8x).
- relu after the convs is needed: without it the reference stays at 11.74% (1 seed).
- learn_temperature: a learned factor on each block's attention logits (4 parameters).
- activation "gelu" 76.64%, "celu" 75.04%; dirac_init 76.08% (at LR rule min/3: it blows up
  at min/2). One seed each against 76.76% for the default's seed 0: none helps.
- attention "batch" reproduces a published bug (Q.T @ K over the batch): one 8x8
  matrix shared by all samples, so a prediction depends on the rest of the batch.
The blocks and the final FC always run in float32: they are tiny, and under autocast
their casts would cost more time than low precision saves.
Nothing here is CIFAR-specific beyond the 3-channel 32x32 input and 10 classes.
"""
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a word", tuple: "a list", dict: "a dict"}
_ACCEPTS = {bool: bool, int: int, float: (int, float), str: str, tuple: (tuple, list), dict: dict}


def check_types(config, what="option"):
    """Refuse a field whose value has the wrong type, naming the key and the type it takes."""
    for f in fields(config):
        v, t = getattr(config, f.name), f.type
        if not isinstance(v, _ACCEPTS[t]) or (t is not bool and isinstance(v, bool)):  # True is an int in Python
            raise ValueError(f"{what} {f.name!r} takes {_TYPES[t]}, got {v!r}")


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "celu": F.celu}


@dataclass(frozen=True)
class ModelConfig:
    batch_norm: bool = True  # BatchNorm2d after each conv (adds 192 parameters)
    relu: bool = True  # an activation after each conv (and its batch norm)
    activation: str = "relu"  # which one: "relu", or the smooth "gelu" or "celu"
    block_relu: bool = False  # ReLU on each UltimusBlock's output, before the residual add
    residual: bool = True  # X = X + UltimusBlock(X) instead of X = UltimusBlock(X)
    strides: tuple = (2, 2, 1)  # downsampling after each conv; A = 32 / product. Changes no parameter
    downsample: str = "maxpool"  # "maxpool": stride-1 convs, then 2x2 max pooling; "stride": strided convs
    pool_first: bool = True  # max pooling before batch norm and ReLU (they then see 4x fewer values)
    pool_overlap: bool = False  # max pooling windows of stride + 1 (3x3 at stride 2, padding 1): neighbours overlap
    scale: str = "inside"  # "inside": softmax(QK/sqrt8); "after": softmax(QK)/sqrt8
    attention: str = "sample"  # "sample": one 8x8 AM per sample; "batch": the Q.T@K bug
    learn_temperature: bool = False  # a learned factor on each block's attention logits (4 parameters)
    dirac_init: bool = False  # conv2 and conv3 start as the identity on their first input-many channels
    kqv_dim: int = 8  # the width of K, Q and V (one attention head): AM is kqv_dim x kqv_dim
    image_size: int = 32  # input height and width

    def __post_init__(self):
        check_types(self, "model option")
        object.__setattr__(self, "strides", tuple(self.strides))
        if len(self.strides) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.strides):
            raise ValueError(f"model option 'strides' takes three positive integers, got {self.strides}")
        if self.image_size % math.prod(self.strides):
            raise ValueError(f"image_size {self.image_size} is not divisible by strides {self.strides}")
        if self.scale not in ("inside", "after"):
            raise ValueError(f"scale must be 'inside' or 'after', got {self.scale!r}")
        if self.downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be 'stride' or 'maxpool', got {self.downsample!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}")
        if self.attention not in ("sample", "batch"):
            raise ValueError(f"attention must be 'sample' or 'batch', got {self.attention!r}")
        if self.kqv_dim < 1:
            raise ValueError(f"kqv_dim must be a positive integer, got {self.kqv_dim}")

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
    "reference": ModelConfig(batch_norm=False, residual=False, strides=(1, 1, 1), downsample="stride",
                             pool_first=False, scale="after"),
    # the configuration that trains best (README.md, ablation table): the defaults
    "best": ModelConfig(),
}


class UltimusBlock(nn.Module):
    """K, Q, V = FC(X); AM = softmax(Q^T K) per sample; Out(AM V)."""

    def __init__(self, dim=48, kqv_dim=8, scale="inside", attention="sample", relu=False, learn_temperature=False):
        super().__init__()
        self.k = nn.Linear(dim, kqv_dim)
        self.q = nn.Linear(dim, kqv_dim)
        self.v = nn.Linear(dim, kqv_dim)
        self.out = nn.Linear(kqv_dim, dim)
        self.scale, self.attention, self.relu = scale, attention, relu
        self.inv_sqrt_d = 1.0 / math.sqrt(kqv_dim)
        self.log_temperature = nn.Parameter(torch.zeros(())) if learn_temperature else None

    def attend(self, x):
        """Return (Out(Z), AM) for x of shape (B, 48)."""
        k, q, v = self.k(x), self.q(x), self.v(x)  # (B, 8) each
        if self.attention == "sample":
            logits = q.unsqueeze(2) * k.unsqueeze(1)  # (B, 8, 8): q_i k_j, one matrix per sample
        else:
            logits = (q.t() @ k).expand(x.shape[0], -1, -1)  # (B, 8, 8): one matrix for the batch
        if self.log_temperature is not None:
            logits = logits * self.log_temperature.exp()  # starts at 1: the plain block
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
        self.pools = nn.ModuleList(nn.MaxPool2d(s + 1, s, s // 2) if c.pool_overlap else nn.MaxPool2d(s)
                                   for s in c.strides) if c.downsample == "maxpool" else None
        self.gap = nn.AvgPool2d(c.image_size // math.prod(c.strides))  # (B, 48, A, A) -> (B, 48, 1, 1)
        self.blocks = nn.ModuleList(UltimusBlock(48, c.kqv_dim, c.scale, c.attention, c.block_relu, c.learn_temperature)
                                    for _ in range(4))
        self.fc = nn.Linear(48, 10)
        if c.dirac_init:  # as airbench does: the first in_channels outputs copy their input, the rest stay random
            for conv in self.convs[1:]:
                nn.init.dirac_(conv.weight.data[:conv.in_channels])
                nn.init.zeros_(conv.bias.data[:conv.in_channels])

    def features(self, x):
        """Images (B, 3, H, W) -> X (B, 48)."""
        c, s = self.config, self.config.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"Net expects images of shape (B, 3, {s}, {s}), got {tuple(x.shape)}")
        for i, conv in enumerate(self.convs):
            x = conv(x)
            pool = self.pools is not None and c.strides[i] > 1
            if pool and c.pool_first:
                x = self.pools[i](x)  # (B, C, H/s, W/s): batch norm and ReLU then see s*s times fewer values
            if self.bns is not None:
                x = self.bns[i](x)
            if pool and not c.pool_first:
                x = self.pools[i](x)  # ReLU then max = max then ReLU, on 4x fewer values
            if c.relu:
                x = ACTIVATIONS[c.activation](x)  # functional: no extra rows in the model summary
        return self.gap(x).flatten(1)  # (B, 48)

    def head(self, x):
        """X (B, 48) -> the four blocks -> logits (B, 10), in float32 even under autocast."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            for block in self.blocks:
                x = x + block(x) if self.config.residual else block(x)
            return self.fc(x)  # (B, 10)

    def forward(self, x):
        return self.head(self.features(x))

    @torch.no_grad()
    def attention_maps(self, x):
        """The four blocks' attention matrices for images x: a list of (B, 8, 8)."""
        x, maps = self.features(x).float(), []
        for block in self.blocks:
            out, am = block.attend(x)
            x = x + out if self.config.residual else out
            maps.append(am.float())
        return maps


def count_parameters(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
