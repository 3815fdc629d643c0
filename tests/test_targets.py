"""DB targets: the definition on hand-checked cases, fast == plain on real receipts and random polygons."""

from __future__ import annotations

import inspect
import math
import multiprocessing
import re
from pathlib import Path

import cv2
import numpy as np
import pyclipper
import pytest
import shapely
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocr.config.checks import check_combination, check_parameters
from ocr.postprocess.geometry import ARC_TOLERANCE_PX
from ocr.targets.collate import DBCollate
from ocr.targets.db_targets import DBTargets, make_db_targets
from ocr.targets.polygons import FIXED_ONE, FIXED_SHIFT, fill_rectangles, inset_rectangles
from ocr.utils.errors import UserError
from reference.receipts import load_receipts, rotated
from reference.targets_plain import make_db_targets_plain

FIELDS = ("prob_map", "prob_mask", "thresh_map", "thresh_mask")


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def assert_same(fast: DBTargets, plain: DBTargets) -> None:
    for name in FIELDS:
        a, b = getattr(fast, name), getattr(plain, name)
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b, err_msg=name)


def assert_well_formed(t: DBTargets, low: float = 0.3, high: float = 0.7) -> None:
    for name in FIELDS:
        assert np.isfinite(getattr(t, name)).all(), name
    for name in ("prob_map", "prob_mask", "thresh_mask"):
        assert set(np.unique(getattr(t, name))) <= {0.0, 1.0}, name
    assert t.thresh_map.min() >= np.float32(low) and t.thresh_map.max() <= np.float32(high)


# ----------------------------------------------------------------------------- the definition


def test_rectangle_matches_the_definition() -> None:
    poly = rect(10, 20, 50, 40)  # 40 x 20: D = 800 * 0.84 / 120 = 5.6
    t = make_db_targets([poly], 64, 80)
    offset = 800 * 0.84 / 120
    assert t.prob_map[30, 30] == 1 and t.prob_map[30, 10] == 0
    rows, cols = np.nonzero(t.prob_map)
    # shrunk rectangle [15.6, 44.4] x [25.6, 34.4]: pixel centres 16..44 and 26..34
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (16, 44, 26, 34)
    assert (t.prob_mask == 1).all()
    # on an edge -> thresh_max; half of D outside -> mid value; deep inside and far outside -> thresh_min
    assert t.thresh_map[20, 30] == pytest.approx(0.7)
    assert t.thresh_map[17, 30] == pytest.approx(0.3 + 0.4 * (1 - 3 / offset), abs=1e-6)
    assert t.thresh_map[30, 30] == pytest.approx(0.3)
    assert t.thresh_map[5, 30] == pytest.approx(0.3)
    # thresh_mask: the polygon dilated by D (corner rounded)
    assert t.thresh_mask[30, 30] == 1 and t.thresh_mask[20 - 5, 30] == 1 and t.thresh_mask[20 - 6, 30] == 0
    assert t.thresh_mask[20 - 4, 10 - 4] == 0  # distance 5.66 > D from the corner
    assert t.thresh_mask[20 - 3, 10 - 3] == 1


def test_thresh_map_equals_exact_segment_distance() -> None:
    rng = np.random.default_rng(3)
    poly = np.array([[12.3, 8.1], [70.2, 14.7], [64.9, 40.4], [30.5, 52.2], [8.8, 30.0]], dtype=np.float32)
    t = make_db_targets([poly], 64, 80, min_text_size=0)
    ring = shapely.LinearRing(poly.astype(np.float64))
    area, perimeter = shapely.Polygon(ring).area, ring.length
    offset = area * (1 - 0.4**2) / perimeter
    ys, xs = rng.integers(0, 64, 300), rng.integers(0, 80, 300)
    distance = shapely.distance(shapely.points(np.stack([xs, ys], 1).astype(np.float64)), ring)
    expected = 0.3 + 0.4 * (1 - np.minimum(distance / offset, 1))
    np.testing.assert_allclose(t.thresh_map[ys, xs], expected, atol=2e-5)
    inside = shapely.contains_xy(shapely.Polygon(ring), xs, ys)
    near = distance <= offset - 1e-3
    far = distance >= offset + 1e-3
    assert (t.thresh_mask[ys, xs][inside | near] == 1).all()
    assert (t.thresh_mask[ys, xs][~inside & far] == 0).all()
    assert (near | far).sum() > 250


