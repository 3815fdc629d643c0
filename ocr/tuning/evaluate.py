"""Mean per-image CLEval of post-processing parameters on a run's cached validation maps, sharing work where the
result is identical: candidates are kept per `candidate_key`; per `output_key` they are expanded once with the lowest
`box_thresh` wanted (higher ones only filter the scores); scores are memoised. One worker process per shard of images.
"""

from __future__ import annotations

import gc
import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ocr.metrics.cleval import (
    Detections, GroundTruth, ImageScore, mean_scores, prepare_detections, prepare_ground_truth, score_prepared,
)
from ocr.postprocess.db_postprocess import PostprocessParams
from ocr.postprocess.stages import Candidates, candidates, expand
from ocr.training.val_cache import CachedImage, cache_dir, load_val_cache
from ocr.utils.errors import UserError
from ocr.utils.processes import process_context

OUTPUT_LRU = 8  # post-processing outputs kept per image
CANDIDATE_LRU = 16  # stage-1 candidate sets kept per image (about 10 KiB each)
CHUNKS = 20  # a batch is sent to the workers in about this many pieces (progress updates)
Progress = Callable[[int], None]


def candidate_key(params: dict[str, Any]) -> tuple:
    """What the candidates depend on (`min_size` only in box mode)."""
    use_polygon = bool(params["use_polygon"])
    return (float(params["thresh"]), int(params["max_candidates"]), use_polygon,
            None if use_polygon else float(params["min_size"]))


def output_key(params: dict[str, Any]) -> tuple:
    """What the polygons depend on besides `box_thresh` (the inactive mode's unclip ratio does not act)."""
    p = PostprocessParams(**params)
    return float(p.thresh), bool(p.use_polygon), int(p.max_candidates), float(p.min_size), float(p.unclip_ratio)


@dataclass
class Output:
    """One post-processing output with `box_thresh` = `floor`: polygons (original pixels) and scores, and
    (once scored) the polygons measured against the ground truth, from which any subset is scored."""

    floor: float
    polygons: list[np.ndarray]
    scores: np.ndarray
    measured: Detections | None = None


@dataclass
class ImageState:
    """One cached image and the work already done on it: its prepared ground truth (made on first use unless
    given), candidates, outputs and scores."""

    image: CachedImage
    truth: GroundTruth | None = None
    found: OrderedDict[tuple, Candidates] = field(default_factory=OrderedDict)
    outputs: OrderedDict[tuple, Output] = field(default_factory=OrderedDict)
    scores: dict[tuple, tuple[float, float, float]] = field(default_factory=dict)

    @cached_property
    def prob(self) -> np.ndarray:  # converted once: numpy's float16 conversion costs milliseconds
        return np.asarray(self.image.prob, dtype=np.float32)

    def _candidates(self, params: dict[str, Any]) -> Candidates:
        key = candidate_key(params)
        return _recent(self.found, key, CANDIDATE_LRU,
                       lambda: candidates(self.prob, *key[:3], float(params["min_size"])))

    def survivors(self, params: dict[str, Any], floor: float | None = None) -> tuple[tuple, Output, tuple[int, ...]]:
        """(memo key, output, positions of the polygons kept) of this image post-processed with `params`;
        `floor` <= box_thresh hints the lowest box_thresh still to come for the same output key."""
        key = output_key(params)
        box_thresh = float(params["box_thresh"])
        floor = box_thresh if floor is None else min(floor, box_thresh)

        def expanded() -> Output:  # with box_thresh `floor`, reused while a kept one has a floor <= it
            polygons, scores = expand(self._candidates(params), floor, key[-1], float(params["min_size"]),
                                      self.image.scale, self.image.orig_hw)
            return Output(floor, polygons, np.asarray(scores, dtype=np.float64))

        output = _recent(self.outputs, key, OUTPUT_LRU, expanded, lambda kept: kept.floor <= floor)
        kept = tuple(np.flatnonzero(output.scores >= box_thresh).tolist())
        return (key, kept), output, kept

    def score(self, params: dict[str, Any], floor: float | None = None) -> tuple[float, float, float]:
        """(recall, precision, hmean) of this image post-processed with `params`."""
        memo, output, kept = self.survivors(params, floor)
        if memo not in self.scores:
            if self.truth is None:
                self.truth = prepare_ground_truth(self.image.gt_polygons, self.image.gt_texts)
            if output.measured is None:
                output.measured = prepare_detections(self.truth, output.polygons)
            score = score_prepared(self.truth, output.measured, kept)
            self.scores[memo] = score.recall, score.precision, score.hmean
        return self.scores[memo]


