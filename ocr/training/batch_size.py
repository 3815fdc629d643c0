"""Batch size that fits the GPU: caps by image size scaled to the card's memory, and OOM back-off."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ocr.config.checks import BATCH_SIZE_KEY, IMAGE_SIZE_KEY, discrete_values

# Reference point: batch 2 fits 1024 px (hrnet_w44) on a 24 GB card (RTX 3090, the origin project's measurement);
# every other cap is derived from it by pixel count and card memory.
REFERENCE_MEMORY_GIB = 24.0
REFERENCE_IMAGE_SIZE = 1024
REFERENCE_BATCH = 2
log = logging.getLogger(__name__)


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


def initial_plan(batch_size: int, image_size: int, accelerator: str) -> BatchPlan:
    """The requested batch capped to what the visible GPU holds (no cap on the CPU)."""
    memory = visible_gpu()[0] if accelerator in ("auto", "gpu", "cuda") else None
    plan = plan_batch(batch_size, batch_cap(image_size, memory) if memory else None)
    if plan.used < plan.requested:
        log.info("batch_size=%d capped to %d x %d accumulation steps for %.0f GiB of GPU memory",
                 plan.requested, plan.used, plan.accumulate, memory)
    return plan


def cap_table(params: dict[str, Any], memory_gib: float | None, device: str | None) -> str:
    """Batch-size caps for a sweep's image sizes (`params`: sweep parameters) on the visible GPU, and how each
    swept batch is run."""
    sizes = [int(v) for v in discrete_values(params.get(IMAGE_SIZE_KEY, {}))]
    batches = [int(v) for v in discrete_values(params.get(BATCH_SIZE_KEY, {}))]
    memory = REFERENCE_MEMORY_GIB if memory_gib is None else memory_gib
    head = (f"batch-size caps for {device} ({memory_gib:.1f} GiB); a larger batch runs as cap x accumulation:"
            if memory_gib is not None else "no CUDA GPU visible: trials on the CPU use the requested batch size; "
            f"caps a GPU like the origin's ({REFERENCE_MEMORY_GIB:g} GiB) would impose:")
    if not sizes:
        return head + "\n  (the sweep does not set image_size)"
    lines = [head, f"  {'image_size':>10} {'cap':>4}  " + "  ".join(f"bs {b:>2} ->" for b in batches)]
    for size in sizes:
        cap = batch_cap(size, memory)
        cells = "  ".join(f"{p.used:>2}x{p.accumulate:<4}" for p in (plan_batch(b, cap) for b in batches))
        lines.append(f"  {size:>10} {cap:>4}  {cells}")
    return "\n".join(lines)


def visible_gpu() -> tuple[float | None, str | None]:
    """Memory (GiB) and name of CUDA device 0, or (None, None) when none is visible."""
    import torch  # deferred: the sweep preview imports this module and starts without torch

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.get_device_properties(0).total_memory / 2**30, torch.cuda.get_device_name(0)
