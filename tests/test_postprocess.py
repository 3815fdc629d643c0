"""DB post-processing: behaviour on hand-made maps, fast == plain on real-receipt and random maps."""

from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocr.postprocess.db_postprocess import DBPostProcessor, PostprocessParams, postprocess_plain
from ocr.utils.errors import UserError


def _bench():
    """The benchmark module, for its receipt loader and realistic map maker."""
    return importlib.import_module("bench.bench_targets_postprocess")


def run_both(prob: np.ndarray, scale: float = 1.0, orig_hw=None, **kwargs):
    """Fast result, after checking it is identical to the plain reference."""
    fast = DBPostProcessor(**kwargs)(prob, scale, orig_hw)
    plain = postprocess_plain(prob, scale, PostprocessParams(**kwargs), orig_hw)
    assert fast[1] == plain[1]
    assert len(fast[0]) == len(plain[0])
    for a, b in zip(fast[0], plain[0]):
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == 2
        np.testing.assert_array_equal(a, b)
    return fast


def blobs(shape: tuple[int, int], rects: list[tuple[int, int, int, int]], value: float = 0.9) -> np.ndarray:
    prob = np.zeros(shape, dtype=np.float32)
    for x0, y0, x1, y1 in rects:
        prob[y0:y1, x0:x1] = value
    return prob


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("use_polygon", [True, False])
def test_empty_and_full_maps(use_polygon: bool) -> None:
    assert run_both(np.zeros((40, 60), np.float32), use_polygon=use_polygon) == ([], [])
    polygons, scores = run_both(np.ones((40, 60), np.float32), use_polygon=use_polygon)
    assert len(polygons) <= 1 and scores in ([], [1.0])


@pytest.mark.parametrize("use_polygon", [True, False])
def test_nan_counts_as_zero(use_polygon: bool) -> None:
    prob = blobs((60, 80), [(10, 10, 50, 22), (10, 35, 70, 50)])
    holes = prob.copy()
    holes[12, 12:40] = np.nan  # inside a text region: lowers its score like zeros would
    holes[0:5, :] = np.nan
    zeros = np.nan_to_num(holes, nan=0.0)
    got = run_both(holes, use_polygon=use_polygon, box_thresh=0.5)
    want = run_both(zeros, use_polygon=use_polygon, box_thresh=0.5)
    assert got[1] == want[1] and len(got[1]) == 2 and min(got[1]) < 0.9
    for a, b in zip(got[0], want[0]):
        np.testing.assert_array_equal(a, b)
    assert run_both(np.full((20, 20), np.nan, np.float32), use_polygon=use_polygon) == ([], [])


def test_box_mode_recovers_an_unclipped_rectangle() -> None:
    prob = blobs((60, 100), [(20, 20, 80, 30)])  # pixels 20..79 x 20..29: contour 59 x 9
    (quad,), (score,) = run_both(prob, use_polygon=False)
    assert score == pytest.approx(0.9)
    offset = 59 * 9 * 1.5 / (2 * (59 + 9))  # box_unclip_ratio D = area * ratio / perimeter
    np.testing.assert_allclose(quad, [[20 - offset, 20 - offset], [79 + offset, 20 - offset],
                                      [79 + offset, 29 + offset], [20 - offset, 29 + offset]], atol=0.02)


def test_polygon_mode_unclips_by_polygon_ratio_only() -> None:
    prob = blobs((60, 100), [(20, 20, 80, 30)])
    (poly,), _ = run_both(prob, use_polygon=True, polygon_unclip_ratio=2.0, box_unclip_ratio=9.0)
    offset = 59 * 9 * 2.0 / (2 * (59 + 9))  # polygon mode unclips on the pixel grid: +-0.5 px
    assert poly[:, 0].min() == pytest.approx(20 - offset, abs=0.5)
    assert poly[:, 1].max() == pytest.approx(29 + offset, abs=0.5)
    (quad,), _ = run_both(prob, use_polygon=False, polygon_unclip_ratio=9.0, box_unclip_ratio=1.5)
    assert quad[:, 0].min() == pytest.approx(20 - 59 * 9 * 1.5 / 136, abs=0.02)


def test_output_is_in_original_coordinates_and_clipped() -> None:
    prob = blobs((60, 100), [(0, 20, 60, 40)])  # contour 59 x 19: D = 59 * 19 * 1.5 / 156
    (quad,), _ = run_both(prob, scale=0.5, use_polygon=False)
    offset = 59 * 19 * 1.5 / 156
    assert quad[:, 0].min() == 0 and quad[:, 1].min() == pytest.approx((20 - offset) / 0.5, abs=0.05)
    assert quad[:, 0].max() == pytest.approx((59 + offset) / 0.5, abs=0.05)
    (quad,), _ = run_both(prob, scale=0.5, orig_hw=(100, 110), use_polygon=False)
    assert quad[:, 0].max() == 110


