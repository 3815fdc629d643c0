"""Hydra CLI for one training run: `python -m ocr.train key=value ...` (configs/train.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ocr.config.checks import check_parameters
from ocr.utils.display import shown_path
from ocr.utils.env import load_env
from ocr.utils.errors import exit_on_user_error

load_env()  # before Hydra resolves ${oc.env:...} (DATASET_BASE_PATH, WANDB_PROJECT, ...)

PROG = "ocr.train"


def check_overrides(words: list[str]) -> None:
    """Plain `key=value` overrides must name a key or group option of the config with a value training accepts (the
    closest key when misspelt); appends (`+key`), deletions, sweeps and Hydra's own flags are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    if any(word.startswith("-") and word not in ("-m", "--multirun") for word in words):
        return
    try:
        overrides = OverridesParser.create().parse_overrides([w for w in words if not w.startswith("-")])
    except HydraException:
        return  # Hydra reports a malformed override itself
    plain = {
        o.key_or_group: {"value": o.value()}
        for o in overrides
        if o.type == OverrideType.CHANGE and o.package is None and not o.is_sweep_override()
        and not o.key_or_group.startswith("hydra")
    }
    if plain:
        check_parameters(plain, "command line", round_trip=False)


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Train and print the final metrics and the run directory."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with exit_on_user_error(PROG):
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        from ocr.training.run import train  # deferred: `cli` refuses bad overrides before Lightning loads
        from ocr.tuning.tune import after_training

        metrics = train(cfg, run_dir, after_fit=after_training(cfg.get("tuning"), cfg.seed))
    if rank_zero_only.rank:  # the other ranks of a DDP run: rank zero reports
        return
    shown = {k: v for k, v in metrics.items() if k.startswith("val/cleval")}
    print("final (best checkpoint): " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"run directory: {shown_path(run_dir)} (tune post-processing: python wandb_sweep.py tune-postprocess "
          f"{shown_path(run_dir)})")


def cli() -> None:
    """`python -m ocr.train` / `ocr-train`: the overrides are checked before Hydra starts."""
    with exit_on_user_error(PROG):
        check_overrides(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
