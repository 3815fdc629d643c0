"""ReceiptDataset, one split of the competition layout as network-ready samples, and ReceiptDataModule, train / val /
test (= predict) loaders over the real or the synthetic dataset (see ARCHITECTURE.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ocr.data.annotations import load_split, split_paths
from ocr.data.crops import CropSpec, crop_spec, draw_scale, random_crop
from ocr.data.paths import dataset_root, resolve_dataset_root
from ocr.data.transforms import (ImageDecodeError, brightness_contrast, load_resized, orient_points, pad_square,
                                 sample_brightness_contrast, to_tensor)
from ocr.utils.errors import UserError
from ocr.utils.processes import process_context, start_server

JITTER_KEYS = {"brightness_limit": "brightness_limit", "contrast_limit": "contrast_limit", "p": "brightness_contrast_p"}
# Loader workers start from a forkserver that has imported these (Lightning too: its worker seeding): forking the
# training process, which holds threads (gloo, W&B, earlier workers' queues), could leave a worker stuck in fork().
WORKER_MODULES = ("ocr.data.datamodule", "ocr.targets.collate")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
log = logging.getLogger(__name__)


class ReceiptDataset(Dataset):
    """Images of `split` resized (longest side `image_size`), padded bottom/right, with their polygons. Items:
    ``image`` (3, S, S) ImageNet-normalised, ``image_name``, ``polygons`` in input pixels, ``ignore`` per polygon,
    ``scale`` (original = input / scale before cropping), ``valid_hw`` (unpadded input size), ``orig_hw`` (after EXIF
    orientation), ``gt_polygons`` / ``gt_texts`` (original pixels), ``corrupt`` (undecodable: blank image, no words).
    `train` jitters brightness/contrast and, with `crop`, yields `crop.per_image` random crops (S = `crop.size`) of
    each image per epoch; without `labels` every image file is a sample and no JSON is read."""

    def __init__(self, root: str | Path, split: str, image_size: int, train: bool = False,
                 brightness_limit: float = 0.2, contrast_limit: float = 0.2, brightness_contrast_p: float = 0.5,
                 reduced_decode: bool = True, labels: bool = True, crop: CropSpec | None = None) -> None:
        self.image_size, self.train, self.reduced_decode = int(image_size), train, reduced_decode
        self.brightness_limit, self.contrast_limit = brightness_limit, contrast_limit
        self.brightness_contrast_p = brightness_contrast_p
        self.crop = crop if train else None
        self.side = self.crop.size if self.crop else self.image_size
        self.image_dir = split_paths(Path(root), split)[0]
        self.words = load_split(Path(root), split, labels)
        self.names = list(self.words)
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.names) * (self.crop.per_image if self.crop else 1)

    def __getitem__(self, index: int) -> dict:
        if index >= len(self):
            raise IndexError(f"sample {index} of {len(self)}")  # iteration ends here
        name = self.names[index % len(self.names)]
        path = self.image_dir / name
        fit = round(self.image_size * draw_scale(self.crop)) if self.crop else self.image_size
        try:
            loaded = load_resized(path, fit, self.reduced_decode)
        except ImageDecodeError as err:
            if name not in self._warned:
                self._warned.add(name)
                log.warning(f"{path} cannot be decoded ({err}); using a blank image without words instead")
            size = (self.side, self.side)
            return self._sample(name, np.zeros((*size, 3), np.uint8), [], [], 1.0, size, [], [], corrupt=True)
        words = self.words[name]
        gt = [orient_points(w.points, loaded.header.orientation, loaded.header.size) for w in words]
        image, polygons = loaded.image, [(p * np.float32(loaded.scale)).astype(np.float32) for p in gt]
        ignore = [False] * len(polygons)
        if self.crop:
            image, polygons, ignore = random_crop(image, polygons, self.crop)
        if self.train:
            jitter = sample_brightness_contrast(self.brightness_limit, self.contrast_limit, self.brightness_contrast_p)
            if jitter is not None:
                image = brightness_contrast(image, *jitter)
        texts = [w.text for w in words]
        return self._sample(name, image, polygons, ignore, loaded.scale, loaded.orig_hw, gt, texts)

    def _sample(self, name: str, image: np.ndarray, polygons: list[np.ndarray], ignore: list[bool], scale: float,
                orig_hw: tuple[int, int], gt: list[np.ndarray], texts: list[str | None], corrupt: bool = False) -> dict:
        return {
            "image": to_tensor(pad_square(image, self.side)),
            "polygons": polygons,
            "ignore": ignore,
            "image_name": name,
            "scale": scale,
            "valid_hw": image.shape[:2],
            "orig_hw": orig_hw,
            "gt_polygons": gt,
            "gt_texts": texts,
            "corrupt": corrupt,
        }


def stack_images(samples: list[dict]) -> dict[str, Any]:
    """Default collate (no training targets): ``images`` (B, 3, S, S) and ``meta``, each sample minus its image."""
    return {
        "images": torch.stack([s["image"] for s in samples]),
        "meta": [{k: v for k, v in s.items() if k != "image"} for s in samples],
    }


class ReceiptDataModule(L.LightningDataModule):
    """Loaders for ROOT in the competition layout, or for synthetic receipts when no root is configured; `batch_size`
    is read whenever a loader is built (it can be lowered after an OOM), `val_batch_size` None follows it; `augment`
    (train only: jitter and crops) and `synthetic` (see `paths.dataset_root`) as `ocr.config` checks them;
    `limit_train` / `limit_val` keep the first N images by name."""

    def __init__(self, dataset_base_path: str | None, image_size: int, batch_size: int, num_workers: int = 2,
                 collate_fn: Callable | None = None, val_batch_size: int | None = None,
                 synthetic: Mapping | None = None, augment: Mapping | None = None, limit_train: int | None = None,
                 limit_val: int | None = None) -> None:
        super().__init__()
        self.root = resolve_dataset_root(dataset_base_path)
        self.image_size, self.batch_size, self.num_workers = int(image_size), int(batch_size), int(num_workers)
        self.val_batch_size = val_batch_size
        self.collate_fn = collate_fn or stack_images
        self.synthetic, augment = dict(synthetic or {}), dict(augment or {})
        self.jitter = {JITTER_KEYS[k]: float(v) for k, v in augment.items() if k in JITTER_KEYS}
        self.crop = crop_spec(augment)
        self.limits = {"train": limit_train, "val": limit_val}
        self.datasets: dict[str, Dataset] = {}

    def dataset_root(self) -> Path:
        """The configured root, or the synthetic dataset (generated on first use)."""
        return dataset_root(self.root, self.synthetic)

    def prepare_data(self) -> None:
        self.dataset_root()

    def setup(self, stage: str | None = None) -> None:
        if self.num_workers > 0:
            start_server(*WORKER_MODULES)
        root = self.dataset_root()
        for split in STAGE_SPLITS.get(stage, ("train", "val")):
            if split in self.datasets:
                continue
            train = split == "train"
            options = {"crop": self.crop, **self.jitter} if train else {}
            dataset: Dataset = ReceiptDataset(root, split, self.image_size, train=train, **options)
            if self.limits.get(split) is not None:  # the first N images (each of their crops)
                images = len(dataset.names)
                dataset = Subset(dataset, [i for i in range(len(dataset)) if i % images < self.limits[split]])
            if len(dataset) == 0 and split in ("train", "val"):
                raise UserError(
                    f"the {split} split of {root} has no images: "
                    f"training needs some in jsons/{split}.json and images/{split}/ (val/cleval_hmean, the sweep's "
                    "metric, is measured on val)"
                )
            self.datasets[split] = dataset

    def _loader(self, split: str, batch_size: int | None = None, shuffle: bool = False) -> DataLoader:
        workers = self.num_workers > 0
        return DataLoader(self.datasets[split], batch_size=batch_size or self.val_batch_size or self.batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, collate_fn=self.collate_fn,
                          persistent_workers=workers, pin_memory=torch.cuda.is_available(),
                          multiprocessing_context=process_context(*WORKER_MODULES) if workers else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    predict_dataloader = test_dataloader
