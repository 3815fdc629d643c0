"""How results are shown to users: paths relative to the working directory when they lie below it, images and
figures as PNGs, the command that uploads an offline W&B run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ocr.utils.errors import UserError


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies below it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_pngs(out_dir: Path, images: Iterable[tuple[str, Any]]) -> list[Path]:
    """Write each (image name, RGB uint8 array) as `out_dir/<stem>.png`; returns the paths."""
    import cv2  # deferred: the sweep launcher shows paths and needs no OpenCV

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rgb in images:
        path = out_dir / f"{Path(name).stem}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise UserError(f"could not write {path}: check that the folder is writable")
        paths.append(path)
    return paths


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (figures are written to files, never shown)."""
    import matplotlib  # deferred: only the figure-writing commands need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int) -> Path:
    """Write matplotlib `fig` to `path` (folders created) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def sync_command(run: Any) -> str | None:
    """`wandb sync <folder>`, which uploads what was logged to offline run `run`; None for an online run."""
    return f"wandb sync {Path(run.dir).parent}" if run.offline else None
