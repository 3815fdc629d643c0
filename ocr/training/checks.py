"""Config checks run before anything heavy is imported or built, so mistakes surface in a second."""

from __future__ import annotations

from omegaconf import DictConfig

from ocr.utils.errors import UserError, require_number


def check_config(cfg: DictConfig) -> None:
    """Refuse values that would fail late or silently (image size, batch size, learning rate, model name)."""
    require_number(cfg.image_size, "image_size", integer=True)
    require_number(cfg.batch_size, "batch_size", integer=True)
    if cfg.image_size < 64 or cfg.image_size % 32:
        raise UserError(f"image_size={cfg.image_size} must be a multiple of 32 and >= 64 (e.g. 640, 800, 1024, 1280)")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size={cfg.batch_size} must be >= 1")
    optimizer = cfg.get("optimizer") or {}
    if "lr" in optimizer:
        require_number(optimizer.lr, "optimizer.lr")
        if optimizer.lr <= 0:
            raise UserError(f"optimizer.lr={optimizer.lr} must be > 0 (the reference sweeps used 0.0005 to 0.002)")
    if "weight_decay" in optimizer:
        require_number(optimizer.weight_decay, "optimizer.weight_decay")
        if optimizer.weight_decay < 0:
            raise UserError(f"optimizer.weight_decay={optimizer.weight_decay} must be >= 0")
    tuning = cfg.get("tuning") or {}
    if tuning.get("count", 0) and not cfg.get("cache_val_maps"):
        raise UserError(f"tuning.count={tuning.count} searches the cached validation maps: set cache_val_maps=true "
                        "(or tuning.count=0)")
    from ocr.models.encoder import check_model_name  # imports timm (and torch)

    check_model_name(cfg.models.encoder.model_name)
