"""ReceiptDataset: one split of the competition layout as network-ready samples (see ARCHITECTURE.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ocr.data.annotations import load_split, split_paths
from ocr.data.transforms import (ImageDecodeError, brightness_contrast, load_resized, orient_points, pad_square,
                                 sample_brightness_contrast, to_tensor)

log = logging.getLogger(__name__)


class ReceiptDataset(Dataset):
    """Images of `split` resized (longest side `image_size`), padded bottom/right, with their polygons.

    Items: ``image`` (3, S, S) ImageNet-normalised, ``image_name``, ``polygons`` in input pixels, ``scale``
    (original = input / scale), ``valid_hw`` (unpadded input size), ``orig_hw`` (after EXIF orientation),
    ``gt_polygons`` / ``gt_texts`` (original pixels), ``corrupt`` (undecodable: blank image, no words).
    `train` jitters brightness/contrast; without `labels` every image file is a sample and no JSON is read.
    """

    def __init__(self, root: str | Path, split: str, image_size: int, train: bool = False, brightness_limit: float = 0.2,
                 contrast_limit: float = 0.2, brightness_contrast_p: float = 0.5, reduced_decode: bool = True,
                 labels: bool = True) -> None:
        self.image_size, self.train, self.reduced_decode = int(image_size), train, reduced_decode
        self.brightness_limit, self.contrast_limit = brightness_limit, contrast_limit
        self.brightness_contrast_p = brightness_contrast_p
        self.image_dir = split_paths(Path(root), split)[0]
        self.words = load_split(Path(root), split, labels)
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
            size = (self.image_size, self.image_size)
            return self._sample(name, np.zeros((*size, 3), np.uint8), 1.0, size, [], [], corrupt=True)
        image = loaded.image
        if self.train:
            jitter = sample_brightness_contrast(self.brightness_limit, self.contrast_limit, self.brightness_contrast_p)
            if jitter is not None:
                image = brightness_contrast(image, *jitter)
        words = self.words[name]
        gt = [orient_points(w.points, loaded.header.orientation, loaded.header.size) for w in words]
        return self._sample(name, image, loaded.scale, loaded.orig_hw, gt, [w.text for w in words])

    def _sample(self, name: str, image: np.ndarray, scale: float, orig_hw: tuple[int, int], gt: list[np.ndarray],
                texts: list[str | None], corrupt: bool = False) -> dict:
        return {
            "image": to_tensor(pad_square(image, self.image_size)),
            "polygons": [(p * np.float32(scale)).astype(np.float32) for p in gt],
            "image_name": name,
            "scale": scale,
            "valid_hw": image.shape[:2],
            "orig_hw": orig_hw,
            "gt_polygons": gt,
            "gt_texts": texts,
            "corrupt": corrupt,
        }
