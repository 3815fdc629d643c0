"""The CPU side of a sweep, per image and per validation pass: DB targets, post-processing, CLEval.

    python bench/cpu_pipeline.py --data ../shared/data/receipts-sroie --image-size 1024 [--images 404] [--json out.json]

Prints one table: the per-image pieces (fast path vs the plain path kept for comparison; our CLEval vs PyPI
`cleval`), then a whole validation scoring pass as `ocr.training.module` runs it (post-processing each image,
handing each batch to the run's metric pool of 2 workers) over `--images` receipt-sized images made by
cycling the real receipts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "tests")]

import bench_cleval  # noqa: E402
import bench_targets_postprocess as btp  # noqa: E402

from ocr.metrics.scorer import CLEvalScorer  # noqa: E402
from ocr.postprocess.db_postprocess import DBPostProcessor  # noqa: E402
from ocr.utils.errors import exit_on_user_error  # noqa: E402
from reference.receipts import load_receipts, synthetic_prob  # noqa: E402


def validation_pass_row(data_dir: Path, image_size: int, images: int, workers: int = 2, batch: int = 8) -> dict:
    """Seconds for post-processing + CLEval over `images` receipt-sized maps, as one validation epoch runs them:
    each batch of `batch` maps is post-processed here and handed to the run's metric pool (`CLEvalScorer`,
    already started: it lives for the whole run), which scores it while the next batch is post-processed."""
    receipts = load_receipts(data_dir, image_size)
    rng = np.random.default_rng(0)
    maps = [(synthetic_prob(r, rng), r) for r in receipts]
    inputs = [maps[i % len(maps)] for i in range(images)]
    postprocess = DBPostProcessor(thresh=0.22, box_thresh=0.42)
    with CLEvalScorer(workers) as scorer:
        start = time.perf_counter()
        scorer.start()
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        post_s = 0.0
        for first in range(0, len(inputs), batch):
            tick = time.perf_counter()
            samples = []
            for prob, receipt in inputs[first : first + batch]:
                polygons, _ = postprocess(prob, receipt.scale)
                samples.append(([p / receipt.scale for p in receipt.polygons], None, polygons))
            post_s += time.perf_counter() - tick
            scorer.add(samples)
        scores = scorer.result()
        total_s = time.perf_counter() - start
    return {
        "task": f"validation pass, {images} images", "variant": f"{workers} metric workers", "seconds": total_s,
        "postprocess_s": post_s, "metric_wait_s": total_s - post_s, "pool_startup_s": startup_s, "hmean": scores["hmean"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="receipts folder (jsons/, images/)")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=404, help="images in the validation pass (404 = the competition's val)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per image for the per-image rows; the best is kept")
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with exit_on_user_error("cpu_pipeline"):
        piece_rows = btp.bench_rows(args.data, args.image_size, args.repeats)
        metric_rows = bench_cleval.bench_rows(args.data, args.image_size, args.repeats)
        pass_row = validation_pass_row(args.data, args.image_size, args.images)
    print(btp.format_table(piece_rows))
    print()
    print(f"{'CLEval':24s} {'impl':18s} {'median':>7s} {'min':>7s} {'max':>7s}   (ms per image)")
    for row in metric_rows:
        print(f"{'':24s} {row['impl']:18s} {row['median_ms']:7.2f} {row['min_ms']:7.2f} {row['max_ms']:7.2f}")
    print()
    print(f"{pass_row['task']}: {pass_row['seconds']:.2f} s ({pass_row['variant']}; post-processing "
          f"{pass_row['postprocess_s']:.2f} s in the loop, then {pass_row['metric_wait_s']:.2f} s waiting for the "
          f"metric; the pool's start-up, once per run, {pass_row['pool_startup_s']:.2f} s)")
    print(f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps({"pieces": piece_rows, "cleval": metric_rows, "validation_pass": pass_row}, indent=2))


if __name__ == "__main__":
    main()
