"""DBNet: encoder -> decoder -> head, assembled so channel counts flow from timm's `feature_info`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ocr.models.decoder import FPNDecoder
from ocr.models.encoder import TimmEncoder
from ocr.models.head import DBHead


class DBNet(nn.Module):
    """Text detector returning `prob_logits` (and `thresh`, `binary_logits` in training)."""

    def __init__(self, encoder: TimmEncoder, decoder: FPNDecoder, head: DBHead) -> None:
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head

    def forward(self, images: torch.Tensor, with_threshold: bool = False) -> dict[str, torch.Tensor]:
        return self.head(self.decoder(self.encoder(images)), with_threshold=with_threshold)


def build_dbnet(encoder: TimmEncoder, decoder: Callable[..., FPNDecoder], head: Callable[..., DBHead]) -> DBNet:
    """Wire partially-configured parts: the decoder gets the encoder's channels, the head the decoder's."""
    dec = decoder(in_channels=encoder.channels)
    return DBNet(encoder, dec, head(in_channels=dec.out_channels))
