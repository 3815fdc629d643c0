"""Batch size that fits the GPU: caps by image size scaled to the card's memory, and OOM back-off."""

from __future__ import annotations

from dataclasses import dataclass

# Reference point, measured by the origin project on a 24 GB card (RTX 3090): its caps were lowered twice
# after out-of-memory failures and ended at batch 2 for 1024 px (hrnet_w44). Every other cap is derived
# from this one by pixel count and card memory, so there is no hand table to drift.
REFERENCE_MEMORY_GIB = 24.0
REFERENCE_IMAGE_SIZE = 1024
REFERENCE_BATCH = 2


def batch_cap(image_size: int, memory_gib: float) -> int:
    """Largest power-of-two batch expected to fit `image_size` training on a card with `memory_gib`."""
    budget = REFERENCE_BATCH * (memory_gib / REFERENCE_MEMORY_GIB) * (REFERENCE_IMAGE_SIZE / image_size) ** 2
    cap = 1
    while cap * 2 <= budget:
        cap *= 2
    return cap


@dataclass(frozen=True)
class BatchPlan:
    """How a requested batch is run: `used` images per step, `accumulate` steps per optimizer update."""

    requested: int
    used: int
    accumulate: int

    @property
    def effective(self) -> int:
        return self.used * self.accumulate


def plan_batch(requested: int, cap: int | None) -> BatchPlan:
    """Split `requested` into steps of at most `cap` images, keeping the effective batch where it divides."""
    if requested < 1:
        raise ValueError(f"batch_size must be >= 1, got {requested}")
    used = requested if cap is None else max(1, min(requested, cap))
    return BatchPlan(requested, used, max(1, -(-requested // used)))


def halve(plan: BatchPlan) -> BatchPlan | None:
    """The plan to retry with after an out-of-memory error, or None when already at batch 1."""
    if plan.used <= 1:
        return None
    used = plan.used // 2
    return BatchPlan(plan.requested, used, plan.accumulate * 2)


def cuda_memory_gib(device: int = 0) -> float | None:
    """Total memory of CUDA device `device` in GiB, or None when no CUDA device is visible."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30
