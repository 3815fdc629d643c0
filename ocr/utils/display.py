"""How results are shown to users: paths relative to the working directory when they lie below it, images and
figures as PNGs, and the side W&B runs that hold them (where each went, how to upload it)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ocr.utils.env import wandb_mode
from ocr.utils.errors import UserError, first_line


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


def sync_command(run: Any, before: Iterable[Path] = ()) -> str | None:
    """`wandb sync FOLDER...` that uploads offline run `run` (after the folders `before`); None for an online run."""
    return f"wandb sync {' '.join(map(str, [*before, Path(run.dir).parent]))}" if run.offline else None


def run_where(run: Any, note: str = "", before: Iterable[Path] = ()) -> str:
    """Where `run` logged to: `offline run ID (NOTE; upload with `wandb sync ...`)` or `run ID (NOTE; URL)`."""
    sync = sync_command(run, before)
    details = [note, f"upload with `{sync}`" if sync else run.url]
    return f"{'offline run' if sync else 'run'} {run.id} ({'; '.join(d for d in details if d)})"


@contextmanager
def wandb_run(job_type: str, **init: Any) -> Iterator[Any | None]:
    """A W&B run of `job_type` in the environment's mode (`init`: more wandb.init arguments), finished with its files
    complete on exit; None when W&B is disabled or the run cannot start (a warning says why)."""
    mode, run = wandb_mode(), None
    if mode != "disabled":
        import wandb  # deferred: only the commands that log to W&B load it

        try:  # silent: each command prints what it logged and where
            run = wandb.init(mode=mode, job_type=job_type, settings=wandb.Settings(silent=True, init_timeout=30),
                             **init)
        except Exception as err:  # noqa: BLE001 - wandb raises many types for network/auth problems
            print(f"warning: W&B: not logged (could not start a {job_type} run: {first_line(err)[:120]}); set "
                  "WANDB_MODE=offline to log offline and `wandb sync` later", file=sys.stderr)
    try:
        yield run
    finally:
        if run is not None:
            run.finish()
            wandb.teardown()  # finish() returns before wandb-core has written the offline .wandb file


def wandb_images(key: str, images: Iterable[tuple[str, Any]], caption: str = "") -> dict[str, Any]:
    """`{key/<stem of name>: wandb.Image}` for each (name, RGB array or PNG path), one key each: receipts differ in
    size, which W&B's image lists do not allow."""
    import wandb  # deferred: only the commands that log to W&B load it

    return {f"{key}/{Path(name).stem}": wandb.Image(image, caption=f"{name}: {caption}" if caption else None)
            for name, image in images}
