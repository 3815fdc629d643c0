"""Benchmark: DB targets and DB post-processing, fast path vs plain reference (tests/reference), on the real receipts.

    python bench/bench_targets_postprocess.py --data ../shared/data/receipts-sroie --image-size 1024 [--json out.json]

Each receipt is resized so that its longest side is ``--image-size`` (polygons scaled alike; images are
not decoded, only their size is read). Targets are built on the padded S x S canvas. Post-processing
runs on a realistic probability map made from the ground truth (``reference.receipts.synthetic_prob``).
A second targets row rotates every polygon by 10 degrees about the image centre (no axis-aligned
edges: the general distance path). Polygon mode has a third row, ``libs``: only the OpenCV and pyclipper
calls its definition makes (``library_calls``), the floor for an exact implementation on those libraries.
Single thread (cv2, torch). Per image the best of ``--repeats`` runs is kept, in wall-clock time and in
the thread's CPU time (the latter is what a busy machine distorts least); the table gives median / min /
max over images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pyclipper

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from ocr.postprocess.db_postprocess import DBPostProcessor, PostprocessParams  # noqa: E402
from ocr.postprocess.geometry import APPROX_EPSILON, POLYGON_SHIFT, new_clipper  # noqa: E402
from ocr.postprocess.stages import candidates  # noqa: E402
from ocr.targets.db_targets import make_db_targets  # noqa: E402
from ocr.utils.errors import exit_on_user_error  # noqa: E402
from reference.postprocess_plain import postprocess_plain  # noqa: E402
from reference.receipts import load_receipts, rotated, synthetic_prob  # noqa: E402
from reference.targets_plain import make_db_targets_plain  # noqa: E402


def library_calls(prob: np.ndarray, params: PostprocessParams) -> Callable[[], object]:
    """The calls to OpenCV and pyclipper that polygon mode's definition makes for ``prob``, and nothing else
    (threshold, findContours, arcLength + approxPolyDP per contour, one pyclipper offset per kept candidate,
    its input lists made beforehand): a floor for any exact implementation built on these libraries."""
    found = candidates(prob, params.thresh, params.max_candidates, True, params.min_size)
    keep = np.flatnonzero((found.scores >= params.box_thresh) & (found.perimeters > 0)).tolist()
    paths = [
        (found.outlines[found.starts[i] : found.starts[i + 1]].tolist(),
         found.areas[i] * params.polygon_unclip_ratio / found.perimeters[i])
        for i in keep
    ]
    clipper = new_clipper(POLYGON_SHIFT)
    threshold = np.float32(params.thresh)

    def run() -> None:
        bitmap = np.greater(prob, threshold).view(np.uint8)
        contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            if len(contour) >= 4:
                cv2.approxPolyDP(contour, APPROX_EPSILON * cv2.arcLength(contour, True), True)
        for path, offset in paths:
            clipper.Clear()
            clipper.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
            clipper.Execute(offset)

    return run


def _best_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (this thread) time of ``repeats`` calls, in ms."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu = min(cpu, time.thread_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start)
    return wall * 1e3, cpu * 1e3


def _rows(task: str, timings: dict[str, list[tuple[float, float]]], extra: dict) -> list[dict]:
    plain_wall, plain_cpu = np.median(np.array(timings["plain"]), axis=0)
    rows = []
    for variant, values in timings.items():
        wall, cpu = np.array(values).T
        rows.append({
            "task": task, "variant": variant, "median_ms": float(np.median(wall)), "min_ms": float(wall.min()),
            "max_ms": float(wall.max()), "speedup_vs_plain": float(plain_wall / np.median(wall)),
            "cpu_median_ms": float(np.median(cpu)), "cpu_speedup_vs_plain": float(plain_cpu / np.median(cpu)),
            "images": len(values), **extra,
        })
    return rows


def bench_rows(data_dir: Path, image_size: int, repeats: int = 5) -> list[dict]:
    """Benchmark rows (task, variant, median/min/max ms per image, speed-up vs plain, ...)."""
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # torch plays no part in these functions; only its threads are pinned
        pass
    receipts = load_receipts(data_dir, image_size)
    size = image_size
    words = float(np.median([len(r.polygons) for r in receipts]))
    rows = []
    for task, polygon_sets in (
        ("targets", [r.polygons for r in receipts]),
        ("targets, rotated 10 deg", [rotated(r, 10.0, size) for r in receipts]),
    ):
        timings = {
            variant: [_best_ms(lambda p=polys: fn(p, size, size), repeats) for polys in polygon_sets]
            for variant, fn in (("fast", make_db_targets), ("plain", make_db_targets_plain))
        }
        rows += _rows(task, timings, {"median_polygons": words})

    rng = np.random.default_rng(0)
    maps = [(synthetic_prob(r, rng), r.scale) for r in receipts]
    for mode, use_polygon in (("postprocess polygon", True), ("postprocess box", False)):
        fast = DBPostProcessor(use_polygon=use_polygon)
        params = PostprocessParams(use_polygon=use_polygon)
        timings = {
            "fast": [_best_ms(lambda m=m, s=s: fast(m, s), repeats) for m, s in maps],
            "plain": [_best_ms(lambda m=m, s=s: postprocess_plain(m, s, params), repeats) for m, s in maps],
        }
        if use_polygon:
            timings["libs"] = [_best_ms(library_calls(m, params), repeats) for m, _ in maps]
        boxes = float(np.median([len(fast(m, s)[0]) for m, s in maps]))
        rows += _rows(mode, timings, {"median_boxes": boxes})
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of ``bench_rows`` output (ms per image; CPU = this thread's CPU time)."""
    lines = [
        f"{'task':24s} {'variant':7s} {'median':>7s} {'min':>7s} {'max':>7s} {'speed-up':>8s}"
        f" {'CPU med':>8s} {'CPU x':>6s}   (ms per image, best of repeats)"
    ]
    for row in rows:
        lines.append(
            f"{row['task']:24s} {row['variant']:7s} {row['median_ms']:7.2f} {row['min_ms']:7.2f} "
            f"{row['max_ms']:7.2f} {row['speedup_vs_plain']:7.1f}x {row['cpu_median_ms']:8.2f} "
            f"{row['cpu_speedup_vs_plain']:5.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="receipts folder (jsons/, images/)")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="runs per image; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with exit_on_user_error("bench_targets_postprocess"):
        rows = bench_rows(args.data, args.image_size, args.repeats)
    print(format_table(rows))
    print(f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
