"""Scoring post-processing parameters on a run's cached validation maps: mean per-image CLEval.

Post-processing runs in its two stages (`ocr.postprocess.stages`), and work is shared between combinations
only where the definition makes the result identical:

* the *candidates* of a map (contours, approximated polygons or quads, scores) depend on `thresh`, the mode,
  `max_candidates` (and `min_size` in box mode) only, so each image keeps the last few it made;
* `box_thresh` only drops candidates whose score is below it, before unclipping. So per image and *output
  key* (`thresh`, mode, `max_candidates`, `min_size`, the active mode's unclip ratio) the candidates are
  expanded once with the lowest `box_thresh` wanted (the *floor*), and any higher `box_thresh` is a filter
  on the returned scores;
* the CLEval score of an image is memoised on (output key, surviving candidates), which fixes the
  polygons exactly: combinations that produce the same polygons are scored once; the ground truth is
  prepared once per image.

After a search, `check` recomputes a combination the direct way (`DBPostProcessor` with its own
`box_thresh`, as validation does) and counts images whose polygons differ (expected: none).
Images are split into balanced shards, one per worker process; each worker opens the cache once
(memory-mapped) and keeps its per-image state for the whole search.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ocr.metrics.cleval import (
    Detections, GroundTruth, ImageScore, mean_scores, prepare_detections, prepare_ground_truth, score_detections,
    score_prepared,
)
from ocr.postprocess.db_postprocess import DBPostProcessor, PostprocessParams
from ocr.postprocess.stages import Candidates, candidates, expand
from ocr.tuning.cache import CachedImage, load_val_cache
from ocr.utils.errors import UserError

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
    """One cached image and the work already done on it: its map as float32 (converted once: numpy's
    float16 conversion costs milliseconds), its prepared ground truth, candidates, outputs and scores."""

    image: CachedImage
    found: OrderedDict[tuple, Candidates] = field(default_factory=OrderedDict)
    outputs: OrderedDict[tuple, Output] = field(default_factory=OrderedDict)
    scores: dict[tuple, tuple[float, float, float]] = field(default_factory=dict)
    _prob: np.ndarray | None = None
    _truth: GroundTruth | None = None

    @property
    def prob(self) -> np.ndarray:
        if self._prob is None:
            self._prob = np.asarray(self.image.prob, dtype=np.float32)
        return self._prob

    @property
    def truth(self) -> GroundTruth:
        if self._truth is None:
            self._truth = prepare_ground_truth(self.image.gt_polygons, self.image.gt_texts)
        return self._truth

    def _candidates(self, params: dict[str, Any]) -> Candidates:
        key = candidate_key(params)
        found = self.found.get(key)
        if found is None:
            found = candidates(self.prob, key[0], key[1], key[2], float(params["min_size"]))
            _remember(self.found, key, found, CANDIDATE_LRU)
        self.found.move_to_end(key)
        return found

    def _output(self, key: tuple, params: dict[str, Any], floor: float) -> Output:
        """The output for `key` expanded with a box_thresh <= `floor` (reused when one is kept)."""
        found = self.outputs.get(key)
        if found is None or found.floor > floor:
            polygons, scores = expand(self._candidates(params), floor, key[-1], float(params["min_size"]),
                                      self.image.scale, self.image.orig_hw)
            found = Output(floor, polygons, np.asarray(scores, dtype=np.float64))
            _remember(self.outputs, key, found, OUTPUT_LRU)
        self.outputs.move_to_end(key)
        return found

    def survivors(self, params: dict[str, Any], floor: float | None = None) -> tuple[tuple, Output, tuple[int, ...]]:
        """(memo key, output, positions of the polygons kept) of this image post-processed with `params`;
        `floor` <= box_thresh hints the lowest box_thresh still to come for the same output key."""
        key = output_key(params)
        box_thresh = float(params["box_thresh"])
        output = self._output(key, params, box_thresh if floor is None else min(floor, box_thresh))
        kept = tuple(np.flatnonzero(output.scores >= box_thresh).tolist())
        return (key, kept), output, kept

    def score(self, params: dict[str, Any], floor: float | None = None) -> tuple[float, float, float]:
        """(recall, precision, hmean) of this image post-processed with `params`."""
        memo, output, kept = self.survivors(params, floor)
        if memo not in self.scores:
            if output.measured is None:
                output.measured = prepare_detections(self.truth, output.polygons)
            self.scores[memo] = _triple(score_prepared(self.truth, output.measured, kept))
        return self.scores[memo]

    def check(self, params: dict[str, Any]) -> tuple[tuple[float, float, float], bool]:
        """Scores the direct way (`DBPostProcessor` with its own box_thresh), and whether its polygons
        equal the shared-work ones."""
        direct, _ = DBPostProcessor(**params)(self.prob, self.image.scale, self.image.orig_hw)
        _, output, kept = self.survivors(params)
        shared = [output.polygons[i] for i in kept]
        same = len(direct) == len(shared) and all(a.shape == b.shape and (a == b).all() for a, b in zip(direct, shared))
        return _triple(score_detections(self.truth, direct)), same


def _remember(cache: OrderedDict, key: tuple, value: Any, size: int) -> None:
    """Store `value` under `key`, dropping the least recently used entries beyond `size`."""
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


def _triple(score: ImageScore) -> tuple[float, float, float]:
    return score.recall, score.precision, score.hmean


def score_shard(states: Sequence[ImageState], batch: Sequence[dict[str, Any]]) -> np.ndarray:
    """(len(batch), len(states), 3) per-image scores of every combination in `batch`."""
    floors: dict[tuple, float] = {}
    for params in batch:
        key = output_key(params)
        floors[key] = min(floors.get(key, 1.0), float(params["box_thresh"]))
    out = np.empty((len(batch), len(states), 3), dtype=np.float64)
    for c, params in enumerate(batch):
        floor = floors[output_key(params)]
        for i, state in enumerate(states):
            out[c, i] = state.score(params, floor)
    return out


def check_shard(states: Sequence[ImageState], params: dict[str, Any]) -> tuple[np.ndarray, int]:
    """(len(states), 3) direct per-image scores of `params`, and how many images' polygons differ."""
    results = [state.check(params) for state in states]
    return np.array([r[0] for r in results], dtype=np.float64).reshape(-1, 3), sum(not r[1] for r in results)


