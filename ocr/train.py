"""Hydra CLI for one training run: `python -m ocr.train key=value ...` (configs/train.yaml)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ocr.training.checks import check_config
from ocr.utils.env import load_env
from ocr.utils.errors import exit_on_user_error

load_env()  # before Hydra resolves ${oc.env:...} (DATASET_BASE_PATH, WANDB_PROJECT, ...)


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Train and print the final metrics."""
    with exit_on_user_error("ocr.train"):
        check_config(cfg)
        from ocr.training.run import train  # Lightning and the model stack: imported once the config is known good

        metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    shown = {k: v for k, v in metrics.items() if k.startswith("val/cleval")}
    print("final (best checkpoint): " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))


if __name__ == "__main__":
    main()
