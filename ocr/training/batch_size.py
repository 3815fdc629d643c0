"""Batch size that fits the GPU: caps from the memory model (per model, image size, precision), and OOM back-off."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ocr.config.checks import (BATCH_SIZE_KEY, CROP_KEY, DEFAULT_CONFIGS_DIR, IMAGE_SIZE_KEY, MODEL_KEY,
                               discrete_values, sweep_base_config, train_size)
from ocr.training.memory import Footprint, footprint

# Share of free GPU memory left out of the plan: allocator fragmentation, cuDNN workspaces, the gradients of
# activations alive during backward. To be calibrated with bench/gpu_check.py on a real card.
MARGIN = 0.15
REFERENCE_CARDS_GIB = (24, 80)  # the caps the preview shows when no GPU is visible
PRECISION_KEY = "trainer.precision"
PLAN_ENV = "OCR_BATCH_PLAN"  # rank zero's plan, for the ranks it starts (its children): every rank steps alike
log = logging.getLogger(__name__)


def batch_cap(model: Footprint, image_size: int, free_bytes: float, margin: float = MARGIN) -> int:
    """Largest power-of-two batch whose predicted training memory fits `free_bytes` less `margin` (at least 1)."""
    cap = 1
    while cap < 2**14 and model.training(image_size, cap * 2) <= free_bytes * (1 - margin):
        cap *= 2
    return cap


@dataclass(frozen=True)
class BatchPlan:
    """How a requested batch is run: `used` images per step, `accumulate` steps per optimizer update; validation
    batches hold at most `val_cap` images (None: `used`)."""

    requested: int
    used: int
    accumulate: int
    val_cap: int | None = None


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
    return replace(plan, used=plan.used // 2, accumulate=plan.accumulate * 2)


def initial_plan(cfg: DictConfig) -> BatchPlan:
    """The requested batch capped to what the free memory of the run's GPUs holds (the least free of them; no cap on
    the CPU); with training crops, validation batches are capped for the whole image as well. The ranks Lightning
    starts take rank zero's plan."""
    inherited = json.loads(os.environ.get(PLAN_ENV) or "{}")
    if inherited.pop("parent", None) == os.getppid():  # a rank Lightning started from rank zero
        return BatchPlan(**inherited)
    free = visible_gpu(cfg.trainer.devices)[0] if cfg.trainer.accelerator in ("auto", "gpu", "cuda") else None
    if free is None:
        return plan_batch(cfg.batch_size, None)
    model = footprint(OmegaConf.to_container(cfg.models, resolve=True), cfg.trainer.precision, log.info)
    side = train_size(cfg)
    plan = plan_batch(cfg.batch_size, batch_cap(model, side, free * 2**30))
    if side != cfg.image_size:  # validation reads whole images, larger than the crops
        plan = replace(plan, val_cap=batch_cap(model, cfg.image_size, free * 2**30))
    if plan.used < plan.requested:
        log.info("batch_size=%d capped to %d x %d accumulation steps for %.1f GiB of free GPU memory",
                 plan.requested, plan.used, plan.accumulate, free)
    if plan.val_cap is not None and plan.val_cap < plan.used:
        log.info("validation batch capped to %d for whole images of image_size=%d", plan.val_cap, cfg.image_size)
    return plan


@contextmanager
def shared_with_ranks(plan: BatchPlan) -> Iterator[None]:
    """`plan` in the environment of the ranks Lightning starts within the block: they run it instead of their own."""
    os.environ[PLAN_ENV] = json.dumps({"parent": os.getpid(), **asdict(plan)})
    try:
        yield
    finally:
        os.environ.pop(PLAN_ENV, None)


def cap_table(params: dict[str, Any], free_gib: float | None, device: str | None,
              configs_dir: Path = DEFAULT_CONFIGS_DIR) -> str:
    """Batch caps for every model x training input size (the crop size when crops are on, else the image size) (x
    precision, when swept) of a sweep (`params`: its parameters and fixed overrides) on the visible GPU, or on
    reference cards when none is visible."""
    cfg = sweep_base_config(params, configs_dir)
    values = lambda key, default: discrete_values(params.get(key, {})) or [default]  # noqa: E731
    precisions = values(PRECISION_KEY, cfg.trainer.precision)
    crops = [c for c in values(CROP_KEY, cfg.data.augment.get("crop_size")) if c is not None]
    sizes, size_name = (crops, "crop_size") if crops else (values(IMAGE_SIZE_KEY, cfg.image_size), "image_size")
    swept = ["precision"] if len(precisions) > 1 else []
    batches = [int(b) for b in values(BATCH_SIZE_KEY, cfg.batch_size)]
    cards = [free_gib] if free_gib is not None else list(REFERENCE_CARDS_GIB)
    if free_gib is not None:
        head = (f"batch caps for {device} ({free_gib:.1f} GiB free) from the memory model, margin {MARGIN:.0%}; "
                "a larger batch runs as cap x accumulation:")
        rows = [["model", size_name, *swept, "fixed GiB", "GiB/image", "cap", *(f"bs {b} ->" for b in batches)]]
    else:
        head = ("no CUDA GPU visible: trials on the CPU use the requested batch size; the caps the memory model "
                f"gives on cards of {' and '.join(f'{c:g}' for c in cards)} GiB (margin {MARGIN:.0%}):")
        rows = [["model", size_name, *swept, "fixed GiB", "GiB/image", *(f"{c:g} GiB" for c in cards)]]
    base = OmegaConf.to_container(cfg.models, resolve=True)
    for name in values(MODEL_KEY, cfg.models.encoder.model_name):
        for precision in precisions:
            model = footprint({**base, "encoder": {**base["encoder"], "model_name": name}}, precision, say_stderr)
            for size in map(int, sizes):
                caps = [batch_cap(model, size, gib * 2**30) for gib in cards]
                plans = [plan_batch(b, caps[0]) for b in batches] if free_gib is not None else []
                gib = [f"{model.training(size, 0) / 2**30:.2f}", f"{model.per_pixel * size**2 / 2**30:.2f}"]
                rows.append([name, size, *([precision] if swept else []), *gib, *caps,
                             *(f"{p.used}x{p.accumulate}" for p in plans)])
    return "\n".join([head, *aligned(rows)])


def aligned(rows: list[list[Any]]) -> list[str]:
    """Table lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))) for row in rows]


def say_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def visible_gpu(devices: Any = None) -> tuple[float | None, str | None]:
    """Free memory (GiB) and name of the CUDA device with the least free memory among `devices` (`trainer.devices`:
    a count, indices, -1 or "auto"), or of this process's device (`LOCAL_RANK`, else 0) when `devices` is None or
    an external launcher started this process as one rank; (None, None) when no GPU is visible."""
    import torch  # deferred: the sweep preview imports this module and starts without torch

    if not torch.cuda.is_available():
        return None, None
    if devices is None or "LOCAL_RANK" in os.environ:
        chosen = [int(os.environ.get("LOCAL_RANK", 0))]
    else:  # every device the run's ranks will train on: rank zero's plan must fit the fullest card
        from lightning.pytorch.accelerators import CUDAAccelerator  # deferred: the preview (devices None) needs none

        chosen = CUDAAccelerator.parse_devices(-1 if devices == "auto" else devices) or [0]
    free, index = min((torch.cuda.mem_get_info(i)[0], i) for i in chosen)
    return free / 2**30, torch.cuda.get_device_name(index)
