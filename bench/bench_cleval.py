"""Per-image time of our CLEval against PyPI cleval on the real receipts, single process, one thread.

Ground truth: the receipts' quads scaled so each image's longest side is `--image-size`, rounded to
integers (PyPI cleval truncates coordinates). Detections: `reference.detections.perturb_detections` (tests/).

    python bench/bench_cleval.py --data ../shared/data/receipts-sroie --image-size 1024 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from ocr.metrics.cleval import score_image  # noqa: E402
from ocr.utils.errors import UserError, exit_on_user_error  # noqa: E402
from reference.cleval_pypi import reference_available, reference_scores  # noqa: E402
from reference.receipts import cleval_samples  # noqa: E402

_STARTUP = """
import time
t0 = time.perf_counter()
import numpy as np
from ocr.metrics.cleval import score_image
word = np.array([[0, 0], [40, 0], [40, 10], [0, 10]], np.float32)
score_image([word], ["abcd"], [word])
print(time.perf_counter() - t0)
"""


def _startup_seconds() -> float:
    """Fresh interpreter: import our metric and score one image."""
    out = subprocess.run([sys.executable, "-c", _STARTUP], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _row(impl: str, cpu_seconds: list[float], wall_seconds: list[float], startup_s: float) -> dict:
    """Summary of per-image times: CPU time of the process (median/min/max) and wall-clock median."""
    ms = np.array(cpu_seconds) * 1000
    return {"impl": impl, "images": len(ms), "median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
            "max_ms": float(ms.max()), "wall_median_ms": float(np.median(wall_seconds) * 1000),
            "startup_s": startup_s}


def bench_rows(data_dir: Path, image_size: int, repeats: int = 5) -> list[dict]:
    """One row per implementation: ms per image (median/min/max), start-up, speed-up and score agreement.

    Each image is scored `repeats` times and its best time counts. Times are the process's CPU time
    (one thread), which other processes on a shared machine do not inflate; the wall-clock median is
    reported beside it.
    """
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    samples = cleval_samples(Path(data_dir), np.random.default_rng(0), image_size)
    ours, seconds, cpu_seconds = [], [], []
    for gt, texts, det in samples:
        gt32, det32 = list(gt.astype(np.float32)), list(det.astype(np.float32))
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            score = score_image(gt32, texts, det32)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        ours.append((score.recall, score.precision, score.hmean))
        seconds.append(best)
        cpu_seconds.append(best_cpu)
    rows = [_row("ours", cpu_seconds, seconds, _startup_seconds())]
    rows[0]["gt_words_mean"] = float(np.mean([len(s[0]) for s in samples]))
    rows[0]["detections_mean"] = float(np.mean([len(s[2]) for s in samples]))
    if reference_available():
        ref = reference_scores([(gt, texts, det, [False] * len(gt)) for gt, texts, det in samples], repeats=repeats)
        row = _row("pypi cleval 0.1.1", ref["cpu_seconds"], ref["seconds"], ref["import_s"] + ref["first_call_s"])
        row["ours_speedup"] = row["median_ms"] / rows[0]["median_ms"]
        diff = np.abs(np.array(ours) - np.array(ref["scores"]))
        row["max_abs_diff"] = float(diff.max())
        row["images_equal_1e-6"] = int((diff.max(axis=1) <= 1e-6).sum())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="receipts in the competition layout")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timings per image; the best counts")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    with exit_on_user_error("bench_cleval"):
        if not (args.data / "jsons").is_dir():
            raise UserError(f"no jsons/ folder in {args.data}: pass the receipts folder (competition layout)"
                            " with --data")
    rows = bench_rows(args.data, args.image_size, args.repeats)
    print(f"CLEval detection, {rows[0]['images']} receipts at {args.image_size}px, "
          f"{rows[0]['gt_words_mean']:.0f} words / {rows[0]['detections_mean']:.0f} detections per image, 1 thread")
    print("per image, CPU ms (best of --repeats): median / min / max; wall-clock median beside")
    print(f"{'impl':<20}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'wall ms':>9}{'start-up s':>12}"
          f"{'ours faster':>12}{'max |diff|':>12}")
    for r in rows:
        speedup = f"{r['ours_speedup']:.1f}x" if "ours_speedup" in r else "-"
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "-"
        print(f"{r['impl']:<20}{r['median_ms']:>10.2f}{r['min_ms']:>9.2f}{r['max_ms']:>9.2f}{r['wall_median_ms']:>9.2f}"
              f"{r['startup_s']:>12.2f}{speedup:>12}{diff:>12}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
