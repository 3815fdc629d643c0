"""The no-argument output of wandb_sweep.py: the sweep that would be created, where, and the batch caps."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ocr.sweep.command import trial_command
from ocr.sweep.engine import suggest
from ocr.sweep.hydra_check import command_overrides, discrete_values
from ocr.sweep.spec import BATCH_SIZE_KEY, IMAGE_SIZE_KEY
from ocr.training.batch_size import REFERENCE_MEMORY_GIB, batch_cap, plan_batch


@dataclass(frozen=True)
class Destination:
    """Where a sweep goes: W&B's server or the embedded controller, and the W&B mode of its trials."""

    backend: str  # "wandb" | "embedded"
    trial_mode: str  # "online" | "offline" | "disabled"
    project: str
    entity: str | None
    key_set: bool
    store: Path

    def describe(self) -> str:
        who = f"entity={self.entity or '(your default)'}, project={self.project}"
        key = f"W&B API key: {'set' if self.key_set else 'not set'}"
        if self.backend == "wandb":
            hint = "" if self.key_set else " (creating it would stop here: run `wandb login`, or add --offline)"
            return f"W&B server (online), {who}; {key}{hint}"
        runs = "W&B logging disabled" if self.trial_mode == "disabled" else "each trial is a W&B offline run"
        return f"embedded controller (no W&B server), store {self.store}/, {runs}; {who}; {key}"


def cap_table(params: dict[str, Any], memory_gib: float | None, device: str | None) -> str:
    """Batch-size caps for the sweep's image sizes on the visible GPU, and how each swept batch is run."""
    sizes = [int(v) for v in discrete_values(params.get(IMAGE_SIZE_KEY, {}))]
    batches = [int(v) for v in discrete_values(params.get(BATCH_SIZE_KEY, {}))]
    if memory_gib is None:
        head = (
            "no CUDA GPU visible: trials on the CPU use the requested batch size; caps a GPU like the origin's "
            f"({REFERENCE_MEMORY_GIB:g} GiB) would impose:"
        )
        memory = REFERENCE_MEMORY_GIB
    else:
        head = f"batch-size caps for {device} ({memory_gib:.1f} GiB); a larger batch runs as cap x accumulation:"
        memory = memory_gib
    if not sizes:
        return head + "\n  (the sweep does not set image_size)"
    lines = [head, f"  {'image_size':>10} {'cap':>4}  " + "  ".join(f"bs {b:>2} ->" for b in batches)]
    for size in sizes:
        cap = batch_cap(size, memory)
        plans = [plan_batch(b, cap) for b in batches]
        cells = "  ".join(f"{p.used:>2}x{p.accumulate:<4}" for p in plans)
        lines.append(f"  {size:>10} {cap:>4}  {cells}")
    return "\n".join(lines)


def visible_gpu() -> tuple[float | None, str | None]:
    """Memory (GiB) and name of CUDA device 0, or (None, None) when none is visible."""
    from ocr.training.batch_size import cuda_memory_gib

    memory = cuda_memory_gib()
    if memory is None:
        return None, None
    import torch

    return memory, torch.cuda.get_device_name(0)


def preview_text(
    config: dict[str, Any], source: str, destination: Destination, create: str = "python wandb_sweep.py --create-sweep"
) -> str:
    """Everything the no-argument mode prints."""
    sample = suggest(config, [])
    example = shlex.join(trial_command(config, sample[0])) if sample else "(grid is empty)"
    memory, device = visible_gpu()
    return "\n".join(
        [
            f"# sweep that would be created (from {source}, after command-line and environment overrides)",
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None).rstrip(),
            "",
            f"destination: {destination.describe()}",
            f"one trial would run: {example}",
            "",
            cap_table({**command_overrides(config, source), **config["parameters"]}, memory, device),
            "",
            f"create it with:  {create}   (add --count N to also run N trials here)",
        ]
    )