def test_comb_with_many_equal_spans() -> None:
    # three teeth: five horizontal edges share the span x in [10, 30] (the separable terms merge them)
    comb = np.array(
        [[0, 0], [30, 0], [30, 5], [10, 5], [10, 10], [30, 10], [30, 15], [10, 15], [10, 20], [30, 20],
         [30, 25], [0, 25]], dtype=np.float32,
    ) + np.float32(4)
    fast = make_db_targets([comb], 40, 40, min_text_size=0)
    assert_same(fast, make_db_targets_plain([comb], 40, 40, min_text_size=0))
    assert fast.thresh_map[9, 25] == pytest.approx(0.7)  # on the edge y = 9, x in [14, 34]


def test_overlapping_polygons_take_the_max() -> None:
    a, b = rect(10, 10, 50, 30), rect(30, 20, 70, 40)
    both = make_db_targets([a, b], 64, 80).thresh_map
    each = np.maximum(make_db_targets([a], 64, 80).thresh_map, make_db_targets([b], 64, 80).thresh_map)
    np.testing.assert_array_equal(both, each)


def test_ignored_polygons_are_masked_and_skipped() -> None:
    poly = rect(10, 10, 50, 30)
    t = make_db_targets([poly], 48, 64, ignore=[True])
    assert t.prob_map.max() == 0 and t.thresh_mask.max() == 0 and (t.thresh_map == np.float32(0.3)).all()
    assert t.prob_mask[20, 30] == 0 and t.prob_mask[40, 30] == 1
    assert t.prob_mask.sum() == 48 * 64 - 41 * 21


def test_min_text_size_uses_the_rotated_rectangle() -> None:
    thin = cv2.boxPoints(((40, 40), (60, 6), 45)).astype(np.float32)  # extent ~46 x 46, short side 6
    assert make_db_targets([thin], 80, 80).prob_map.max() == 0
    assert make_db_targets([thin], 80, 80, min_text_size=5).prob_map.max() == 1


def test_degenerate_polygons_never_crash() -> None:
    polygons = [
        np.zeros((0, 2), np.float32),
        np.array([[5, 5]], np.float32),
        np.array([[5, 5], [30, 8]], np.float32),
        np.array([[5, 5], [10, 10], [15, 15], [20, 20]], np.float32),  # collinear
        np.array([[np.nan, 1], [20, 1], [20, 20]], np.float32),
        np.array([[np.inf, 1], [20, 1], [20, 20], [1, 20]], np.float32),
        rect(-1e7, -1e7, 1e7, 1e7),
        rect(-30, -30, 20, 15),  # partly outside
        rect(100, 100, 200, 200),  # fully outside
        np.array([[10, 10], [30, 10], [10.0000001, 10.0000001]], np.float32),  # sliver
    ]
    for i in range(len(polygons)):
        for p in (polygons[i : i + 1], polygons):
            fast, plain = make_db_targets(p, 40, 50), make_db_targets_plain(p, 40, 50)
            assert_same(fast, plain)
            assert_well_formed(fast)
    two_points = make_db_targets(polygons[2:3], 40, 50)
    assert two_points.prob_mask.min() == 0 and two_points.prob_map.max() == 0
    partly = make_db_targets(polygons[7:8], 40, 50)
    assert partly.prob_map[0, 0] == 1 and partly.thresh_map[15, 10] == pytest.approx(0.7)


def test_malformed_polygon_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        make_db_targets([np.zeros((4, 3), np.float32)], 10, 10)


