"""`inspect-data`: what a dataset allows before a sweep spends GPU hours on it.

Before a sweep: images and words per split and the loader's problems; the word height at each image size and the
share of words below the targets' min_text_size; the hmean ceiling (ground-truth maps -> post-processing -> CLEval)
for the post-processing settings of the sweep config, in polygon and box mode; the image sizes worth sweeping.
Prints a table; writes a PNG (text-height histograms, the ceiling curve), overlays of the words lost at the smallest
size and optionally the figures as JSON; logs them to W&B (an offline run without a key).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from ocr.cli.tune import default_workers, progress_bars
from ocr.data.paths import ENV_VAR, dataset_root, resolve_dataset_root
from ocr.sweep.online import project_name
from ocr.tuning.ceiling import (
    DEFAULT_MARGIN, DEFAULT_SIZES, Inspection, inspect_dataset, load_settings, lost_overlays, report,
)
from ocr.utils.display import pyplot, run_where, save_figure, wandb_images, wandb_run, write_pngs
from ocr.utils.env import subcommand_main
from ocr.utils.errors import ArgumentParser, UserError, list_of, positive_int

COMMAND = "inspect-data"
CONSOLE = "ocr-inspect"
OVERLAYS = 3  # images drawn with their words lost at the smallest size
EXAMPLES = """\
examples:
  %(prog)s                                    # the dataset the sweep would use, val split
  %(prog)s --data ../shared/data/receipts-sroie --image-sizes 800,1024 --json figures.json
"""


def _margin(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    with suppress(ValueError):
        if 0.0 <= (value := float(text)) < 1.0:
            return value
    raise argparse.ArgumentTypeError(f"expected an hmean margin in [0, 1), got {text!r}")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1], epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help=f"dataset root (images/ + jsons/); default: {ENV_VAR} (environment or .env), else the "
                             "synthetic receipts training would use")
    parser.add_argument("--image-sizes", type=list_of(positive_int, "image sizes"), default=DEFAULT_SIZES,
                        metavar="N,...", help=f"image sizes to inspect (default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--split", default="val", help="split whose text size and ceiling are measured (default val)")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="sweep YAML whose models.head.postprocess.* ranges give the settings (ends and middle) "
                             "(default sweep_config.yaml)")
    parser.add_argument("--margin", type=_margin, default=DEFAULT_MARGIN, metavar="H",
                        help=f"recommend the sizes whose ceiling hmean is within H of the best "
                             f"(default {DEFAULT_MARGIN})")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the PNGs (default outputs/inspect-data/<dataset>-<split>)")
    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help="processes for the scan (default: all cores; fewer on small splits)")
    return parser


def figure_png(ins: Inspection, path: Path) -> Path:
    """Text-height histograms per size (min_text_size marked) and the ceiling curve per mode, as one PNG."""
    import numpy as np

    plt, minimum = pyplot(), ins.settings.min_text_size
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    every = np.concatenate([f.heights for f in ins.sizes] + [[minimum / 2, minimum * 2]])
    bins = np.geomspace(max(float(every.min()) * 0.95, 0.5), float(every.max()) * 1.05, 50)
    for f in ins.sizes:
        left.hist(f.heights, bins=bins, histtype="step", linewidth=1.6,
                  label=f"{f.image_size} px: {f.below_min:.1%} below {minimum:g} px")
    left.axvline(minimum, color="black", linestyle="--", linewidth=1)
    left.set(xscale="log", xlabel="word height (shorter side of its minAreaRect), input pixels", ylabel="words",
             title=f"{ins.split}: word height at each image size")
    ticks = [2.0**k for k in range(-1, 12) if bins[0] <= 2.0**k <= bins[-1]]  # plain numbers, not 3×10^0 4×10^0
    left.set_xticks(ticks, [f"{t:g}" for t in ticks])
    left.minorticks_off()
    left.legend(fontsize=8)
    sizes = [f.image_size for f in ins.sizes]
    for mode, marker in (("polygon", "o"), ("box", "s")):
        best = [f.ceiling[mode].scores["hmean"] for f in ins.sizes]
        worst = [f.ceiling[mode].worst_hmean for f in ins.sizes]
        right.plot(sizes, best, marker=marker, label=f"{mode} mode (best setting)")
        right.fill_between(sizes, worst, best, alpha=0.2)
    chosen = [f for f in ins.sizes if f.image_size in ins.recommendation.sizes]
    right.scatter([f.image_size for f in chosen], [f.best_hmean(ins.settings.modes) for f in chosen],
                  s=160, facecolors="none", edgecolors="red", label=f"recommended ({ins.recommendation.option})")
    right.set(xticks=sizes, xlabel="image size (longest side, px)", ylabel="CLEval hmean of ground-truth maps",
              title="hmean ceiling of ground-truth maps (band: worst to best setting)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path, dpi=100)


def log_to_wandb(ins: Inspection, png: Path, overlays: list[tuple[str, Path]]) -> None:
    """The figure, the overlays and the per-size table in a W&B run of job type inspect-data."""
    import wandb  # deferred: only logging needs it

    config = {"dataset": str(ins.root), "split": ins.split, "image_sizes": [f.image_size for f in ins.sizes],
              "min_text_size": ins.settings.min_text_size, "shrink_ratio": ins.settings.shrink_ratio,
              "sweep_config": str(ins.settings.config_path)}
    project = project_name(config=ins.settings.project)
    with wandb_run("inspect-data", project=project, config=config) as run:
        if run is None:
            return
        columns, rows = ins.rows()
        run.log({"inspect/figures": wandb.Image(png), "inspect/sizes": wandb.Table(columns=columns, data=rows),
                 **wandb_images("inspect/lost", overlays, f"words lost at {ins.sizes[0].image_size} px (red)")})
        run.summary["recommended_image_sizes"] = list(ins.recommendation.sizes)
        print(f"W&B: logged the figure, {len(overlays)} overlays and the table to {run_where(run)}")


def _dataset(data: Path | None, synthetic: dict[str, Any]) -> tuple[Path, str]:
    """(dataset root, where it came from) as the sweep's training would choose it."""
    if data is not None and not data.is_dir():
        raise UserError(f"dataset folder {data} (--data) does not exist: pass a folder holding images/ and jsons/")
    root = resolve_dataset_root(data)
    if root is not None:
        return root, ENV_VAR if data is None else "--data"
    return dataset_root(None, synthetic), "the synthetic default: no --data or DATASET_BASE_PATH"


