"""Names of the scalars a training run logs: what a sweep's `metric.name` may refer to."""

from __future__ import annotations

from ocr.models.loss import LOSS_KEYS  # logged per stage: train/<key>_epoch, val/<key>
CLEVAL_KEYS = ("recall", "precision", "hmean")  # CLEval scores, logged after each validation
TUNED_SUFFIX = "_tuned"  # the same scores after a post-processing search (`tuning.count`)


def cleval_name(score: str, tuned: bool = False) -> str:
    """`val/cleval_<score>`, or its tuned counterpart."""
    return f"val/cleval_{score}{TUNED_SUFFIX if tuned else ''}"


def sweep_metrics() -> tuple[str, ...]:
    """Every scalar a run logs that a sweep can optimise (epoch-level values, not per-step ones)."""
    cleval = [cleval_name(k, tuned) for tuned in (False, True) for k in CLEVAL_KEYS]
    losses = [f"val/{k}" for k in LOSS_KEYS] + [f"train/{k}_epoch" for k in LOSS_KEYS]
    return (*cleval, *losses)