def test_shrink_ratio_zero_and_equal_thresholds() -> None:
    t = make_db_targets([rect(10, 10, 50, 30)], 48, 64, shrink_ratio=0.0, thresh_min=0.5, thresh_max=0.5)
    assert (t.thresh_map == np.float32(0.5)).all() and t.prob_map.max() == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shrink_ratio": 1.0}, "collate_fn.shrink_ratio=1.0 must be in [0, 1); DBNet uses 0.4"),
    ({"shrink_ratio": -0.1}, "collate_fn.shrink_ratio=-0.1 must be in [0, 1); DBNet uses 0.4"),
    ({"thresh_min": 0.8}, "collate_fn.thresh_min=0.8, thresh_max=0.7 must satisfy 0 <= thresh_min <= thresh_max <= 1"),
    ({"thresh_max": 1.5}, "collate_fn.thresh_max=1.5 must be in [0, 1]; DBNet uses 0.7"),
    ({"min_text_size": -1}, "collate_fn.min_text_size=-1 must be >= 0; DBNet uses 8"),
    ({"shrink_ratio": "0.4"}, "collate_fn.shrink_ratio='0.4' must be a finite number"),
    ({"thresh_min": float("nan")}, "collate_fn.thresh_min=nan must be a finite number"),
])
def test_bad_parameters_are_refused_by_the_config_rules(kwargs: dict, message: str) -> None:
    defaults = {name: p.default for name, p in inspect.signature(DBCollate).parameters.items()}
    with pytest.raises(UserError, match=re.escape(message)) as err:
        check_combination({f"collate_fn.{k}": v for k, v in {**defaults, **kwargs}.items()})
    assert "\n" not in str(err.value)


def test_a_sweep_of_thresholds_is_checked_against_the_other_threshold() -> None:
    with pytest.raises(UserError, match=re.escape("sweep.yaml: collate_fn.thresh_min=0.8, thresh_max=0.7 must")):
        check_parameters({"collate_fn.thresh_min": {"values": [0.2, 0.8]}}, "sweep.yaml")
    check_parameters({"collate_fn.thresh_min": {"values": [0.2, 0.8]}, "collate_fn.thresh_max": {"value": 0.9}},
                     "sweep.yaml")


def test_out_arrays_are_filled_and_checked() -> None:
    polys = [rect(10, 10, 50, 30)]
    block = np.full((4, 48, 64), 7, dtype=np.float32)
    out = make_db_targets(polys, 48, 64, out=DBTargets(*block))
    assert out.prob_map.base is block or np.shares_memory(out.prob_map, block)
    assert_same(out, make_db_targets(polys, 48, 64))
    with pytest.raises(ValueError, match="prob_mask"):
        make_db_targets(polys, 48, 64, out=DBTargets(block[0], block[1, :10], block[2], block[3]))


# ----------------------------------------------------------------------------- closed forms vs the libraries


def test_rectangle_inset_equals_pyclipper() -> None:
    rng = np.random.default_rng(7)
    clipper = pyclipper.PyclipperOffset(arc_tolerance=ARC_TOLERANCE_PX * FIXED_ONE)
    bounds, offsets = [], []
    for _ in range(3000):
        x0, y0 = rng.integers(-2000, 250_000, 2)
        w, h = rng.integers(1, 80_000, 2)
        bounds.append((x0, y0, x0 + w, y0 + h))
        offsets.append(rng.uniform(0.0, 0.6) * min(w, h) / FIXED_ONE)
    insets, nonempty = inset_rectangles(np.array(bounds, dtype=np.int64), np.array(offsets))
    for (x0, y0, x1, y1), offset, inset, ok in zip(bounds, offsets, insets.tolist(), nonempty.tolist()):
        corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        if rng.random() < 0.5:
            corners = corners[::-1]
        clipper.Clear()
        clipper.AddPath(corners, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        expected = clipper.Execute(-offset * FIXED_ONE)
        assert ok == bool(expected)
        if not expected:
            continue
        (path,) = expected
        xs, ys = [p[0] for p in path], [p[1] for p in path]
        assert len(path) == 4 and inset == [min(xs), min(ys), max(xs), max(ys)]


def test_rectangle_fill_equals_fillpoly() -> None:
    rng = np.random.default_rng(8)
    for _ in range(3000):
        x0, y0 = (int(v) for v in rng.integers(-3000, 12_000, 2))
        x1, y1 = x0 + int(rng.integers(1, 6000)), y0 + int(rng.integers(1, 6000))
        by_slice, by_cv2 = np.zeros((40, 50), np.float32), np.zeros((40, 50), np.float32)
        fill_rectangles(by_slice, np.array([[x0, y0, x1, y1]]), 1.0)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.int32)
        cv2.fillPoly(by_cv2, [corners], 1.0, shift=FIXED_SHIFT)
        np.testing.assert_array_equal(by_slice, by_cv2)


