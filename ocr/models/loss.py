"""DB loss: balanced BCE with hard-negative mining (P), masked L1 (T), dice (binary), computed in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSS_KEYS = ("loss", "loss_prob", "loss_thresh", "loss_binary")  # the keys of DBLoss's output, in order


def balanced_bce(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, negative_ratio: float, eps: float,
                 fallback_negatives: int) -> torch.Tensor:
    """BCE over all positives and the hardest `negative_ratio`x as many negatives (`fallback_negatives` if no text)."""
    positive = gt * mask
    negative = (1 - gt) * mask
    pos_count = int(positive.sum().item())
    neg_count = min(int(negative.sum().item()), int(pos_count * negative_ratio) if pos_count else fallback_negatives)
    loss = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    pos_loss = (loss * positive).sum()
    neg_loss = torch.topk((loss * negative).flatten(), neg_count).values.sum() if neg_count else loss.new_zeros(())
    return (pos_loss + neg_loss) / (pos_count + neg_count + eps)


class DBLoss(nn.Module):
    """prob_w * BCE-OHEM(P) + thresh_w * L1(T) + binary_w * Dice(B); safe under bf16/fp16 autocast."""

    def __init__(self, negative_ratio: float = 3.0, prob_map_loss_weight: float = 5.0,
                 thresh_map_loss_weight: float = 10.0, binary_map_loss_weight: float = 1.0, eps: float = 1e-6,
                 fallback_negatives: int = 1000) -> None:
        super().__init__()
        self.weights = (prob_map_loss_weight, thresh_map_loss_weight, binary_map_loss_weight)
        self.negative_ratio, self.eps, self.fallback_negatives = negative_ratio, eps, fallback_negatives

    def forward(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=pred["prob_logits"].device.type, enabled=False):
            p = {k: v.float() for k, v in pred.items()}
            gt, mask = batch["prob_map"].float(), batch["prob_mask"].float()
            loss_prob = balanced_bce(p["prob_logits"], gt, mask, self.negative_ratio, self.eps, self.fallback_negatives)
            thresh_gt, thresh_mask = batch["thresh_map"].float(), batch["thresh_mask"].float()
            # mean absolute error inside the threshold mask (0 when it is empty); 1 - Dice coefficient inside the mask
            loss_thresh = ((p["thresh"] - thresh_gt).abs() * thresh_mask).sum() / (thresh_mask.sum() + self.eps)
            binary = torch.sigmoid(p["binary_logits"])
            union = (binary * mask).sum() + (gt * mask).sum() + self.eps
            loss_binary = 1 - 2 * (binary * gt * mask).sum() / union
            w_prob, w_thresh, w_binary = self.weights
            total = w_prob * loss_prob + w_thresh * loss_thresh + w_binary * loss_binary
        return dict(zip(LOSS_KEYS, (total, loss_prob, loss_thresh, loss_binary)))
