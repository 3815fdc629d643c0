"""DB post-processing: behaviour on hand-made maps, fast == plain on real-receipt and random maps, the two
stages (candidates / expand) against the plain path, and each exact replacement against the library call
it stands for (pyclipper offsets, OpenCV measures, corners and masked means)."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import cv2
import numpy as np
import pyclipper
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocr.config.checks import RULES, check_value
from ocr.postprocess.db_postprocess import DBPostProcessor, PostprocessParams
from ocr.postprocess.geometry import polygon_score, quad_to_fixed, sanitised
from ocr.postprocess.packed import (
    box_points, offset_convex_quads, ordered_quads, outline_measures, overlapping, pixel_boxes, rect_array,
    region_scores,
)
from ocr.postprocess import stages
from ocr.postprocess.stages import Candidates, candidates, expand
from ocr.utils.collector import paused_gc
from ocr.utils.errors import UserError
from reference.postprocess_plain import ordered_corners, postprocess_plain, unclip_offset
from reference.receipts import load_receipts, synthetic_prob


def assert_same(fast, plain) -> None:
    """Identical polygons (float32 (N, 2), equal values) and scores."""
    assert fast[1] == plain[1]
    assert len(fast[0]) == len(plain[0])
    for a, b in zip(fast[0], plain[0]):
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == 2
        np.testing.assert_array_equal(a, b)


def run_both(prob: np.ndarray, scale: float = 1.0, orig_hw=None, **kwargs):
    """Fast result, after checking it is identical to the plain reference."""
    fast = DBPostProcessor(**kwargs)(prob, scale, orig_hw)
    assert_same(fast, postprocess_plain(prob, scale, PostprocessParams(**kwargs), orig_hw))
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
def test_bad_parameters_are_refused_by_the_config_rules(kwargs: dict) -> None:
    [(key, value)] = kwargs.items()
    with pytest.raises(UserError, match=re.escape(f"models.head.postprocess.{key}={value!r} must be")) as err:
        check_value(f"models.head.postprocess.{key}", value)
    assert "\n" not in str(err.value)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        DBPostProcessor()(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="scale"):
        DBPostProcessor()(np.zeros((5, 5), np.float32), 0.0)


# ----------------------------------------------------------------------------- fast == plain


@pytest.fixture(scope="module")
def receipt_maps(receipts: Path) -> list[tuple[np.ndarray, float]]:
    """Realistic probability maps (blurred, noisy ground-truth kernels) of all 64 receipts at 1024."""
    rng = np.random.default_rng(0)
    return [(synthetic_prob(r, rng), r.scale) for r in load_receipts(receipts, 1024)]



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
    prob = random_map(np.random.default_rng(seed), shape, blur)
    run_both(prob, scale, use_polygon=use_polygon, thresh=thresh, box_thresh=box_thresh,
             max_candidates=max_candidates, min_size=min_size)


def random_map(rng: np.random.Generator, shape: tuple[int, int], blur: float) -> np.ndarray:
    """Noise, optionally blurred into blobs; sometimes with NaN and +-inf pixels, sometimes float16-rounded."""
    prob = rng.random(shape, dtype=np.float32)
    if blur:
        prob = cv2.GaussianBlur(prob, (0, 0), blur)
        prob = np.clip((prob - prob.mean()) * 6 + 0.5, 0, 1)
    if rng.random() < 0.3:
        prob = prob.astype(np.float16).astype(np.float32)
    if rng.random() < 0.3:
        prob[rng.random(shape) < 0.05] = rng.choice([np.nan, np.inf, -np.inf])
    return prob.astype(np.float32)


# ----------------------------------------------------------------------------- the two stages


def plain_params(use_polygon: bool, box_thresh: float, ratio: float, **kwargs) -> PostprocessParams:
    return PostprocessParams(use_polygon=use_polygon, box_thresh=box_thresh, polygon_unclip_ratio=ratio,
                             box_unclip_ratio=ratio, **kwargs)


@pytest.mark.parametrize("use_polygon", [True, False])
def test_stages_equal_plain_for_each_box_thresh_and_unclip_ratio(receipt_maps: list, use_polygon: bool) -> None:
    found_any = 0
    for prob, scale in receipt_maps[::2]:
        found = candidates(prob, 0.3, 1000, use_polygon, 3)
        for box_thresh, ratio in [(0.5, 1.2), (0.7, 2.0), (0.8, 3.0)]:
            got = expand(found, box_thresh, ratio, 3, scale)
            assert_same(got, postprocess_plain(prob, scale, plain_params(use_polygon, box_thresh, ratio)))
            found_any += len(got[0])
    assert found_any > 10 * len(receipt_maps)


def test_polygon_candidates_serve_every_min_size(receipt_maps: list) -> None:
    prob, scale = receipt_maps[0]
    found = candidates(prob, 0.3, 1000, True, 3)
    counts = set()
    for min_size in (0, 3, 12, 20):
        got = expand(found, 0.6, 1.5, min_size, scale, (900, 700))
        assert_same(got, postprocess_plain(prob, scale, plain_params(True, 0.6, 1.5, min_size=min_size), (900, 700)))
        counts.add(len(got[0]))
    assert len(counts) > 1  # min_size did act


def test_expand_leaves_its_candidates_unchanged() -> None:
    prob = blobs((60, 100), [(10, 10, 80, 22), (10, 35, 60, 50)])
    found = candidates(prob, 0.3, 1000, False, 3)
    before = [getattr(found, name).copy() for name in ("outlines", "scores", "areas", "perimeters")]
    first = expand(found, 0.5, 1.5, 3, 0.5)
    expand(found, 0.5, 4.0, 0, 2.0)
    assert_same(expand(found, 0.5, 1.5, 3, 0.5), first)
    for array, name in zip(before, ("outlines", "scores", "areas", "perimeters")):
        np.testing.assert_array_equal(getattr(found, name), array)
    assert isinstance(found, Candidates) and found.map_hw == (60, 100) and len(first[0]) == 2


def test_paused_gc_restores_the_collector_when_nested_or_raising() -> None:
    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves it as it found it
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), paused_gc():
        1 / 0
    assert gc.isenabled()


def test_polygon_unclip_runs_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    class Recording:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.offsetter = pyclipper.PyclipperOffset(*args, **kwargs)

        def __getattr__(self, name: str) -> object:
            return getattr(self.offsetter, name)

        def Execute(self, delta: float) -> list:  # noqa: N802 - pyclipper's name
            seen.append(gc.isenabled())
            return self.offsetter.Execute(delta)

    monkeypatch.setattr(stages, "new_clipper", lambda shift: Recording(arc_tolerance=0.25 * (1 << shift)))
    found = candidates(blobs((60, 100), [(10, 10, 80, 22), (10, 35, 60, 50)]), 0.3, 1000, True, 3)
    assert len(expand(found, 0.5, 1.5, 3)[0]) == 2
    assert seen == [False, False] and gc.isenabled()


def test_stage_keys_are_checked() -> None:
    for name in ("thresh", "max_candidates", "min_size", "box_thresh", "box_unclip_ratio", "polygon_unclip_ratio"):
        assert f"models.head.postprocess.{name}" in RULES  # every setting the stages take has a config rule
    for name, value, rule in [("thresh", 1.0, "in [0, 1); DBNet uses 0.3"),
                              ("max_candidates", 0, "an integer >= 1; DBNet uses 1000"),
                              ("box_thresh", 1.5, "in [0, 1]; DBNet uses 0.7"),
                              ("box_unclip_ratio", -1.0, "a finite number >= 0"),
                              ("min_size", "3", "a finite number")]:
        with pytest.raises(UserError, match=re.escape(f"models.head.postprocess.{name}={value!r} must be {rule}")):
            check_value(f"models.head.postprocess.{name}", value)
    found = candidates(np.zeros((10, 10), np.float32), 0.3, 10, False, 3)
    with pytest.raises(ValueError, match="scale"):
        expand(found, 0.5, 1.5, 3, float("nan"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 80), st.integers(1, 80)),
    blur=st.sampled_from([1.0, 2.5]),
    use_polygon=st.booleans(),
    min_size=st.sampled_from([0, 3]),
)
def test_one_candidates_many_expands_on_random_maps(seed, shape, blur, use_polygon, min_size) -> None:
    prob = random_map(np.random.default_rng(seed), shape, blur)
    found = candidates(prob, 0.3, 1000, use_polygon, min_size)
    for box_thresh, ratio in [(0.0, 0.0), (0.4, 1.5), (0.7, 3.0)]:
        got = expand(found, box_thresh, ratio, min_size, 0.5)
        assert_same(got, postprocess_plain(prob, 0.5, plain_params(use_polygon, box_thresh, ratio, min_size=min_size)))


# ----------------------------------------------------------------------------- exact replacements


def random_rects(rng: np.random.Generator, count: int) -> list[tuple]:
    """minAreaRect results of random point sets and of random (often axis-aligned, tiny or thin) rects."""
    points = rng.random((count, 9, 2)).astype(np.float32) * rng.choice([2, 30, 300], (count, 1, 1)).astype(np.float32)
    rects = [cv2.minAreaRect(p + rng.random(2).astype(np.float32) * 900) for p in points]
    for _ in range(count):
        centre = rng.random(2) * 1000
        size = rng.random(2) * rng.choice([3.0, 40.0, 300.0])
        angle = float(rng.choice([-90.0, 0.0, 90.0, 45.0])) if rng.random() < 0.5 else rng.random() * 180 - 90
        rect = cv2.minAreaRect(cv2.boxPoints(((*centre,), (*size,), angle)))
        rects.append(rect)
    return rects


def test_round_offset_equals_pyclipper() -> None:
    rng = np.random.default_rng(1)
    quads, deltas = [], []
    for rect in random_rects(rng, 1500):
        quad = np.array(ordered_corners(rect), np.float32)
        offset = unclip_offset(quad, float(rng.choice([0.01, 0.5, 1.5, 4.0])))
        quads.append(quad_to_fixed(quad))
        deltas.append(np.nan if offset is None else offset * 256)
    quads += list(rng.integers(0, 3000, (500, 4, 2)))  # concave, crossed and degenerate quads too
    deltas += list(rng.random(500) * 2000)
    points, starts, done = offset_convex_quads(np.array(quads), np.array(deltas), 64.0)
    assert done.mean() > 0.6
    clipper = pyclipper.PyclipperOffset(arc_tolerance=64.0)
    for i in np.flatnonzero(done):
        clipper.Clear()
        clipper.AddPath(quads[i].tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        assert clipper.Execute(deltas[i]) == [points[starts[i] : starts[i + 1]].tolist()], (quads[i], deltas[i])
    assert np.all(starts[1:][~done] == starts[:-1][~done])


def test_outline_measures_equal_opencv() -> None:
    rng = np.random.default_rng(2)
    outlines = [rng.integers(-5, 2000, (n, 2)).astype(np.int32) for n in rng.integers(1, 30, 300)]
    outlines += [(rng.random((4, 2)) * rng.choice([0.01, 10.0, 900.0])).astype(np.float32) for _ in range(300)]
    outlines.append(np.zeros((0, 2), np.float32))
    starts = np.concatenate([[0], np.cumsum([len(o) for o in outlines])]).astype(np.int64)
    areas, perimeters = outline_measures(np.concatenate(outlines).astype(np.float32), starts)
    for outline, area, perimeter in zip(outlines[:-1], areas, perimeters):
        assert area == abs(cv2.contourArea(outline)) and perimeter == cv2.arcLength(outline, True)
    assert areas[-1] == perimeters[-1] == 0.0


def test_box_points_and_ordered_quads_equal_opencv_and_ordered_corners() -> None:
    rects = random_rects(np.random.default_rng(3), 1000)
    corners = box_points(rect_array(rects))
    np.testing.assert_array_equal(corners, np.array([cv2.boxPoints(r) for r in rects]))
    np.testing.assert_array_equal(ordered_quads(corners), np.array([ordered_corners(r) for r in rects], np.float32))


@pytest.mark.parametrize("kind", ["float32", "float16", "tiny", "large", "non-finite"])
def test_region_scores_equal_polygon_score(kind: str) -> None:
    rng = np.random.default_rng(4)
    prob = rng.random((120, 160), dtype=np.float32)
    if kind == "float16":
        prob = prob.astype(np.float16).astype(np.float32)
    elif kind == "tiny":
        prob[rng.random(prob.shape) < 0.3] = 1e-30
    elif kind == "large":
        prob *= 3
    elif kind == "non-finite":
        prob[rng.random(prob.shape) < 0.02] = rng.choice([np.nan, np.inf, -np.inf])
    for shift in (0, 8):
        # overlapping polygons on the left (some partly outside), one polygon per 20 px cell on the right
        crowd = [rng.random((n, 2)) * [90, 150] - 15 for n in rng.integers(3, 9, 12)]
        cells = [rng.random((n, 2)) * 18 + [x, y] for x in range(80, 170, 20) for y in range(-10, 130, 20)
                 for n in rng.integers(3, 9, 1)]
        outlines = [(o * (1 << shift)).astype(np.int32) for o in crowd + cells]
        starts = np.concatenate([[0], np.cumsum([len(o) for o in outlines])]).astype(np.int64)
        boxes = pixel_boxes(np.concatenate(outlines), starts, shift, *prob.shape)
        assert 0 < overlapping(boxes).sum() < len(outlines)  # both ways of scoring are used
        want = [polygon_score(sanitised(prob), outline, shift) for outline in outlines]
        assert region_scores(prob, outlines, boxes, shift).tolist() == want
