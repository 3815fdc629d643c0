"""The real receipts: at network-input scale, as realistic probability maps, as CLEval samples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ocr.targets.db_targets import make_db_targets
from ocr.utils.errors import UserError
from reference.detections import perturb_detections


@dataclass(frozen=True)
class Receipt:
    """One receipt at network-input scale: polygons (N, 2) float32, valid (h, w), scale."""

    name: str
    polygons: list[np.ndarray]
    valid_hw: tuple[int, int]
    scale: float


def load_receipts(data_dir: Path, image_size: int) -> list[Receipt]:
    """All receipts of every split in ``data_dir/jsons/*.json``, resized to longest side ``image_size``
    (only the image size is read, nothing decoded)."""
    jsons = sorted((Path(data_dir) / "jsons").glob("*.json"))
    if not jsons:
        raise UserError(f"no jsons/*.json under {data_dir}; pass --data pointing at the receipts folder")
    receipts = []
    for path in jsons:
        for name, entry in json.loads(path.read_text())["images"].items():
            with Image.open(Path(data_dir) / "images" / path.stem / name) as image:
                width, height = image.size
            scale = image_size / max(width, height)
            polygons = [
                np.asarray(word["points"], dtype=np.float32) * np.float32(scale)
                for word in entry["words"].values()
            ]
            receipts.append(Receipt(name, polygons, (round(height * scale), round(width * scale)), scale))
    return receipts


def synthetic_prob(receipt: Receipt, rng: np.random.Generator) -> np.ndarray:
    """Float32 (h, w) map: the receipt's shrunk-kernel map, Gaussian-blurred (sigma 1 px), gained by 1.3,
    plus N(0, 0.05) noise, clipped to [0, 1]."""
    height, width = receipt.valid_hw
    kernels = make_db_targets(receipt.polygons, height, width).prob_map
    prob = cv2.GaussianBlur(kernels, (0, 0), 1.0) * np.float32(1.3)
    prob += rng.normal(0.0, 0.05, prob.shape).astype(np.float32)
    return np.clip(prob, 0.0, 1.0)


def rotated(receipt: Receipt, degrees: float, image_size: int) -> list[np.ndarray]:
    """The receipt's polygons rotated by ``degrees`` about the canvas centre."""
    matrix = cv2.getRotationMatrix2D((image_size / 2, image_size / 2), degrees, 1.0).astype(np.float32)
    return [p @ matrix[:, :2].T + matrix[:, 2] for p in receipt.polygons]


def cleval_samples(
    data_dir: Path, rng: np.random.Generator, image_size: int | None = None
) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
    """(gt quads, transcriptions, ``perturb_detections`` of them) per annotated receipt, float64; with
    ``image_size`` the quads are scaled so the image's longest side is ``image_size`` and rounded to integers."""
    samples = []
    for json_path in sorted((Path(data_dir) / "jsons").glob("*.json")):
        images = json.loads(json_path.read_text())["images"]
        for name in sorted(images):
            words = list(images[name]["words"].values())
            if not words:
                continue
            gt = np.array([w["points"] for w in words], dtype=np.float64)
            if image_size is not None:
                image_path = Path(data_dir) / "images" / json_path.stem / name
                if not image_path.is_file():
                    continue
                with Image.open(image_path) as image:
                    gt = np.rint(gt * (image_size / max(image.size)))
            dets = np.array(perturb_detections(gt, rng), dtype=np.float64)
            samples.append((gt, [w["transcription"] for w in words], dets))
    return samples