def test_scores_are_means_inside_the_polygon_and_filter() -> None:
    prob = blobs((40, 80), [(5, 5, 70, 15)], value=0.6)
    prob[25:35, 5:70] = 0.8
    polygons, scores = run_both(prob, box_thresh=0.7)
    assert scores == [pytest.approx(0.8)]
    assert len(run_both(prob, box_thresh=0.5)[0]) == 2


def test_max_candidates_keeps_the_largest() -> None:
    prob = blobs((100, 100), [(5, 5, 30, 15), (5, 30, 90, 45), (5, 60, 50, 75), (60, 5, 95, 20)])
    polygons, _ = run_both(prob, max_candidates=2, use_polygon=False)
    widths = sorted(round(float(q[:, 0].max() - q[:, 0].min())) for q in polygons)
    assert len(polygons) == 2 and widths[0] > 45  # the 85- and 45-wide blobs, not the 25/35-wide ones


def test_small_regions_are_dropped() -> None:
    prob = blobs((40, 40), [(5, 5, 7, 30)])  # 2 px wide
    assert run_both(prob, use_polygon=False) == ([], [])
    assert len(run_both(prob, use_polygon=False, min_size=0)[0]) == 1  # 1 px short side, 2.4 after unclip


def test_float16_rounded_maps_work() -> None:
    prob = blobs((50, 80), [(10, 10, 70, 25)], value=0.77).astype(np.float16)
    assert len(run_both(prob.astype(np.float32))[0]) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"thresh": 1.0}, {"box_thresh": -0.1}, {"max_candidates": 0}, {"max_candidates": 2.5},
     {"box_unclip_ratio": -1}, {"polygon_unclip_ratio": float("nan")}, {"min_size": -2}],
)
def test_bad_parameters_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserError, match="models.head.postprocess"):
        DBPostProcessor(**kwargs)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        DBPostProcessor()(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="scale"):
        DBPostProcessor()(np.zeros((5, 5), np.float32), 0.0)


# ----------------------------------------------------------------------------- fast == plain


@pytest.fixture(scope="module")
def receipt_maps(receipts: Path) -> list[tuple[np.ndarray, float]]:
    """Realistic probability maps (blurred, noisy ground-truth kernels) of all 64 receipts at 1024."""
    bench = _bench()
    rng = np.random.default_rng(0)
    return [(bench.synthetic_prob(r, rng), r.scale) for r in bench.load_receipts(receipts, 1024)]



@pytest.mark.parametrize(
    "kwargs",
    [{"use_polygon": True}, {"use_polygon": False},
     {"use_polygon": True, "thresh": 0.2, "box_thresh": 0.5, "polygon_unclip_ratio": 1.6, "max_candidates": 20},
     {"use_polygon": False, "thresh": 0.4, "box_thresh": 0.6, "box_unclip_ratio": 2.2, "min_size": 5}],
)
def test_fast_equals_plain_on_real_receipt_maps(receipt_maps: list, kwargs: dict) -> None:
    found = sum(len(run_both(prob, scale, **kwargs)[0]) for prob, scale in receipt_maps)
    assert found > 10 * len(receipt_maps)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    blur=st.sampled_from([0.0, 1.0, 2.5]),
    use_polygon=st.booleans(),
    thresh=st.sampled_from([0.1, 0.3, 0.5]),
    box_thresh=st.sampled_from([0.0, 0.4, 0.7]),
    scale=st.sampled_from([1.0, 0.37, 2.0]),
    max_candidates=st.sampled_from([1, 5, 1000]),
    min_size=st.sampled_from([0, 3]),
)
def test_fast_equals_plain_on_random_maps(
    seed, shape, blur, use_polygon, thresh, box_thresh, scale, max_candidates, min_size
) -> None:
    rng = np.random.default_rng(seed)
    prob = rng.random(shape, dtype=np.float32)
    if blur:
        prob = cv2.GaussianBlur(prob, (0, 0), blur)
        prob = np.clip((prob - prob.mean()) * 6 + 0.5, 0, 1)
    if rng.random() < 0.2:
        prob[rng.random(shape) < 0.05] = np.nan
    run_both(prob.astype(np.float32), scale, use_polygon=use_polygon, thresh=thresh, box_thresh=box_thresh,
             max_candidates=max_candidates, min_size=min_size)
