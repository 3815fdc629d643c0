"""CLEval over many images in a process pool kept alive across validation passes, overlapping other work.
`result` is the mean of per-image scores in the order the images were added, whatever the number of workers."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager

from ocr.metrics.cleval import ImageScore, Sample, mean_scores, score_image
from ocr.utils.processes import process_context


def score_samples(samples: Sequence[Sample]) -> list[ImageScore]:
    """Scores of `(gt_polygons, gt_texts, det_polygons[, gt_ignore])` samples, in order."""
    return [score_image(s[0], s[1], s[2], gt_ignore=s[3] if len(s) > 3 else None) for s in samples]


class CLEvalScorer(AbstractContextManager):
    """Per-image CLEval scores of one pass at a time (`workers <= 1`: in this process); `close()` stops the pool."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None
        self._parts: list[Future | list[ImageScore]] = []

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker processes now (otherwise they start at the first `add`)."""
        if self.workers > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=process_context())
            for future in [self._pool.submit(score_samples, []) for _ in range(self.workers)]:
                future.result()  # the workers have imported the metric

    def add(self, samples: Sequence[Sample]) -> None:
        """Queue images of the current pass (scored now when there is one worker, else in the background)."""
        if samples and self.workers == 1:
            self._parts.append(score_samples(samples))
        elif samples:
            self.start()
            self._parts.append(self._pool.submit(score_samples, list(samples)))

    def scores(self) -> list[ImageScore]:
        """Per-image scores of everything added since the last call, in order; starts a new pass."""
        parts, self._parts = self._parts, []
        return [score for part in parts for score in (part.result() if isinstance(part, Future) else part)]

    def result(self) -> dict[str, float]:
        """Mean recall, precision and hmean over the images of this pass (`mean_scores`); starts a new pass."""
        return mean_scores(self.scores())

    def close(self) -> None:
        """Stop the workers; pending work of the current pass is dropped."""
        self._parts = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
