"""ReceiptDataset: one split of the competition layout as network-ready samples (see ARCHITECTURE.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ocr.data.annotations import load_split, split_paths, unlabelled_split
from ocr.data.transforms import (
    ImageDecodeError,
    brightness_contrast,
    load_resized,
    orient_points,
    pad_square,
    sample_brightness_contrast,
    to_tensor,
)

log = logging.getLogger(__name__)


class ReceiptDataset(Dataset):
    """Samples of `split` under `root`, resized (longest side `image_size`) and padded bottom/right.

    Each item is a dict:

    * ``image``: float32 tensor (3, S, S), ImageNet-normalised; ``image_name``: file name
    * ``polygons``: list of (N, 2) float32 in input (resized) coordinates
    * ``scale``: ``original = transformed / scale``; ``valid_hw``: unpadded (h, w) in input coordinates
    * ``orig_hw``: (H, W) of the image after EXIF orientation
    * ``gt_polygons``: the polygons in original (oriented) coordinates; ``gt_texts``: transcriptions or None
    * ``corrupt``: True when the file could not be decoded (then the image is blank and there are no words)

    With `train`, brightness/contrast is jittered (alpha = 1 +- contrast_limit, beta = +-brightness_limit * 255)
    with probability `brightness_contrast_p`. Without `labels`, every image file of the split is a sample with
    no words (no JSON is read).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: int,
        train: bool = False,
        brightness_limit: float = 0.2,
        contrast_limit: float = 0.2,
        brightness_contrast_p: float = 0.5,
        reduced_decode: bool = True,
        labels: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = int(image_size)
        self.train = train
        self.brightness_limit = brightness_limit
        self.contrast_limit = contrast_limit
        self.brightness_contrast_p = brightness_contrast_p
        self.reduced_decode = reduced_decode
        self.image_dir = split_paths(self.root, split)[0]
        self.words = load_split(self.root, split) if labels else unlabelled_split(self.root, split)
        self.names = list(self.words)
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        path = self.image_dir / name
        try:
            loaded = load_resized(path, self.image_size, self.reduced_decode)
        except ImageDecodeError as err:
            if name not in self._warned:
                self._warned.add(name)
                log.warning(f"{path} cannot be decoded ({err}); using a blank image without words instead")
            return self._blank(name)

        image = loaded.image
        if self.train:
            jitter = sample_brightness_contrast(self.brightness_limit, self.contrast_limit, self.brightness_contrast_p)
            if jitter is not None:
                image = brightness_contrast(image, *jitter)
        words = self.words[name]
        gt = [orient_points(w.points, loaded.header.orientation, loaded.header.size) for w in words]
        return {
            "image": to_tensor(pad_square(image, self.image_size)),
            "polygons": [(p * np.float32(loaded.scale)).astype(np.float32) for p in gt],
            "image_name": name,
            "scale": loaded.scale,
            "valid_hw": image.shape[:2],
            "orig_hw": loaded.orig_hw,
            "gt_polygons": gt,
            "gt_texts": [w.text for w in words],
            "corrupt": False,
        }

    def _blank(self, name: str) -> dict:
        """Stand-in for an undecodable image: black S x S image, scale 1, no words."""
        size = self.image_size
        return {
            "image": to_tensor(np.zeros((size, size, 3), np.uint8)),
            "polygons": [],
            "image_name": name,
            "scale": 1.0,
            "valid_hw": (size, size),
            "orig_hw": (size, size),
            "gt_polygons": [],
            "gt_texts": [],
            "corrupt": True,
        }
