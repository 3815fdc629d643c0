"""Lightning module: DB loss in training, post-processing + CLEval (mean of per-image scores) in validation.
Under DDP the per-image scores of every rank are gathered, so each rank logs those of one device."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch

from ocr.config.checks import CLEVAL_KEYS, cleval_name
from ocr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ocr.metrics.cleval import mean_scores
from ocr.metrics.scorer import CLEvalScorer
from ocr.models.dbnet import DBNet
from ocr.models.loss import DBLoss


def postprocess_batch(prob_logits: torch.Tensor, metas: Sequence[dict], postprocess: Callable
                      ) -> Iterator[tuple[dict, np.ndarray, list[np.ndarray]]]:
    """(meta, float32 probability map cropped to the image, polygons) per image of a batch. The maps are rounded
    through float16 on the device, the precision they are cached at, so a cached map gives the same polygons."""
    probs = torch.sigmoid(prob_logits.float()).squeeze(1).half().float().cpu().numpy()
    for prob, meta in zip(probs, metas):
        h, w = meta["valid_hw"]
        yield meta, prob[:h, :w], postprocess(prob[:h, :w], meta["scale"], orig_hw=meta["orig_hw"])[0]


def denormalize(chw: np.ndarray) -> np.ndarray:
    """ImageNet-normalised CHW float array -> HWC uint8 RGB."""
    hwc = chw.transpose(1, 2, 0) * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)
    return np.clip(hwc * 255.0, 0, 255).astype(np.uint8)


def draw_polygons(rgb: np.ndarray, true: Sequence[np.ndarray], predicted: Sequence[np.ndarray], scale: float = 1.0
                  ) -> np.ndarray:
    """Copy of `rgb` with `true` in green and `predicted` in red; polygons are multiplied by `scale` first."""
    canvas = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for polys, color in ((true, (0, 200, 0)), (predicted, (230, 0, 0))):
        pts = [np.round(np.asarray(p, dtype=np.float32) * scale).astype(np.int32) for p in polys if len(p) >= 2]
        cv2.polylines(canvas, pts, isClosed=True, color=color, thickness=thickness)
    return canvas


class DBNetModule(L.LightningModule):
    """Trains `model` with `loss`; validation logs val/loss* and val/cleval_{recall,precision,hmean}."""

    def __init__(self, model: DBNet, loss: DBLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None, metric_workers: int = 1,
                 log_val_images: int = 4) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scorer = CLEvalScorer(metric_workers)  # its workers live until it is closed
        self.log_val_images = log_val_images
        self.val_maps: list[tuple[dict, np.ndarray | None]] = []  # (meta, float16 map cropped to the image)
        self.val_images: list[tuple[np.ndarray, dict, list[np.ndarray]]] = []
        self.keep_maps = False  # set before a validation pass whose probability maps are to be cached
        self.checkpoint_epoch: int | None = None

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        # sync_dist: the mean over every rank's batches (nothing to sync on one device)
        self.log_dict({f"{stage}/{name}": value.detach() for name, value in losses.items()}, on_step=stage == "train",
                      on_epoch=True, prog_bar=False, batch_size=batch_size, sync_dist=True)
        self.log(f"{stage}_loss", losses["loss"].detach(), prog_bar=True, logger=False, batch_size=batch_size,
                 sync_dist=True)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.loss(self.model(batch["images"]), batch)
        self._log_losses("train", losses, len(batch["images"]))
        return losses["loss"]

    def on_validation_epoch_start(self) -> None:
        self.val_maps, self.val_images = [], []
        self.scorer.scores()  # drop what an interrupted pass left

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch["images"], with_threshold=True)
        self._log_losses("val", self.loss(out, batch), len(batch["images"]))
        samples = []
        images = postprocess_batch(out["prob_logits"], batch["meta"], self.model.head.postprocess)
        for i, (meta, prob, polygons) in enumerate(images):
            self.val_maps.append((meta, prob.astype(np.float16) if self.keep_maps else None))  # exact
            samples.append((meta["gt_polygons"], meta["gt_texts"], polygons))
            if len(self.val_images) < self.log_val_images:
                h, w = meta["valid_hw"]
                self.val_images.append((batch["images"][i, :, :h, :w].float().cpu().numpy(), meta, polygons))
        self.scorer.add(samples)  # scored in the background while the next batches run

    def on_validation_epoch_end(self) -> None:
        if not self.val_maps:
            return
        scored = zip((meta["image_name"] for meta, _ in self.val_maps), self.scorer.scores())
        named = dict(self.gathered(list(scored)))  # each image once: the distributed sampler repeats a few
        scores = mean_scores(named[name] for name in sorted(named))  # the dataset's order (by name), on any ranks
        # the same figures on every rank; "max" keeps them exact where a mean of equal floats may not
        self.log_dict({cleval_name(k): float(scores[k]) for k in CLEVAL_KEYS}, prog_bar=True, sync_dist=True,
                      reduce_fx="max")
        self._log_overlays()

    def gathered(self, items: list) -> list:
        """`items` of every rank, rank by rank (this rank's alone when there is one)."""
        if self.trainer.world_size == 1:
            return items
        parts: list[list] = [[] for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Remember the epoch of the checkpoint last saved (with `save_top_k: 1`, the best) or loaded."""
        self.checkpoint_epoch = checkpoint["epoch"]

    on_load_checkpoint = on_save_checkpoint

    def _log_overlays(self) -> None:
        log_image = getattr(self.logger, "log_image", None)
        if not (log_image and self.val_images and self.trainer.is_global_zero) or self.trainer.sanity_checking:
            return
        for chw, meta, polygons in self.val_images:  # one key per image: receipts differ in size
            overlay = draw_polygons(denormalize(chw), meta["gt_polygons"], polygons, scale=meta["scale"])
            log_image(key=f"val/predictions/{Path(meta['image_name']).stem}", images=[overlay],
                      caption=[f"{meta['image_name']}: green = true, red = predicted"], step=self.global_step)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning accepts several shapes)
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
