"""DB head: probability logits (always) and threshold map (training only), upsampled x4 to input resolution."""

from __future__ import annotations

import math

import torch
from torch import nn

from ocr.postprocess.db_postprocess import DBPostProcessor


def upsampling_branch(in_channels: int) -> nn.Sequential:
    """conv3x3 -> BN -> ReLU -> 2x deconv -> BN -> ReLU -> 2x deconv to one channel."""
    mid = in_channels // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, mid, 2, stride=2), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, 1, 2, stride=2),
    )


class DBHead(nn.Module):
    """Differentiable binarization: binary = sigmoid(k * (P - T)); `postprocess` turns P into polygons."""

    def __init__(
        self, in_channels: int, k: float = 50.0, prior_prob: float = 0.05, postprocess: DBPostProcessor | None = None
    ) -> None:
        super().__init__()
        self.k = k
        self.prob_branch = upsampling_branch(in_channels)
        self.thresh_branch = upsampling_branch(in_channels)
        # Start P near `prior_prob` (text is rare), so an untrained map is background, not one blob above thresh.
        nn.init.constant_(self.prob_branch[-1].bias, math.log(prior_prob / (1 - prior_prob)))
        self.postprocess = postprocess or DBPostProcessor()

    def forward(self, features: torch.Tensor, with_threshold: bool = False) -> dict[str, torch.Tensor]:
        """Logits of P always; T and binary logits when training or `with_threshold`."""
        prob_logits = self.prob_branch(features)
        out = {"prob_logits": prob_logits}
        if self.training or with_threshold:
            out["thresh"] = thresh = torch.sigmoid(self.thresh_branch(features))
            out["binary_logits"] = self.k * (torch.sigmoid(prob_logits) - thresh)
        return out
