"""A small CNN image encoder that turns an image into a grid of region features.

    image (B, 3, S, S) in [0, 1]
      -> per-channel standardisation
      -> `num_blocks` x [conv3x3 stride 2 -> BatchNorm -> ReLU -> conv3x3 -> BatchNorm -> ReLU]
         (each block halves the side: 64 -> 32 -> 16 -> 8 with 3 blocks)
      -> conv1x1 to `feat_dim`, + a learned embedding of each region's (row, column) position
      -> regions (B, G*G, D), row-major (region r*G + c is row r, column c)

This is the "memory" of Show, Attend and Tell: the decoder attends over the G x G regions, so
each generated word can look at a different part of the image. The position embedding lets
the decoder tell regions with similar content apart (a conv feature alone does not know where
it is), which the attention needs to point at, e.g., the hand rather than the face.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class EncoderConfig:
    image_size: int = 64           # S: input side (images are resized to S x S)
    channels: tuple[int, ...] = (16, 32, 64)    # one stride-2 block per entry
    feat_dim: int = 256            # D: region feature size (the decoder's memory_dim)
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @property
    def grid(self) -> int:
        """G: regions per side."""
        return self.image_size // 2 ** len(self.channels)


class ConvEncoder(nn.Module):
    mean: Tensor                     # (1, 3, 1, 1) buffers
    std: Tensor

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.image_size % 2 ** len(cfg.channels):
            raise ValueError(f"image_size {cfg.image_size} must be divisible by "
                             f"2**{len(cfg.channels)} (one halving per block)")
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = 3
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.project = nn.Conv2d(c_in, cfg.feat_dim, 1)
        G = cfg.grid
        self.pos = nn.Parameter(torch.zeros(G * G, cfg.feat_dim))     # (G*G, D)
        nn.init.normal_(self.pos, std=0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        # ImageNet-like statistics; the BatchNorm layers adapt anyway, this just centres input
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, 3, S, S) float in [0, 1]. Returns regions (B, G*G, D)."""
        S = self.cfg.image_size
        if images.dim() != 4 or images.shape[1:] != (3, S, S):
            raise ValueError(f"images must be (B, 3, {S}, {S}), got {tuple(images.shape)}")
        # channels-last lets oneDNN run its NHWC convolutions: ~1.3x faster here (2 CPU cores)
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        x = self.project(self.features(x))                    # (B, D, G, G)
        x = x.flatten(2).transpose(1, 2)                      # (B, G*G, D), row-major regions
        return self.dropout(x + self.pos)


def images_to_tensor(pixels: Any) -> Tensor:
    """(N, S, S, 3) uint8 (numpy or tensor) -> (N, 3, S, S) float32 in [0, 1]."""
    t = torch.as_tensor(pixels)
    if t.dim() != 4 or t.size(-1) != 3:
        raise ValueError(f"pixels must be (N, S, S, 3), got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