def _recent(cache: OrderedDict, key: tuple, size: int, make: Callable[[], Any], usable: Callable | None = None) -> Any:
    """`cache[key]`, made by `make()` when missing or not `usable`; the `size` most recently used entries are kept."""
    value = cache.get(key)
    if value is None or (usable is not None and not usable(value)):
        value = cache[key] = make()
        while len(cache) > size:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return value


def score_shard(states: Sequence[ImageState], batch: Sequence[dict[str, Any]]) -> np.ndarray:
    """(len(batch), len(states), 3) per-image scores of every combination in `batch`."""
    keys = [output_key(params) for params in batch]
    floors: dict[tuple, float] = {}
    for key, params in zip(keys, batch):
        floors[key] = min(floors.get(key, 1.0), float(params["box_thresh"]))
    scores = [[state.score(params, floors[key]) for state in states] for key, params in zip(keys, batch)]
    return np.array(scores, dtype=np.float64).reshape(len(batch), len(states), 3)


def balanced_shards(costs: Sequence[float], n: int) -> list[list[int]]:
    """Indices split into `n` shards of similar total cost (largest first onto the lightest shard)."""
    heap = [(0.0, k) for k in range(n)]
    shards: list[list[int]] = [[] for _ in range(n)]
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        total, k = heapq.heappop(heap)
        shards[k].append(index)
        heapq.heappush(heap, (total + costs[index], k))
    return [sorted(s) for s in shards if s]


_shard: list[ImageState] = []  # a worker process's images


def _load_shard(run_dir: str, indices: list[int]) -> None:
    """Worker initializer: the shard's images, kept for the whole search."""
    images = load_val_cache(Path(run_dir))
    _shard.extend(ImageState(images[i]) for i in indices)
    gc.freeze()  # what the worker holds for the whole search stays out of the collector's full passes


def _score_loaded(batch: list[dict[str, Any]]) -> tuple[np.ndarray, float]:
    """This worker's per-image scores of `batch`, and the CPU seconds it has used so far."""
    return score_shard(_shard, batch), time.process_time()


class CacheEvaluator:
    """Mean per-image CLEval of parameter combinations on `run_dir`'s cache, over `workers` processes, one per shard
    (started on entering the context, stopped on leaving; one worker scores in-process)."""

    def __init__(self, run_dir: Path, workers: int = 1) -> None:
        self.run_dir = Path(run_dir)
        images = load_val_cache(self.run_dir)
        if not images:
            raise UserError(f"validation cache {cache_dir(run_dir)} holds no images; "
                            f"rebuild it with `build-cache {run_dir}`")
        self.n_images = len(images)
        costs = [im.prob.size / 5000.0 + len(im.gt_polygons) for im in images]  # map pixels (contours) + words (CLEval)
        self.shards = balanced_shards(costs, max(1, min(workers, self.n_images)))
        self._local = [ImageState(im) for im in images] if len(self.shards) == 1 else None
        self._workers: list[ProcessPoolExecutor] = []
        self.worker_cpu_s: list[float] = []  # CPU seconds each worker process has used so far

    def __enter__(self) -> CacheEvaluator:
        if self._local is None:
            context = process_context("__main__", __name__)  # workers fork with the imports done
            self._workers = [ProcessPoolExecutor(1, mp_context=context, initializer=_load_shard,
                                                 initargs=(str(self.run_dir), shard)) for shard in self.shards]
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self._workers:
            worker.shutdown(cancel_futures=True)
        self._workers = []

    def _score(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        """Per-image scores of `batch` from every shard, in shard order."""
        if self._local is not None:
            return [score_shard(self._local, batch)]
        answers = [future.result() for future in [worker.submit(_score_loaded, batch) for worker in self._workers]]
        self.worker_cpu_s = [cpu for _, cpu in answers]
        return [scores for scores, _ in answers]

    def evaluate(self, params_list: Sequence[dict[str, Any]],
                 progress: Progress | None = None) -> list[dict[str, float]]:
        """Mean per-image recall, precision and hmean of each combination (the validation aggregate)."""
        order = sorted(range(len(params_list)),
                       key=lambda i: (output_key(params_list[i]), params_list[i]["box_thresh"]))
        table = np.empty((len(params_list), self.n_images, 3), dtype=np.float64)
        step = max(1, -(-len(order) // CHUNKS))
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            for shard, answer in zip(self.shards, self._score([params_list[i] for i in chunk])):
                table[np.ix_(chunk, shard)] = answer
            if progress:
                progress(len(chunk))
        return [mean_scores(ImageScore(*map(float, row)) for row in rows) for rows in table]
