"""Decoder: DBNet FPN (top-down sum, per-scale smoothing, concat at stride 4), with DBNet++ adaptive scale fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ScaleFusion(nn.Module):
    """DBNet++ adaptive scale fusion: spatial-then-channel attention producing one weight map per scale."""

    def __init__(self, channels: int, num_scales: int) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.reduce = nn.Conv2d(channels * num_scales, channels, 3, padding=1, bias=False)
        self.spatial = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(1, 1, 1),
                                     nn.Sigmoid())
        self.scale_weights = nn.Sequential(nn.Conv2d(channels, num_scales, 1), nn.Sigmoid())

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        fused = self.reduce(torch.cat(scales, dim=1))
        attended = fused + self.spatial(fused.mean(dim=1, keepdim=True))
        weights = self.scale_weights(attended)
        return torch.cat([feat * weights[:, i : i + 1] for i, feat in enumerate(scales)], dim=1)


class FPNDecoder(nn.Module):
    """Fuses encoder features of strides (4, 8, 16, 32) into one stride-4 map of `out_channels`."""

    def __init__(self, in_channels: Sequence[int], inner_channels: int = 256, smooth_channels: int = 64,
                 adaptive_fusion: bool = True) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, inner_channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(inner_channels, smooth_channels, 3, padding=1, bias=False),
                          nn.BatchNorm2d(smooth_channels), nn.ReLU(inplace=True))
            for _ in in_channels
        )
        self.fusion = ScaleFusion(smooth_channels, len(in_channels)) if adaptive_fusion else None
        self.out_channels = smooth_channels * len(in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.laterals, features)]
        for i in range(len(laterals) - 1, 0, -1):
            finer = laterals[i - 1]
            laterals[i - 1] = finer + F.interpolate(laterals[i], size=finer.shape[-2:], mode="nearest")
        size = laterals[0].shape[-2:]
        scales = [F.interpolate(s(lat), size=size, mode="nearest") if i else s(lat)
                  for i, (s, lat) in enumerate(zip(self.smooth, laterals))]
        return self.fusion(scales) if self.fusion is not None else torch.cat(scales, dim=1)
