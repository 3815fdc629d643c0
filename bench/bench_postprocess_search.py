"""Time the post-processing search (`tune-postprocess`) on a realistic validation cache built from ground truth.

The cache: `--images` receipts (cycling through the real ones of `--data`, train and val), each resized so
its longest side is `--image-size`, with a probability map made from its words: DB shrunk kernels
(ocr.targets), a smooth random gain per region (so some words fall below box_thresh), Gaussian blur,
noise; float16, cropped, exactly what a run's cache holds. Then `--count` combinations of the
post-processing ranges of `sweep_config.yaml` are searched per method, and a table is printed.
Target (issue 5): 100 combinations over 404 images in <= 60 s on 2 cores.

    python bench/bench_postprocess_search.py --data ../shared/data/receipts-sroie --images 404 --count 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from ocr.data.annotations import load_split, split_paths  # noqa: E402
from ocr.data.transforms import fit_scale, orient_points, oriented_size, read_header, scaled_hw  # noqa: E402
from ocr.metrics.cleval import prepare_ground_truth, score_detections  # noqa: E402
from ocr.postprocess.db_postprocess import DBPostProcessor, PostprocessParams  # noqa: E402
from ocr.postprocess.stages import candidates, expand  # noqa: E402
from ocr.targets.db_targets import make_db_targets  # noqa: E402
from ocr.training.val_cache import write_val_cache  # noqa: E402
from ocr.tuning.evaluate import CacheEvaluator  # noqa: E402
from ocr.tuning.space import read_yaml, search_config  # noqa: E402
from ocr.tuning.search import run_search  # noqa: E402
from ocr.utils.errors import UserError, exit_on_user_error  # noqa: E402
from reference.scoring import direct_scores  # noqa: E402

FIXED = {"thresh": 0.22, "box_thresh": 0.42, "max_candidates": 1000, "use_polygon": True,
         "box_unclip_ratio": 1.3, "polygon_unclip_ratio": 1.8, "min_size": 3}
NAIVE_SAMPLE = (16, 3)  # images (spread over the receipts) x combinations timed the direct way, one process

def receipts(root: Path, image_size: int) -> list[dict]:
    """Metadata of every receipt of train and val (no pixel decoding): words in original and input pixels."""
    out = []
    for split in ("train", "val"):
        image_dir = split_paths(root, split)[0]
        for name, words in load_split(root, split).items():
            if not words:
                continue
            header = read_header(image_dir / name)
            width, height = oriented_size(header.size, header.orientation)
            scale = fit_scale((height, width), image_size)
            gt = [orient_points(w.points, header.orientation, header.size) for w in words]
            out.append({"image_name": name, "scale": scale, "orig_hw": (height, width),
                        "valid_hw": scaled_hw((height, width), scale), "gt_polygons": gt,
                        "gt_texts": [w.text for w in words]})
    if not out:
        raise UserError(f"no annotated receipts under {root}/images/{{train,val}}: pass --data DATASET_ROOT")
    return out


def fake_map(meta: dict, rng: np.random.Generator) -> np.ndarray:
    """A float16 probability map that looks like a trained DBNet's on this receipt."""
    h, w = meta["valid_hw"]
    polygons = [p * np.float32(meta["scale"]) for p in meta["gt_polygons"]]
    kernels = make_db_targets(polygons, h, w).prob_map
    gain = cv2.resize(rng.uniform(0.45, 1.0, (8, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    prob = cv2.GaussianBlur(kernels * gain, (0, 0), rng.uniform(1.2, 2.2))
    prob += rng.normal(0.0, 0.02, prob.shape).astype(np.float32)
    return np.clip(prob, 0.0, 1.0).astype(np.float16)


def build_cache(run_dir: Path, metas: list[dict], n_images: int, seed: int) -> None:
    """Write `n_images` maps (cycling through `metas`, each copy its own random map) as `run_dir`'s cache."""
    rng = np.random.default_rng(seed)

    def items():
        for k in range(n_images):
            meta = dict(metas[k % len(metas)])
            meta["image_name"] = f"{k:04d}_{meta['image_name']}"
            yield meta, fake_map(meta, rng)

    write_val_cache(run_dir, items())


def direct_path_ms(metas: list[dict], config: dict, seed: int) -> dict[str, float]:
    """CPU ms per (image, combination) of the direct path (no reuse, one thread), in its three steps:
    stage-1 candidates, stage-2 expand (unclip), CLEval against ground truth prepared once."""
    from ocr.tuning.search import draw_independent

    rng = np.random.default_rng(seed + 1)
    n_images, n_combos = NAIVE_SAMPLE
    step = max(1, len(metas) // n_images)
    maps = [(m, fake_map(m, rng).astype(np.float32), prepare_ground_truth(m["gt_polygons"], m["gt_texts"]))
            for m in metas[::step][:n_images]]
    combos = [{**FIXED, **values} for values in draw_independent({**config, "method": "random"}, n_combos)]
    DBPostProcessor(**FIXED)(maps[0][1], maps[0][0]["scale"])  # load the compiled kernels before timing
    spent = {"candidates": 0.0, "expand": 0.0, "cleval": 0.0}
    for p in combos:
        ratio = PostprocessParams(**p).unclip_ratio
        for meta, prob, truth in maps:
            t0 = time.thread_time()
            found = candidates(prob, p["thresh"], p["max_candidates"], p["use_polygon"], p["min_size"])
            t1 = time.thread_time()
            polygons, _ = expand(found, p["box_thresh"], ratio, p["min_size"], meta["scale"], meta["orig_hw"])
            t2 = time.thread_time()
            score_detections(truth, polygons)
            t3 = time.thread_time()
            for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2)):
                spent[key] += seconds
    return {key: 1000 * seconds / (len(maps) * len(combos)) for key, seconds in spent.items()}


def time_method(run_dir: Path, config: dict, count: int, workers: int, seed: int) -> dict:
    """Run one search on the cache and measure it (wall clock, CPU of the main and worker processes)."""
    start, main_cpu = time.perf_counter(), time.process_time()
    with CacheEvaluator(run_dir, workers) as evaluator:
        trials = run_search(config, count, FIXED, evaluator.evaluate, seed=seed)
        wall, main_cpu = time.perf_counter() - start, time.process_time() - main_cpu
        worker_cpu = list(evaluator.worker_cpu_s)
        best = max(trials, key=lambda t: t.hmean)
    return {"method": config["method"], "combinations": len(trials), "images": evaluator.n_images, "workers": workers,
            "wall_s": wall, "main_cpu_s": main_cpu, "worker_cpu_s": worker_cpu,
            "load_average_1min": os.getloadavg()[0], "best_hmean": best.hmean,
            "direct_check_same": direct_scores(run_dir, {**FIXED, **best.values}) == best.scores}


HEADER = (f"{'method':<8} {'combos':>6} {'images':>6} {'workers':>7} {'wall s':>8} {'main CPU s':>10} "
          f"{'worker CPU s':>14} {'load':>5} {'best hmean':>10} {'direct check':>12} {'<=60 s':>6}")


def row_text(r: dict) -> str:
    workers = "/".join(f"{c:.0f}" for c in r["worker_cpu_s"]) or "-"
    return (f"{r['method']:<8} {r['combinations']:>6} {r['images']:>6} {r['workers']:>7} {r['wall_s']:>8.1f} "
            f"{r['main_cpu_s']:>10.1f} {workers:>14} {r['load_average_1min']:>5.1f} {r['best_hmean']:>10.4f} "
            f"{'same' if r['direct_check_same'] else 'DIFFERS':>12} {'yes' if r['wall_s'] <= 60 else 'no':>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset root in the competition layout")
    parser.add_argument("--images", type=int, default=404, help="validation images in the cache (default 404)")
    parser.add_argument("--count", type=int, default=100, help="combinations per method (default 100)")
    parser.add_argument("--methods", nargs="+", default=["grid", "random", "bayes"], choices=["grid", "random", "bayes"],
                        help="search methods to time (grid: the YAML's ranges spread as tune-postprocess --method grid does)")
    parser.add_argument("--config", type=Path, default=REPO / "sweep_config.yaml", help="sweep YAML with the ranges")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes (default 2)")
    parser.add_argument("--image-size", type=int, default=1024, help="longest side of the maps (default 1024)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with exit_on_user_error("bench_postprocess_search"):
        metas = receipts(args.data, args.image_size)
        raw = read_yaml(args.config)
        steps = direct_path_ms(metas, search_config(raw, str(args.config), set(FIXED), "random"), args.seed)
        naive = sum(steps.values()) / 1000
        total = args.count * args.images * naive
        print(f"direct path (post-processing + CLEval per image and combination, no reuse, one thread): "
              f"{1000 * naive:.1f} ms each ("
              + ", ".join(f"{key} {ms:.2f}" for key, ms in steps.items()) + f" ms CPU), so {args.count} x {args.images} would take about {total:.0f} s on one core "
              f"({total / args.workers:.0f} s on {args.workers} with perfect scaling)", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-pp-") as tmp:
            run_dir = Path(tmp)
            start = time.perf_counter()
            build_cache(run_dir, metas, args.images, args.seed)
            size_mb = sum(f.stat().st_size for f in (run_dir / "val_cache").iterdir()) / 2**20
            print(f"cache: {args.images} images from {len(metas)} receipts, longest side {args.image_size}, "
                  f"{size_mb:.0f} MiB, built in {time.perf_counter() - start:.1f} s\n")
            print(HEADER, flush=True)
            rows = []
            for method in args.methods:
                config = search_config(raw, str(args.config), set(FIXED), method, grid_count=args.count)
                rows.append(time_method(run_dir, config, args.count, args.workers, args.seed))
                print(row_text(rows[-1]), flush=True)
    print("(worker CPU s: CPU time of each scoring process; load: 1-minute load average of the machine at the end;\n"
          " direct check: the best combination recomputed with DBPostProcessor as validation does gives the same scores)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "direct_path_ms": steps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