# ----------------------------------------------------------------------------- fast == plain


def test_fast_equals_plain_on_every_real_receipt(receipts: Path) -> None:
    for receipt in load_receipts(receipts, 1024):
        assert_same(make_db_targets(receipt.polygons, 1024, 1024), make_db_targets_plain(receipt.polygons, 1024, 1024))


def test_fast_equals_plain_on_rotated_receipts(receipts: Path) -> None:
    for k, receipt in enumerate(load_receipts(receipts, 512)[::4]):
        polygons = rotated(receipt, 3.0 + 7 * k, 512)
        fast, plain = make_db_targets(polygons, 512, 512), make_db_targets_plain(polygons, 512, 512)
        assert_same(fast, plain)
        assert_well_formed(fast)


def turned(cx: float, cy: float, w: float, h: float, degrees: float) -> np.ndarray:
    return cv2.boxPoints(((cx, cy), (w, h), degrees)).astype(np.float32)


# Polygons on a 72 x 96 image that exercise the compiled path's edge windows and the max over polygons.
CHOSEN = {
    "rotated": [turned(30, 25, 50, 14, 7.0), turned(60, 45, 40, 20, 45.0), turned(80, 20, 30, 10, -80.0)],
    "image border": [rect(-12, 20, 30, 34), rect(70, -9, 110, 12), turned(95, 70, 40, 16, 20.0),
                     turned(0, 72, 30, 30, 30.0), rect(40, 60, 60, 90)],
    "overlapping": [rect(10, 10, 60, 30), rect(30, 20, 80, 45), turned(45, 30, 60, 12, 15.0),
                    np.array([[20, 40], [70, 38], [72, 66], [50, 50], [18, 64]], np.float32)],
    "tall and concave": [rect(5, 2, 19, 70), np.array([[30, 5], [90, 5], [90, 20], [45, 20], [45, 68], [30, 68]],
                                                    np.float32)],
    "far vertices": [np.array([[-3e6, -2e5], [3e6, 2e5], [3e6, 2e5 + 12], [-3e6, -2e5 + 12]], np.float32),
                     np.array([[-3e6, -1e6], [3e6, 1e6 + 50], [0, 4e6]], np.float32)],
}


@pytest.mark.parametrize("case", list(CHOSEN))
def test_fast_equals_plain_on_chosen_polygons(case: str) -> None:
    fast = make_db_targets(CHOSEN[case], 72, 96)
    assert_same(fast, make_db_targets_plain(CHOSEN[case], 72, 96))
    assert_well_formed(fast)
    assert (fast.thresh_mask > fast.prob_map).any() and (fast.thresh_map > np.float32(0.3)).any()


def test_strided_out_arrays_get_the_same_result() -> None:
    polygons = CHOSEN["overlapping"]
    wide = np.full((4, 72, 192), 7, dtype=np.float32)
    out = make_db_targets(polygons, 72, 96, out=DBTargets(*wide[:, :, ::2]))
    assert_same(out, make_db_targets_plain(polygons, 72, 96))
    assert (wide[:, :, 1::2] == 7).all()