def run(args: argparse.Namespace) -> int:
    """Inspect, print, write the files, log to W&B."""
    start = time.perf_counter()
    settings = load_settings(args.config)
    root, source = _dataset(args.data, settings.synthetic)
    print(f"inspect-data: {root} ({source}), split {args.split}, image sizes {','.join(map(str, args.image_sizes))}",
          flush=True)
    with ExitStack() as bars:
        ins = inspect_dataset(root, args.split, args.image_sizes, settings, args.workers, args.margin,
                              progress_bars(bars, "scan", "img"))
    print(report(ins))
    print(f"(figures in {time.perf_counter() - start:.1f} s)", flush=True)

    out = args.out or Path("outputs") / "inspect-data" / f"{root.name}-{args.split}"
    png = figure_png(ins, out / f"inspect_{args.split}.png")
    drawn = lost_overlays(ins, OVERLAYS)
    paths = write_pngs(out / f"lost_at_{ins.sizes[0].image_size}", drawn)
    print(f"figure: {png}" + (f"; overlays of lost words: {len(paths)} PNGs in {paths[0].parent}" if paths else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**ins.as_json(), "png": str(png), "overlays": [str(p) for p in paths]},
                                        indent=1) + "\n", encoding="utf-8")
        print(f"figures as JSON: {args.json}")
    log_to_wandb(ins, png, [(name, p) for (name, _), p in zip(drawn, paths)])
    return 0


def main(argv: list[str] | None = None, prog: str = "python wandb_sweep.py") -> int:
    """`inspect-data [options]` (the command word optional); a mistake prints one line and gives status 2."""
    return subcommand_main(COMMAND, build_parser, run, argv, prog)


def cli() -> None:
    """Console entry point `ocr-inspect` (the same as `python wandb_sweep.py inspect-data`)."""
    sys.exit(main([COMMAND, *sys.argv[1:]], prog=CONSOLE))


if __name__ == "__main__":
    cli()
