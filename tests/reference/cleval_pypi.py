"""Per-image scores of the PyPI `cleval` package (the reference `ocr.metrics.cleval` is checked against).

The package runs in a child process: its Polygon3 dependency corrupts the refcount of True/False on
CPython 3.11, so an interpreter that imported it aborts at exit ("bool_dealloc"), and its numba JIT
costs seconds. The child reads samples (pickle on stdin), answers results (pickle on stdout) and
leaves with `os._exit`.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

_IMPORT_FAILED = 3  # the child's exit status when the package cannot be imported

# (gt_quads (M, 4, 2), gt_texts, det_quads (N, 4, 2), gt_dont_care (M,) bool)
RefSample = tuple[np.ndarray, Sequence[str], np.ndarray, Sequence[bool]]


def reference_available() -> bool:
    """Whether the PyPI `cleval` package is installed."""
    return importlib.util.find_spec("cleval") is not None


def reference_scores(samples: Sequence[RefSample], repeats: int = 1) -> dict:
    """PyPI cleval's per-image det recall/precision/hmean, and its timings.

    Returns {"scores": [(recall, precision, hmean), ...], "seconds" and "cpu_seconds": [per-image best of
    `repeats`, wall-clock and process CPU time], "import_s": float, "first_call_s": float (first image,
    numba JIT included)}. Raises ImportError when the package cannot be imported.
    """
    payload = pickle.dumps((list(samples), repeats))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__], input=payload, capture_output=True, env=env, check=False)
    if proc.returncode == _IMPORT_FAILED:
        raise ImportError(proc.stderr.decode().strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"PyPI cleval child failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return pickle.loads(proc.stdout)


def polygon_path_errors() -> dict[str, str]:
    """What PyPI cleval 0.1.1's polygon box type (`cleval.box_types.POLY`) does on one word scored by itself.

    Returns {"poly gt, poly det": ..., "quad gt, poly det": ...}: "ok" or the exception the package raises.
    In 0.1.1 both fail: POLY never sets the `scale` attribute `evaluation` reads (AttributeError), and a
    QUAD word against a POLY detection intersects a Polygon3 polygon with a shapely one (TypeError). POLY
    also returns `min(10, h / w) + 1e5` as its aspect ratio, so an unmatched polygon would be charged one
    character whatever its shape. So polygons are checked against hand-computed cases instead
    (tests/test_cleval.py, "concave").
    """
    proc = subprocess.run([sys.executable, __file__, "poly"], capture_output=True, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode == _IMPORT_FAILED:
        raise ImportError(proc.stderr.decode().strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"PyPI cleval child failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return pickle.loads(proc.stdout)


def _poly_child() -> None:
    try:
        from cleval.box_types import POLY, QUAD
        from cleval.eval_functions import evaluation
        from cleval.torchmetric import Options
    except ImportError as err:
        print(f"PyPI cleval cannot be imported: {err}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(_IMPORT_FAILED)
    options = Options(True, 1.0, 1.0, 0.5, 0.3)
    options.E2E = False
    word = [0.0, 0.0, 40.0, 0.0, 40.0, 10.0, 0.0, 10.0]
    cases = {"poly gt, poly det": lambda: (POLY(list(word), transcription="abcd"), POLY(list(word))),
             "quad gt, poly det": lambda: (QUAD(np.array(word), transcription="abcd"), POLY(list(word)))}
    out = {}
    for name, make in cases.items():
        try:
            gt, det = make()
            evaluation(options, [gt], [det])
            out[name] = "ok"
        except Exception as err:  # noqa: BLE001 - reported, not handled
            out[name] = f"{type(err).__name__}: {err}"
    sys.stdout.buffer.write(pickle.dumps(out))
    sys.stdout.flush()
    os._exit(0)


def _flat(quads: np.ndarray) -> np.ndarray:
    """(n, 4, 2) quads as the (n, 8) float64 rows the package expects."""
    return np.asarray(quads, dtype=np.float64).reshape(-1, 8)


def _child() -> None:
    """Score the samples on stdin with the PyPI package; write the results on stdout."""
    samples, repeats = pickle.loads(sys.stdin.buffer.read())
    t0 = time.perf_counter()
    try:
        import torch
        from cleval.torchmetric import CLEvalMetric
    except ImportError as err:
        print(f"PyPI cleval cannot be imported: {err}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(_IMPORT_FAILED)

    torch.set_num_threads(1)
    metric = CLEvalMetric()
    import_s = time.perf_counter() - t0

    def run(sample: RefSample) -> tuple[float, float, float]:
        gt, texts, det, dont_care = sample
        metric.update(_flat(det), _flat(gt), det_letters=[""] * len(det), gt_letters=list(texts),
                      gt_is_dcs=list(dont_care))
        out = metric.compute()
        metric.reset()
        return float(out["det_r"]), float(out["det_p"]), float(out["det_h"])

    t0 = time.perf_counter()
    if samples:
        run(samples[0])
    first_call_s = time.perf_counter() - t0
    scores, seconds, cpu_seconds = [], [], []
    for sample in samples:
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            result = run(sample)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        scores.append(result)
        seconds.append(best)
        cpu_seconds.append(best_cpu)
    sys.stdout.buffer.write(pickle.dumps({"scores": scores, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                          "import_s": import_s, "first_call_s": first_call_s}))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    _poly_child() if sys.argv[1:] == ["poly"] else _child()
