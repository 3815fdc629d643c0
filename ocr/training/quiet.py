"""Lightning's console output: its lines once each, no advertisements, no warning about its own code."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
LIGHTNING_INFO = "lightning.pytorch.utilities.rank_zero"  # the logger of Lightning's info lines (devices, tips)


def _not_a_tip(record: logging.LogRecord) -> bool:  # "💡 Tip: ... try installing litlogger / litmodels"
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's lines through the root logger's handlers (Hydra's console and train.log) when it has some; no
    tips; no `LeafSpec` deprecation warning from Lightning's own code."""
    if logging.getLogger().handlers:
        for name in LIGHTNING_LOGGERS:  # the plain stderr handlers Lightning adds on import
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    info = logging.getLogger(LIGHTNING_INFO)
    if _not_a_tip not in info.filters:
        info.addFilter(_not_a_tip)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")


@contextmanager
def lightning_info_hidden() -> Iterator[None]:
    """Lightning's info lines (devices, tips) not shown in the block; its warnings still are."""
    info = logging.getLogger(LIGHTNING_INFO)
    level = info.level
    info.setLevel(logging.WARNING)
    try:
        yield
    finally:
        info.setLevel(level)
