"""The validation cache (RUN_DIR/val_cache/): ``maps.f16``, the best checkpoint's probability maps (float16, cropped
to the image) concatenated; ``index.json``, per image its name, offset and shape there, ``scale``, ``orig_hw``,
ground-truth polygons (original image coordinates) and transcriptions."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocr.training.layout import BEST_CHECKPOINT, CACHE_DIR
from ocr.utils.errors import UserError

MAPS_FILE = "maps.f16"
INDEX_FILE = "index.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class CachedImage:
    """One validation image: its float16 map (cropped) and ground truth in original coordinates."""

    name: str
    prob: np.ndarray
    scale: float
    orig_hw: tuple[int, int]
    gt_polygons: list[np.ndarray]
    gt_texts: list[str | None]


def cache_dir(run_dir: Path) -> Path:
    """Where the validation cache of `run_dir` lives."""
    return Path(run_dir) / CACHE_DIR


def write_val_cache(run_dir: Path, items: Iterable[tuple[dict, np.ndarray]]) -> Path:
    """Write `items` = (sample meta, map cropped to the image) as `run_dir`'s cache, atomically replacing any older
    one; returns its dir."""
    target = cache_dir(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_DIR}-", dir=target.parent))
    try:
        entries, offset = [], 0
        with (tmp / MAPS_FILE).open("wb") as fh:
            for meta, prob in items:
                prob = np.ascontiguousarray(prob, dtype=np.float16)
                fh.write(prob.tobytes())
                entries.append({"name": str(meta["image_name"]), "offset": offset, "shape": list(prob.shape),
                                "scale": float(meta["scale"]), "orig_hw": [int(v) for v in meta["orig_hw"]],
                                "gt_polygons": [np.float32(p).reshape(-1, 2).tolist() for p in meta["gt_polygons"]],
                                "gt_texts": [t if isinstance(t, str) else None for t in meta["gt_texts"]]})
                offset += prob.size
        index = {"format": FORMAT_VERSION, "dtype": "float16", "images": entries}
        (tmp / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
        tmp.chmod(0o755)
        old = target.with_name(f".{CACHE_DIR}-old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_rank_caches(run_dir: Path, items: Iterable[tuple[dict, np.ndarray]], strategy: Any) -> None:
    """`write_val_cache` under a Lightning `strategy`: each rank writes its images to RUN_DIR/.rank<r>/, then rank
    zero merges them into the cache (each image once, sorted by name, as one device writes it)."""
    if strategy.world_size == 1:
        write_val_cache(run_dir, items)
        return
    parts = [Path(run_dir) / f".rank{rank}" for rank in range(strategy.world_size)]
    write_val_cache(parts[strategy.global_rank], items)
    strategy.barrier()
    if strategy.is_global_zero:
        images = {image.name: image for part in parts for image in load_val_cache(part)}
        # the sample meta write_val_cache reads: a cached image's fields, its name as `image_name`
        write_val_cache(run_dir, (({**vars(im), "image_name": name}, im.prob) for name, im in sorted(images.items())))
        for part in parts:
            shutil.rmtree(part)


def load_val_cache(run_dir: Path) -> list[CachedImage]:
    """The cached images of `run_dir`; maps are read-only memory maps (cheap to open in many worker processes)."""
    path = cache_dir(run_dir)
    index_path, maps_path, checkpoint = path / INDEX_FILE, path / MAPS_FILE, Path(run_dir) / BEST_CHECKPOINT
    if not (index_path.is_file() and maps_path.is_file()):
        if not checkpoint.is_file():
            raise UserError(f"no validation cache in {path}, and the run has no checkpoint ({checkpoint} is missing: "
                            "the run failed or is still running); pass a run that finished a validation epoch")
        raise UserError(f"no validation cache in {path}: build it from the run's best checkpoint with "
                        f"`python wandb_sweep.py build-cache {run_dir}` (runs one validation pass)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {index.get('format')!r}, expected {FORMAT_VERSION}")
        total = sum(e["shape"][0] * e["shape"][1] for e in index["images"])
        flat = np.memmap(maps_path, dtype=np.float16, mode="r") if total else np.zeros(0, np.float16)
        if flat.size != total:
            raise ValueError(f"{MAPS_FILE} holds {flat.size} values, the index expects {total}")
        images = []
        for e in index["images"]:
            prob = flat[e["offset"] : e["offset"] + e["shape"][0] * e["shape"][1]].reshape(e["shape"])
            polygons = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in e["gt_polygons"]]
            images.append(CachedImage(e["name"], prob, float(e["scale"]), tuple(e["orig_hw"]), polygons, e["gt_texts"]))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"validation cache {path} is unreadable ({err}); rebuild it with "
                        f"`python wandb_sweep.py build-cache {run_dir}`") from None
    return images
