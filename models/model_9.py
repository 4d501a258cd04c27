"""The ULTIMUS network, C>C>C>U>U>U>U>FFC: 3x3 convs 3->16->32->48, global average pool to X (48), four
UltimusBlocks, FC 48->10. A block makes K, Q, V (8 numbers each) from X and attends between those 8 numbers:
AM = softmax(Q^T K / sqrt 8) is 8x8 per image. With token_blocks = n the first n blocks attend over the A*A
positions of conv3's map before the pool, as ViT does. What each switch does to accuracy: docs/results.md."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_types

CHOICES = {"downsample": ("maxpool", "stride"), "scale": ("inside", "after"), "attention": ("sample", "batch")}


@dataclass(frozen=True)
class ModelConfig:
    batch_norm: bool = True  # BatchNorm2d after each conv (192 parameters)
    residual: bool = True  # X = X + UltimusBlock(X) instead of X = UltimusBlock(X)
    strides: tuple = (2, 2, 1)  # downsampling after each conv: A = 32 / product; changes no parameter
    downsample: str = "maxpool"  # "maxpool": stride-1 convs, pooled before BN and ReLU; "stride": strided convs
    scale: str = "inside"  # "inside": softmax(QK / sqrt 8); "after": softmax(QK) / sqrt 8, as the write-up has it
    attention: str = "sample"  # "sample": one AM per image; "batch": the published Q.T @ K bug, one AM per batch
    token_blocks: int = 0  # how many of the 4 blocks attend over the A*A positions, before the pool
    positions: bool = False  # add ViT's fixed 2-D sine-cosine position code to the tokens (no parameter)

    def __post_init__(self):
        check_types(self, "model option", CHOICES)
        object.__setattr__(self, "strides", tuple(self.strides))
        if len(self.strides) != 3 or not all(type(s) is int and s >= 1 for s in self.strides) or 32 % math.prod(self.strides):
            raise ValueError(f"model option 'strides' takes three positive integers that divide 32, got {self.strides}")
        if not 0 <= self.token_blocks <= 4 or (self.token_blocks and self.attention == "batch"):
            raise ValueError(f"token_blocks must be 0-4 (and 0 with attention 'batch'), got {self.token_blocks}")
        if self.positions and not self.token_blocks:
            raise ValueError("positions adds a code to each token: it needs token_blocks > 0")


def sincos_positions(side, dim=48):
    """ViT's fixed 2-D sine-cosine code: (side*side, dim), half the features for the row, half for the column."""
    quarter = dim // 4
    freqs = 1 / 10000 ** (torch.arange(quarter) / quarter)  # (12,)
    pos = torch.arange(side).float()[:, None] * freqs  # (side, 12)
    code = torch.cat([pos.sin(), pos.cos()], dim=1)  # (side, 24): one position along an axis
    rows, cols = code[:, None, :].expand(side, side, -1), code[None, :, :].expand(side, side, -1)
    return torch.cat([rows, cols], dim=-1).reshape(side * side, dim)  # (A*A, 48), token t = row * A + col


class UltimusBlock(nn.Module):
    """K, Q, V = FC(X); AM = softmax(Q K^T) over tokens; Out(AM V)."""

    def __init__(self, dim=48, kqv_dim=8, scale="inside", attention="sample"):
        super().__init__()
        self.k, self.q, self.v = (nn.Linear(dim, kqv_dim) for _ in range(3))  # 48 -> 8 each, made in this order
        self.out = nn.Linear(kqv_dim, dim)  # 8 -> 48
        self.scale, self.attention, self.inv_sqrt_d = scale, attention, 1 / math.sqrt(kqv_dim)

    def qkv(self, x):
        """x (B, 48): the 8 numbers become 8 tokens of width 1, (B, 8, 1) each; x (B, T, 48): (B, T, 8) each."""
        k, q, v = self.k(x), self.q(x), self.v(x)  # in this order: autograd sums x's gradient in the same order
        return (q.unsqueeze(-1), k.unsqueeze(-1), v.unsqueeze(-1)) if x.dim() == 2 else (q, k, v)

    def weights(self, q, k):
        """AM from q and k, written out: (B, 8, 8) over the vector's numbers, (B, T, T) over positions."""
        if self.attention == "batch":  # the bug: Q.T @ K sums over the batch, one matrix for all samples
            logits = (q.squeeze(-1).t() @ k.squeeze(-1)).expand(q.shape[0], -1, -1)  # (B, 8, 8)
        else:
            logits = q @ k.transpose(-1, -2)  # (B, 8, 8): q_i k_j, or (B, T, T): q_s . k_t
        if self.scale == "inside":
            return F.softmax(logits * self.inv_sqrt_d, dim=-1)  # rows sum to 1
        return F.softmax(logits, dim=-1) * self.inv_sqrt_d  # rows sum to 1/sqrt(8)

    def attention_matrix(self, x):
        """AM for x: (B, 8, 8) or (B, T, T)."""
        return self.weights(*self.qkv(x)[:2])

    def forward(self, x):
        """x (B, 48) -> (B, 48), or x (B, T, 48) -> (B, T, 48): Out(AM V), with torch's fused attention."""
        q, k, v = self.qkv(x)
        if self.attention == "batch":
            z = self.weights(q, k) @ v
        elif self.scale == "inside":  # softmax(QK^T / sqrt 8) V
            z = F.scaled_dot_product_attention(q, k, v, scale=self.inv_sqrt_d)
        else:  # softmax(QK^T) / sqrt 8, then V: the division moves past the (linear) product
            z = F.scaled_dot_product_attention(q, k, v, scale=1.0) * self.inv_sqrt_d
        return self.out(z.squeeze(-1) if x.dim() == 2 else z)  # (B, 48) or (B, T, 48)