def balanced_shards(costs: Sequence[float], n: int) -> list[list[int]]:
    """Indices split into `n` shards of similar total cost (largest first onto the lightest shard)."""
    heap = [(0.0, k) for k in range(n)]
    shards: list[list[int]] = [[] for _ in range(n)]
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        total, k = heapq.heappop(heap)
        shards[k].append(index)
        heapq.heappush(heap, (total + costs[index], k))
    return [sorted(s) for s in shards if s]


def _image_cost(image: CachedImage) -> float:
    """Rough relative cost of one image: map pixels (contours) plus words (unclip and CLEval)."""
    return image.prob.size / 5000.0 + len(image.gt_polygons)


def _worker(conn: Connection, run_dir: str, indices: list[int]) -> None:
    """Worker loop: receive batches of parameter dicts, answer with this shard's per-image scores."""
    try:
        images = load_val_cache(Path(run_dir)).images
        states = [ImageState(images[i]) for i in indices]
        gc.freeze()  # what the worker holds for the whole search stays out of the collector's full passes
        while (request := conn.recv()) is not None:
            kind, payload = request
            answer = score_shard(states, payload) if kind == "score" else check_shard(states, payload)
            conn.send(("ok", answer, time.process_time()))
    except EOFError:
        return
    except BaseException:  # noqa: BLE001 - any failure is reported to the parent, which raises it
        conn.send(("error", traceback.format_exc(), time.process_time()))


