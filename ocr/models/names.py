"""timm's model names, read from a per-version cache file when there is one (importing timm takes seconds)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from importlib.metadata import version
from pathlib import Path

from ocr.utils.errors import UserError


def cache_file() -> Path:
    """Where the names of the installed timm version are kept (under $XDG_CACHE_HOME or ~/.cache)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "ocr-hrnet-sweep" / f"timm-{version('timm')}-models.json"


@functools.cache
def timm_model_names() -> frozenset[str]:
    """Every architecture name timm registers (`timm.list_models()`), from the cache file when present."""
    path = cache_file()
    with contextlib.suppress(OSError, ValueError):
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    import timm  # deferred: importing timm takes seconds, the cache file spares it

    names = timm.list_models()
    with contextlib.suppress(OSError):  # a read-only home: the names are simply not cached
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(names), encoding="utf-8")
        partial.replace(path)
    return frozenset(names)


def is_timm_model(name: object) -> bool:
    """Whether timm can build `name`: an architecture, optionally with a pretrained tag (`hrnet_w18.ms_in1k`)."""
    if not isinstance(name, str):
        return False
    if ":" in name:  # a hub reference (hf-hub:org/repo): timm resolves those itself
        import timm  # deferred: importing timm takes seconds

        return timm.is_model(name)
    return name.split(".", 1)[0] in timm_model_names()


def check_model_name(name: object, key: str = "models.encoder.model_name") -> None:
    """Raise a `UserError` listing timm's HRNet names if timm has no model called `name`."""
    if not is_timm_model(name):
        hrnets = ", ".join(sorted(n for n in timm_model_names() if n.startswith("hrnet")))
        raise UserError(
            f"{key}={name!r} is not a timm model; HRNet names are: {hrnets} "
            "(any timm model with features_only works, e.g. resnet18)"
        )
