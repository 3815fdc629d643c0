"""Encoder: any timm model with `features_only`, channels taken from timm's `feature_info`."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from ocr.models.names import check_model_name
from ocr.utils.errors import UserError


class TimmEncoder(nn.Module):
    """Multi-scale features (strides 4, 8, 16, 32 by default) from a timm backbone."""

    def __init__(self, model_name: str = "hrnet_w18", pretrained: bool = True, weights_file: str | None = None,
                 out_indices: tuple[int, ...] = (1, 2, 3, 4)) -> None:
        super().__init__()
        check_model_name(model_name)
        overlay = {"file": str(Path(weights_file).expanduser())} if weights_file else None
        if overlay and not Path(overlay["file"]).is_file():
            raise UserError(
                f"models.encoder.weights_file={weights_file!r} does not exist; give the path of a timm weights file")
        try:
            self.body = timm.create_model(model_name, pretrained=pretrained or bool(weights_file), features_only=True,
                                          out_indices=tuple(out_indices), pretrained_cfg_overlay=overlay)
        except (OSError, RuntimeError, ValueError) as err:
            if not (pretrained or weights_file):
                raise
            raise UserError(
                f"could not load pretrained weights for {model_name} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]}); fix: connect to the Hugging Face hub (or set HF_ENDPOINT to a "
                "mirror), or download the weights and set models.encoder.weights_file=PATH, or train from random init "
                "with models.encoder.pretrained=false"
            ) from None
        self.channels: list[int] = list(self.body.feature_info.channels())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body(images)
