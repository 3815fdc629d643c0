"""One split of the competition layout (ROOT/images/SPLIT/* + ROOT/jsons/SPLIT.json), read and validated.

A broken layout or JSON stops with a UserError; unusable words, missing or unlisted images are skipped with one
warning per kind and split; polygons partly outside their image are clipped. Test images need no JSON entry.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ocr.utils.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
PREDICTION_SPLIT = "test"
EXAMPLES = 3
LAYOUT = '{"images": {NAME: {"words": {KEY: {"points": [[x, y], ...]}}}}}'


@dataclass(frozen=True, eq=False)
class Word:
    """One annotated text region: polygon (N, 2) float32 in stored-image pixels, transcription, JSON key."""

    points: np.ndarray
    text: str | None
    key: str


def split_paths(root: Path, split: str) -> tuple[Path, Path]:
    """(image folder, annotation JSON) of `split` under `root`."""
    return Path(root) / "images" / split, Path(root) / "jsons" / f"{split}.json"


def stored_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the image as stored (header only), or None when the header cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _examples(names: list[str]) -> str:
    return ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")


def _shape_error(json_path: Path, where: str, expected: str, found: object) -> UserError:
    return UserError(f"{json_path}: {where} must be {expected}, found {type(found).__name__}; "
                     f"fix the file (expected {LAYOUT})")


def read_annotation_json(json_path: Path, split: str) -> dict[str, dict | None]:
    """NAME -> its ``words`` object (None when absent) from `json_path`; {} for a test split without JSON."""
    if not json_path.is_file():
        if split == PREDICTION_SPLIT:
            return {}
        raise UserError(f"annotation file {json_path} not found: the {split} split needs it "
                        f"(layout ROOT/images/{split}/*.jpg + ROOT/jsons/{split}.json); check dataset_base_path")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{json_path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                        "fix or replace it") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{json_path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                        "fix or replace it") from None
    if isinstance(data, dict) and "images" not in data:
        keys = f"found keys: {_examples(sorted(data))}" if data else "the object is empty"
        raise UserError(f'{json_path}: the top level key "images" is missing ({keys}); '
                        f"fix the file (expected {LAYOUT})")
    if not isinstance(data, dict) or not isinstance(data["images"], dict):
        found = data["images"] if isinstance(data, dict) else data
        raise _shape_error(json_path, 'the top level key "images"', "an object of image names", found)
    entries: dict[str, dict | None] = {}
    for name, entry in data["images"].items():
        if entry is not None and not isinstance(entry, dict):
            raise _shape_error(json_path, f"images[{name!r}]", 'an object with a "words" key', entry)
        words = entry.get("words") if entry is not None else None
        if words is not None and not isinstance(words, dict):
            raise _shape_error(json_path, f'images[{name!r}]["words"]', "an object of word keys (or null)", words)
        entries[name] = words
    return entries


def parse_word(key: str, entry: object, size: tuple[int, int] | None) -> tuple[Word | None, str | None, bool]:
    """(word, None, clipped) for a usable entry, or (None, reason, False); `size` (width, height) None: no bounds."""
    try:
        pts = np.asarray(entry["points"], dtype=np.float64)  # KeyError/TypeError: no points, or not an object
    except (KeyError, TypeError, ValueError):
        return None, "malformed", False
    if pts.size == 0 or (pts.ndim == 2 and pts.shape[1] == 2 and len(pts) < 3):
        return None, "< 3 points", False
    if pts.ndim != 2 or pts.shape[1] != 2:
        return None, "malformed", False
    if not np.isfinite(pts).all():
        return None, "NaN/inf coordinates", False
    clipped = False
    if size is not None:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        if hi[0] < 0 or hi[1] < 0 or lo[0] > size[0] or lo[1] > size[1]:
            return None, "entirely outside the image", False
        inside = np.clip(pts, 0, size)
        clipped, pts = bool((inside != pts).any()), inside
    x, y = pts[:, 0], pts[:, 1]
    if abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 1e-6:
        return None, "zero area", False
    text = entry.get("transcription")
    return Word(pts.astype(np.float32), text if isinstance(text, str) else None, str(key)), None, clipped


def load_split(root: Path, split: str, labels: bool = True) -> dict[str, list[Word]]:
    """Image name -> its usable words for `split`, sorted by name; without `labels`, every image file, no words."""
    image_dir, json_path = split_paths(root, split)
    if not image_dir.is_dir():
        fix = (f"expected ROOT/images/{split}/ and ROOT/jsons/{split}.json under the dataset root {root}; "
               "check dataset_base_path" if labels else
               f"the {split} split's images go there; check the split name and the dataset root")
        raise UserError(f"image folder {image_dir} not found: {fix}")
    on_disk = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not labels:
        if not on_disk:
            raise UserError(f"{image_dir} has no images ({'/'.join(sorted(IMAGE_SUFFIXES))} files): "
                            "add the split's images, or choose another split or dataset root")
        return {name: [] for name in on_disk}
    present = set(on_disk)
    entries = read_annotation_json(json_path, split)

    result: dict[str, list[Word]] = {}
    reasons: Counter[str] = Counter()
    first_bad: tuple[str, str, str] | None = None
    n_words = n_clipped = 0
    for name, words in entries.items():
        if name not in present:
            continue
        size = stored_size(image_dir / name) if words else None
        kept = result[name] = []
        for key, entry in (words or {}).items():
            n_words += 1
            word, reason, clipped = parse_word(key, entry, size)
            if word is None:
                reasons[reason] += 1
                first_bad = first_bad or (name, str(key), reason)
            else:
                n_clipped += clipped
                kept.append(word)

    if reasons:
        detail = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        name, key, reason = first_bad
        log.warning(f"{json_path}: skipped {sum(reasons.values())} of {n_words} polygons ({detail}), first: "
                    f"image {name!r} word {key!r} ({reason}); fix their points in the JSON to use them")
    if n_clipped:
        log.warning(f"{json_path}: clipped {n_clipped} polygons partly outside their image to the image border")
    missing = sorted(set(entries) - present)
    if missing:
        log.warning(f"{json_path} lists {len(missing)} images missing from {image_dir} ({_examples(missing)}): "
                    "skipped; add the files or remove their entries")
    unlisted = [name for name in on_disk if name not in entries]
    if split == PREDICTION_SPLIT:
        result.update({name: [] for name in unlisted})
    elif unlisted:
        log.warning(f"{image_dir} has {len(unlisted)} images not in {json_path} ({_examples(unlisted)}): skipped; "
                    "add them to the JSON to use them")
    return dict(sorted(result.items()))
