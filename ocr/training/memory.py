"""Memory model of DBNet training: fp32 weights, gradients and Adam's two moments, plus the activations autograd
saves for backward, measured on the CPU at two small sizes and cached per model, precision, timm and torch version."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

PROBE_SIZES = (64, 128)  # multiples of 32 (HRNet's coarsest stride): saved bytes are then linear in pixel count
PARAM_BYTES = 4 * 4  # fp32 per parameter: the weight, its gradient, Adam's (or AdamW's) two moments
# autocast: half-width activations for its low-precision ops; others are measured as fp32 (for *-true an upper bound)
MIXED = {"bf16-mixed", "16-mixed", "bf16", "16"}
CACHE_ENV = "OCR_MEMORY_CACHE"  # path of the cache file (default ~/.cache/ocr-hrnet-sweep/memory.json)


@dataclass(frozen=True)
class Footprint:
    """One DBNet's memory: `params` parameters; autograd keeps `fixed + batch * per_pixel * pixels` bytes."""

    params: int
    fixed: float  # kept whatever the batch (e.g. autocast's low-precision copies of the weights)
    per_pixel: float  # kept per input pixel of each image

    def saved(self, image_size: int, batch: int = 1) -> float:
        return self.fixed + batch * self.per_pixel * image_size**2

    def training(self, image_size: int, batch: int) -> float:
        """Bytes of a training step: weights, gradients, optimizer state and the saved activations."""
        return PARAM_BYTES * self.params + self.saved(image_size, batch)


def is_mixed(precision: Any) -> bool:
    return str(precision) in MIXED


def saved_bytes(model: Any, loss: Any, size: int, mixed: bool, batch: int = 1) -> int:
    """Bytes of the distinct storages autograd keeps for backward in one forward + DB loss of a random batch at
    `size` px (the parameters themselves excluded: they are counted as weights)."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    images, targets = random_batch(batch, size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
        loss(model(images), targets)
    return sum(kept.values())


def random_batch(batch: int, size: int, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Random images (batch, 3, size, size) and DB targets of their shape: what a training step takes."""
    import torch

    new = lambda make: make((batch, 1, size, size), device=device)  # noqa: E731
    targets = {"prob_map": (new(torch.rand) > 0.9).float(), "prob_mask": new(torch.ones),
               "thresh_map": new(torch.rand) * 0.4 + 0.3, "thresh_mask": new(torch.ones)}
    return torch.randn(batch, 3, size, size, device=device), targets


def fit(model: Any, loss: Any, mixed: bool, sizes: tuple[int, int] = PROBE_SIZES) -> Footprint:
    """The footprint of `model` from its saved bytes at two sizes (batch 1)."""
    (small, large), (low, high) = sizes, (saved_bytes(model.train(), loss, s, mixed) for s in sizes)
    per_pixel = (high - low) / (large**2 - small**2)
    return Footprint(sum(p.numel() for p in model.parameters()), max(0.0, low - per_pixel * small**2), per_pixel)


def cache_path() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ocr-hrnet-sweep" / "memory.json"


def cache_key(models: dict[str, Any], precision: Any) -> str:
    """What the footprint depends on: the encoder, the decoder's config, the precision, timm's and torch's versions."""
    shape = json.dumps([models["decoder"], models["encoder"].get("out_indices")], sort_keys=True, default=str)
    versions = f"timm-{version('timm')} torch-{version('torch')}"
    return " ".join([models["encoder"]["model_name"], "mixed" if is_mixed(precision) else "fp32", versions,
                     hashlib.sha1(shape.encode()).hexdigest()[:8]])


def read_cache() -> dict[str, Any]:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def footprint(models: dict[str, Any], precision: Any, say: Callable[[str], None] | None = None) -> Footprint:
    """The footprint of the DBNet of `models` (a resolved `models` config) at `precision`, from the cache, else
    measured on the CPU (a few seconds, `say` tells) and cached."""
    key = cache_key(models, precision)
    if key in (cached := read_cache()):
        return Footprint(**cached[key])
    import torch
    from omegaconf import OmegaConf

    from ocr.training.build import build, build_model

    if say:
        say(f"measuring the training memory of {models['encoder']['model_name']} ({precision}) on the CPU, "
            f"once (cached in {cache_path()})")
    with torch.random.fork_rng(devices=[]):  # the run's seeded weights do not depend on the cache
        node = OmegaConf.create(models)
        found = fit(build_model(node, pretrained=False), build(node.loss), is_mixed(precision))
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.{os.getpid()}")
        temp.write_text(json.dumps({**read_cache(), key: asdict(found)}, indent=1, sort_keys=True))
        os.replace(temp, path)  # atomic: trials starting together may write at once
    except OSError as err:  # a read-only home: measured again next time
        if say:
            say(f"could not cache the measurement in {path}: {err}")
    return found
