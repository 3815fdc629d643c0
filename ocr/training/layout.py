"""The files a training run writes into its run directory."""

from pathlib import Path

CONFIG_FILE = "config.yaml"  # the resolved config, dataset folders absolute
METRICS_FILE = "metrics.json"  # the best checkpoint's scores
BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
CACHE_DIR = "val_cache"  # the best checkpoint's validation probability maps
