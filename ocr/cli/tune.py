"""Command line for after training: cache validation maps, tune post-processing on them, predict submissions.

`python wandb_sweep.py SUBCOMMAND ...`, `ocr-tune`, `ocr-predict`. The subcommands import torch, Lightning and W&B
in their functions: the sweep launcher imports this module for its parser and starts without them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ocr.inference.tuned import choose_params, describe, run_params
from ocr.sweep.spec import METHODS
from ocr.training.val_cache import INDEX_FILE, cache_dir
from ocr.utils.display import wandb_images, write_pngs
from ocr.utils.env import run_command
from ocr.utils.errors import ArgumentParser, positive_int

EXAMPLES = """\
examples:
  %(prog)s build-cache outputs/2025-01-01/12-00-00
  %(prog)s tune-postprocess outputs/2025-01-01/12-00-00                   # grid: ~100 evenly spaced combinations
  %(prog)s tune-postprocess outputs/2025-01-01/12-00-00 --method bayes --count 100
  %(prog)s predict outputs/2025-01-01/12-00-00 --split test --postprocess tuned
  %(prog)s overlays outputs/2025-01-01/12-00-00 --images 4 --postprocess default thresh=0.2
"""
RUN_HELP = "training run directory, sweep trial folder (.sweeps/<sweep>/trials/<trial>), or a .ckpt inside a run"
POSTPROCESS_HELP = (
    "post-processing to use: 'tuned' (the run's tuned_postprocess.txt), 'default' (the run's config), "
    "optionally followed by KEY=VALUE edits (e.g. thresh=0.2 box_thresh=0.45); "
    "default: tuned when the run has been tuned, else default"
)


def default_workers() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def progress_bars(bars: ExitStack, desc: str, unit: str) -> Callable[[int], Callable[..., Any]]:
    """`progress(total)` for the tuning functions: a tqdm bar (on stderr) per call, closed with `bars`."""
    return lambda total: bars.enter_context(tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)).update


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("run", type=Path, metavar="RUN_DIR_or_CKPT", help=RUN_HELP)
    run.add_argument("--data", type=Path, help="dataset root (default: the run's dataset_base_path)")

    cache = sub.add_parser("build-cache", parents=[run], help="validate a run's best checkpoint once and cache its "
                           "probability maps", description="Run one validation pass with the run's best checkpoint (as "
                           "training does) and save the maps to RUN_DIR/val_cache/ for tune-postprocess.")
    cache.add_argument("--batch-size", type=positive_int, help="validation batch size (default: the run's)")
    cache.add_argument("--num-workers", type=int, help="data loader workers (default: the run's)")
    cache.add_argument("--device", help="the one torch device to validate on, also for a run trained on several "
                                        "(default: cuda when available, else cpu)")

    tune = sub.add_parser("tune-postprocess", parents=[run], help="search post-processing parameters on the cached "
                          "validation maps", description="Search models.head.postprocess.* on RUN_DIR/val_cache with "
                          "the sweeps engine; write RUN_DIR/tuned_postprocess.txt (Hydra overrides) and "
                          "tune_postprocess.json; log val/cleval_hmean_tuned to a W&B run grouped with the training "
                          "run's (when it logged to W&B).")
    tune.add_argument("--method", choices=METHODS, default="grid",
                      help="search method (default grid: each continuous range spread over evenly spaced "
                           "values, about --count combinations in all, sharing work between them: the fastest)")
    tune.add_argument("--count", type=positive_int, default=100,
                      help="combinations to score (default 100; a grid of listed values stops when done)")
    tune.add_argument("--config", type=Path, help="sweep YAML whose models.head.postprocess.* parameters give the "
                                                  "ranges (default: sweep_config.yaml)")
    tune.add_argument("--workers", type=positive_int, default=default_workers(),
                      help="scoring processes (default: all cores)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the random and bayes suggestions (default 0)")
    tune.add_argument("--build-cache", action="store_true", help="build the validation cache first when it is missing")
    tune.add_argument("--overlays", type=int, default=0, metavar="N",
                      help="also draw the first N validation images with the run's own and the tuned "
                           "post-processing")

    pred = sub.add_parser("predict", parents=[run],
                          help="predict a split's images and write the competition CSV and JSON",
                          description="Predict every image of a split with the run's checkpoint; write "
                                      "<split>_<label>.csv (filename,polygons) and .json; upload both as a W&B "
                                      "artifact of a run grouped with the training run's (when it logged to W&B).")
    pred.add_argument("--split", default="test",
                      help="split folder under DATA/images; every image in it is predicted, no labels needed "
                           "(default test)")
    pred.add_argument("--postprocess", nargs="+", metavar="CHOICE", help=POSTPROCESS_HELP)
    pred.add_argument("--out", type=Path, help="output folder (default RUN_DIR/submissions)")
    pred.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    pred.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    pred.add_argument("--num-workers", type=int, default=0, help="data loader workers (default 0)")
    pred.add_argument("--overlays", type=int, default=0, metavar="N", help="also draw the first N predicted images")

    over = sub.add_parser("overlays", parents=[run],
                          help="draw predicted and true polygons on cached validation images",
                          description="PNG overlays (true: green, predicted: red) of validation images post-processed "
                                      "from the cache, under RUN_DIR/overlays/<label>/; W&B images when the run "
                                      "logged to W&B.")
    over.add_argument("--images", type=positive_int, default=4, metavar="N",
                      help="the first N cached images (default 4)")
    over.add_argument("--names", nargs="+", metavar="NAME", help="these images instead (file names)")
    over.add_argument("--postprocess", nargs="+", metavar="CHOICE", help=POSTPROCESS_HELP)
    return parser


def cmd_build_cache(args: argparse.Namespace) -> int:
    from ocr.inference.maps import build_val_cache
    from ocr.inference.runs import resolve_run

    path, metrics = build_val_cache(resolve_run(args.run), args.data, args.batch_size, args.num_workers, args.device)
    print(f"cached {path} (val/cleval_hmean={metrics.get('val/cleval_hmean', float('nan')):.4f})")
    return 0


def _overlays(run_dir: Path, label: str, images: list[tuple[str, Any]]) -> None:
    """Write the overlays of post-processing `label` as PNGs under RUN_DIR/overlays/<label>/ and say where."""
    paths = write_pngs(run_dir / "overlays" / label, images)
    print(f"overlays ({label}): {len(paths)} PNGs in {run_dir / 'overlays' / label}")


def cmd_tune(args: argparse.Namespace) -> int:
    from ocr.inference.maps import build_val_cache, cached_overlays
    from ocr.inference.runs import load_run_config, post_training_run, post_training_where, resolve_run
    from ocr.tuning.tune import log_to_wandb, report, search

    ref = resolve_run(args.run)
    run_dir = ref.run_dir
    if args.build_cache and not (cache_dir(run_dir) / INDEX_FILE).is_file():
        print(f"building the validation cache of {run_dir} ...")
        build_val_cache(ref, args.data)
    with ExitStack() as bars:
        result = search(run_dir, args.method, args.count, args.config, args.workers, args.seed,
                        progress_bars(bars, "tune-postprocess", "combination"))
    print(report(result))
    params = {"default": run_params(load_run_config(run_dir)), "tuned": result.tuned}
    overlay_sets = cached_overlays(run_dir, args.data, params, None, args.overlays) if args.overlays > 0 else {}
    for label, images in overlay_sets.items():
        _overlays(run_dir, label, images)
    with post_training_run(run_dir, "tune-postprocess") as run:
        if run is not None:
            log_to_wandb(result, run)
            for label, images in overlay_sets.items():
                run.log(wandb_images(f"overlays/{label}", images,
                                     f"{label} post-processing ({describe(params[label])})"))
            hmean = result.tuned_scores["hmean"]
            print(f"W&B: logged val/cleval_hmean_tuned={hmean:.4f} and the tuned values to "
                  f"{post_training_where(run_dir, run)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import wandb

    from ocr.inference.maps import predict
    from ocr.inference.runs import post_training_run, post_training_where

    def progress(stream: Iterable[Any], total: int) -> Iterable[Any]:
        return tqdm(stream, total=total, desc=f"predict {args.split}", unit="image", dynamic_ncols=True)

    result = predict(args.run, args.split, args.postprocess, args.out, args.data, args.device, args.batch_size,
                     args.num_workers, args.overlays, progress)
    run_dir = result.run.run_dir
    print(f"post-processing: {result.label} ({describe(result.params)})")
    print(f"predicted {result.n_images} images, {result.n_polygons} polygons: "
          + ", ".join(str(p) for p in result.files))
    if result.n_boxed:
        print(f"{result.n_boxed} polygons of fewer than 4 points written as their 4-point minimum-area rectangle")
    if result.unreadable:
        print(f"warning: {len(result.unreadable)} unreadable images got empty predictions: "
              f"{', '.join(result.unreadable)}", file=sys.stderr)
    overlay_dir = (args.out or run_dir / "submissions") / f"overlays_{result.split}_{result.label}"
    if result.overlays:
        print(f"overlays: {len(write_pngs(overlay_dir, result.overlays))} PNGs in {overlay_dir}")
    with post_training_run(run_dir, "predict") as run:
        if run is not None:
            name = f"submission-{run.config['training_run_id']}"  # versions of one artifact per training run
            artifact = wandb.Artifact(name, type="submission",
                                      metadata={"split": result.split, "postprocess": result.params,
                                                "label": result.label})
            for path in result.files:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
            if result.overlays:
                run.log(wandb_images(f"predict/{result.split}", result.overlays, f"predicted ({result.label})"))
            print(f"W&B: {'saved' if run.offline else 'uploaded'} the submission as artifact {name} "
                  f"to {post_training_where(run_dir, run)}")
    return 0


def cmd_overlays(args: argparse.Namespace) -> int:
    from ocr.inference.maps import cached_overlays
    from ocr.inference.runs import load_run_config, post_training_run, post_training_where, resolve_run

    run_dir = resolve_run(args.run).run_dir
    label, params = choose_params(args.postprocess, load_run_config(run_dir), run_dir)
    images = cached_overlays(run_dir, args.data, {label: params}, args.names, args.images)[label]
    print(f"post-processing: {label} ({describe(params)})")
    _overlays(run_dir, label, images)
    with post_training_run(run_dir, "overlays") as run:
        if run is not None:
            run.log(wandb_images(f"overlays/{label}", images, f"{label} post-processing ({describe(params)})"))
            print(f"W&B: logged {len(images)} overlays to {post_training_where(run_dir, run)}")
    return 0


COMMANDS = {"build-cache": cmd_build_cache, "tune-postprocess": cmd_tune, "predict": cmd_predict,
            "overlays": cmd_overlays}


def main(argv: list[str] | None = None, prog: str = "ocr-tune") -> int:
    """Parse `argv` and run the subcommand; a user mistake prints one line and returns 2."""
    args = build_parser(prog).parse_args(argv)
    return run_command(f"{prog} {args.command}", lambda: COMMANDS[args.command](args))


def cli() -> None:
    """Console entry point `ocr-tune` (`build-cache`, `tune-postprocess`, `overlays`, `predict`)."""
    sys.exit(main())


def predict_cli() -> None:
    """Console entry point `ocr-predict` (the same as `python wandb_sweep.py predict`)."""
    sys.exit(main(["predict", *sys.argv[1:]], prog="ocr-predict"))