@dataclass(frozen=True)
class Check:
    """The direct path (`DBPostProcessor` + CLEval, as validation does) for one combination."""

    scores: dict[str, float]
    mismatched_images: int


class CacheEvaluator:
    """Mean per-image CLEval of parameter combinations on `run_dir`'s cache, over `workers` processes.

    Use as a context manager (workers are started on entry and stopped on exit). `workers=1` works
    in-process.
    """

    def __init__(self, run_dir: Path, workers: int = 1) -> None:
        self.run_dir = Path(run_dir)
        cache = load_val_cache(self.run_dir)
        if not cache.images:
            raise UserError(f"validation cache {cache.path} holds no images; rebuild it with `build-cache {run_dir}`")
        self.n_images = len(cache.images)
        self.shards = balanced_shards([_image_cost(im) for im in cache.images], max(1, min(workers, self.n_images)))
        self._local = [ImageState(im) for im in cache.images] if len(self.shards) == 1 else None
        self._workers: list[tuple[multiprocessing.Process, Connection]] = []
        self.worker_cpu_s: list[float] = []  # CPU seconds each worker process has used so far

    def __enter__(self) -> CacheEvaluator:
        if self._local is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["__main__", __name__])  # workers fork with the imports done
            else:
                context = multiprocessing.get_context("spawn")
            for shard in self.shards:
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child, str(self.run_dir), shard), daemon=True)
                process.start()
                child.close()
                self._workers.append((process, parent))
        return self

    def __exit__(self, *exc: object) -> None:
        for _, conn in self._workers:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for process, _ in self._workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        self._workers = []

    def _ask(self, kind: str, payload: Any) -> list[Any]:
        """Send one request to every worker; their answers in shard order."""
        if self._local is not None:
            return [score_shard(self._local, payload) if kind == "score" else check_shard(self._local, payload)]
        for _, conn in self._workers:
            conn.send((kind, payload))
        answers, cpu = [], []
        for process, conn in self._workers:
            try:
                status, answer, cpu_s = conn.recv()
            except EOFError:
                raise RuntimeError(f"a scoring worker (pid {process.pid}) died (exit code {process.exitcode})") from None
            if status != "ok":
                raise RuntimeError(f"a scoring worker failed:\n{answer}")
            answers.append(answer)
            cpu.append(cpu_s)
        self.worker_cpu_s = cpu
        return answers

    def per_image(self, params_list: Sequence[dict[str, Any]], progress: Progress | None = None) -> np.ndarray:
        """(len(params_list), n_images, 3) recall/precision/hmean per combination and image."""
        order = sorted(range(len(params_list)), key=lambda i: (output_key(params_list[i]), params_list[i]["box_thresh"]))
        table = np.empty((len(params_list), self.n_images, 3), dtype=np.float64)
        step = max(1, -(-len(order) // CHUNKS))
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            for shard, answer in zip(self.shards, self._ask("score", [params_list[i] for i in chunk])):
                table[np.ix_(chunk, shard)] = answer
            if progress:
                progress(len(chunk))
        return table

    def evaluate(self, params_list: Sequence[dict[str, Any]], progress: Progress | None = None) -> list[dict[str, float]]:
        """Mean per-image recall, precision and hmean of each combination (the competition's aggregate)."""
        return [_mean(rows) for rows in self.per_image(params_list, progress)]

    def check(self, params: dict[str, Any]) -> Check:
        """Score `params` the direct way and count images whose shared-work polygons differ (expected: 0)."""
        table = np.empty((self.n_images, 3), dtype=np.float64)
        mismatched = 0
        for shard, (scores, bad) in zip(self.shards, self._ask("check", params)):
            table[shard] = scores
            mismatched += bad
        return Check(_mean(table), mismatched)


def _mean(rows: np.ndarray) -> dict[str, float]:
    """`mean_scores` (the validation aggregate, same summation) of (n_images, 3) per-image scores."""
    return mean_scores(ImageScore(*map(float, row)) for row in rows)