def _targets_as_arrays(polygons: list[np.ndarray]) -> list[np.ndarray]:
    targets = make_db_targets(polygons, 72, 96)
    return [getattr(targets, name) for name in FIELDS]


def test_targets_in_a_forked_worker() -> None:
    polygons = CHOSEN["rotated"] + CHOSEN["overlapping"]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply(_targets_as_arrays, (polygons,))
    for name, array in zip(FIELDS, child):
        np.testing.assert_array_equal(array, getattr(make_db_targets_plain(polygons, 72, 96), name), err_msg=name)


coordinate = st.floats(-20, 90, allow_nan=False, width=32)
point = st.tuples(coordinate, coordinate)
polygon = st.one_of(
    st.lists(point, min_size=0, max_size=9).map(lambda p: np.array(p, np.float32).reshape(-1, 2)),
    st.tuples(coordinate, coordinate, st.floats(1, 60), st.floats(1, 40), st.sampled_from([0.0, 90.0, 12.5, -33.0]))
    .map(lambda r: cv2.boxPoints(((r[0], r[1]), (r[2], r[3]), r[4])).astype(np.float32)),
    st.tuples(coordinate, coordinate, st.integers(1, 60), st.integers(1, 40))
    .map(lambda r: rect(round(r[0]), round(r[1]), round(r[0]) + r[2], round(r[1]) + r[3])),
    st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)), min_size=3, max_size=10)
    .map(lambda p: np.array(p, np.float32)),  # lattice points: many axis-aligned edges
    st.sampled_from([np.array([[np.nan, 3], [9, 9], [3, 9]], np.float32), rect(2, 2, 2, 30)]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    polygons=st.lists(polygon, max_size=6),
    ignore=st.lists(st.booleans(), min_size=6, max_size=6),
    shape=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    shrink=st.sampled_from([0.0, 0.4, 0.9]),
    min_text=st.sampled_from([0, 3, 8]),
)
def test_fast_equals_plain_on_random_polygons(polygons, ignore, shape, shrink, min_text) -> None:
    args = (polygons, *shape, shrink, 0.3, 0.7, min_text, ignore[: len(polygons)])
    fast = make_db_targets(*args)
    assert_same(fast, make_db_targets_plain(*args))
    assert_well_formed(fast)


# ----------------------------------------------------------------------------- collate


def _sample(polygons: list[np.ndarray] | None, size: int = 32) -> dict:
    sample = {
        "image": torch.rand(3, size, size), "image_name": "x.jpg", "scale": 0.5, "valid_hw": (size, 20),
        "orig_hw": (2 * size, 40), "gt_polygons": [], "gt_texts": [],
    }
    if polygons is not None:
        sample["polygons"] = polygons
    return sample


def test_collate_builds_batched_targets() -> None:
    polys = [rect(4, 4, 28, 14)]
    batch = DBCollate(shrink_ratio=0.3, thresh_min=0.2, thresh_max=0.6)([_sample(polys), _sample([]), _sample(None)])
    assert batch["images"].shape == (3, 3, 32, 32)
    for k, name in enumerate(FIELDS):
        maps = batch[name]
        assert maps.shape == (3, 1, 32, 32) and maps.dtype == torch.float32
        expected = getattr(make_db_targets(polys, 32, 32, 0.3, 0.2, 0.6), name)
        np.testing.assert_array_equal(maps[0, 0].numpy(), expected)
        assert (maps[2] == 0).all()
    assert (batch["prob_mask"][1] == 1).all() and (batch["thresh_map"][1] == np.float32(0.2)).all()
    assert [set(m) for m in batch["meta"]] == [set(_sample(polys)) - {"image"}] * 2 + [set(_sample(None)) - {"image"}]
    assert batch["meta"][0]["polygons"] is polys and math.isclose(batch["meta"][0]["scale"], 0.5)