class Net(nn.Module):
    """C>C>C>GAP>U>U>U>U>FFC (or C>C>C>U..U>GAP>U..U>FFC with token_blocks): images to 10 logits."""

    def __init__(self, config=ModelConfig()):
        super().__init__()
        self.config = c = config
        chans, side = (3, 16, 32, 48), 32 // math.prod(c.strides)
        conv_strides = c.strides if c.downsample == "stride" else (1, 1, 1)
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, conv_strides[i], padding=1) for i in range(3))
        self.bns = nn.ModuleList(nn.BatchNorm2d(n) for n in chans[1:]) if c.batch_norm else None
        self.pools = nn.ModuleList(nn.MaxPool2d(s) for s in c.strides) if c.downsample == "maxpool" else None
        self.gap = nn.AvgPool2d(side)  # (B, 48, A, A) -> (B, 48, 1, 1)
        self.blocks = nn.ModuleList(UltimusBlock(48, 8, c.scale, c.attention) for _ in range(4))
        self.fc = nn.Linear(48, 10)
        if c.positions:  # a fixed code, not a parameter, and not saved with the weights
            self.register_buffer("position_code", sincos_positions(side), persistent=False)

    def feature_map(self, x):
        """Images (B, 3, 32, 32) -> conv3's map (B, 48, A, A)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"Net expects images of shape (B, 3, 32, 32), got {tuple(x.shape)}")
        for i, conv in enumerate(self.convs):
            x = conv(x)
            x = self.pools[i](x) if self.pools and self.config.strides[i] > 1 else x  # BN, ReLU then see 4x fewer values
            x = self.bns[i](x) if self.bns else x
            x = F.relu(x)
        return x

    def pool(self, tokens):
        """tokens (B, A*A, 48) -> X (B, 48): their average."""
        side = math.isqrt(tokens.shape[1])
        return self.gap(tokens.transpose(1, 2).unflatten(2, (side, side))).flatten(1)

    def head(self, m, maps=None):
        """conv3's map (B, 48, A, A) -> logits (B, 10), in float32 under autocast too; maps, a list, gets each AM."""
        with torch.autocast(m.device.type, enabled=False):  # tiny matmuls: casts would cost more than they save
            x = m.float().flatten(2).transpose(1, 2)  # (B, A*A, 48): one token per position
            if self.config.positions:
                x = x + self.position_code  # every token learns where it is
            for i, block in enumerate(self.blocks):
                x = self.pool(x) if i == self.config.token_blocks else x  # X (B, 48)
                if maps is not None:
                    maps.append(block.attention_matrix(x))  # written out only where it is drawn
                out = block(x)
                x = x + out if self.config.residual else out
            return self.fc(self.pool(x) if x.dim() == 3 else x)  # (B, 10)

    def forward(self, x):
        return self.head(self.feature_map(x))

    @torch.no_grad()
    def attention_maps(self, x):
        """The four blocks' AM for images x, (B, 8, 8) or (B, A*A, A*A) each, in eval mode (batch norm unchanged)."""
        was_training, maps = self.training, []
        self.eval()
        try:
            self.head(self.feature_map(x), maps)
        finally:
            self.train(was_training)
        return maps
