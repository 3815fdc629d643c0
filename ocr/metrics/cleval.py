"""CLEval detection scores: character-level recall, precision and hmean per image, averaged over images.

clovaai's CLEval (PyPI ``cleval==0.1.1``) restricted to detection:

* each ground-truth word is cut into ``n`` pseudo characters whose centres (PCCs) lie evenly on the line joining
  the midpoints of its left and right edges (top and bottom ones if width/height < ``VERTICAL_ASPECT_RATIO_THRESH``);
* a word/detection pair is a candidate when the detection holds one of the word's PCCs; its *area precision* is
  ``area(word ∩ det) / area(det)``;
* matches are one-to-one (the pair is the only candidate with area precision >= ``AP_CONSTRAINT`` for both the word
  and the detection), one-to-many (a word split over >= 2 such detections) and many-to-one (a detection holding PCCs
  of >= 2 words whose area precisions sum to >= ``AP_CONSTRAINT``);
* a PCC counts once however many matched detections hold it; a word matched by ``k`` detections costs ``k - 1``
  characters of recall, a detection matched to ``k`` words ``k - 1`` of precision; an unmatched detection adds
  ``min(round(0.5 + height/width), 10)`` false characters;
* don't-care words (``gt_ignore``) are left out, and so are detections lying on them (one area precision, or the sum
  of those of don't-care words whose PCCs they hold, >= ``AP_CONSTRAINT``; don't-care areas first lose their overlap
  with the other words).

Quad vertices are read as top-left, top-right, bottom-right, bottom-left: the order decides a word's reading
direction and an unmatched detection's width/height. Departures from the package:

* polygons of any vertex count ``N >= 3`` are measured as they are (the package keeps the first 4 points, truncated
  to integers); a non-quad is read through its minimum-area rectangle, clockwise from the top-left;
* a word without (or with an empty) transcription counts ``min(round(0.5 + long/short), 100)`` characters, from the
  sides of its minimum-area rectangle (Upstage's variant);
* degenerate polygons (< 3 points, non-finite coordinates, zero area) are dropped; a self-intersecting one is
  repaired with ``shapely.make_valid``, and PCC inclusion uses the even-odd rule on its rings;
* an image without ground-truth characters scores 1.0 everywhere when it has no detection either, else precision
  and hmean 0 and recall 1.0 (the package scores both cases 0).

The package's float32 area precisions, half-open point-in-polygon rule and float32/float64 sums are reproduced, so
threshold decisions agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numba
import numpy as np
import shapely

AP_CONSTRAINT = 0.3
VERTICAL_ASPECT_RATIO_THRESH = 0.5
MAX_PSEUDO_LENGTH = 100  # pseudo length of a word without transcription (Upstage variant)
MAX_DONT_CARE_LENGTH = 10  # pseudo length of a don't-care word (clovaai)
MAX_FP_CHARS = 10  # characters charged for one unmatched detection (clovaai)
_EPS = 1e-5  # clovaai's guard in aspect ratios

Polygons = Sequence[np.ndarray]
Texts = Sequence[str | None] | None
# (gt_polygons, gt_texts, det_polygons), optionally followed by gt_ignore
Sample = tuple[Polygons, Texts, Polygons] | tuple[Polygons, Texts, Polygons, Sequence[bool]]

_AP32 = np.float32(AP_CONSTRAINT)
_POLYGON_TYPE_ID = 3


@dataclass(frozen=True)
class ImageScore:
    """CLEval detection scores of one image, with the character counts they come from."""

    recall: float
    precision: float
    hmean: float
    gt_chars: int = 0  # characters of the (cared-for) ground-truth words
    det_chars: int = 0  # characters claimed by detections: PCCs held by matches + false characters
    found_chars: int = 0  # distinct ground-truth PCCs held by a matched detection
    split_penalty: float = 0.0  # recall granularity penalty (words split over several detections)
    merge_penalty: float = 0.0  # precision granularity penalty (detections covering several words)


@dataclass(frozen=True)
class _Shapes:
    """Usable polygons of one side of an image, in input order (degenerate ones left out)."""

    index: np.ndarray  # (n,) positions in the caller's list
    geoms: np.ndarray  # (n,) valid shapely polygons / multipolygons
    area: np.ndarray  # (n,) their areas, all > 0
    bounds: np.ndarray  # (n, 4) xmin, ymin, xmax, ymax
    quads: np.ndarray  # (n, 4, 2) the first four vertices as given (the polygon, where it is a quad)
    n_vertices: np.ndarray  # (n,) vertex count of each polygon
    simple: np.ndarray  # (n,) the polygon is valid as given (no repair was needed)
    convex: np.ndarray  # (n,) the polygon is a strictly convex quad
    upright: np.ndarray  # (n,) the polygon is an axis-aligned rectangle (so `bounds` is the polygon)
    edges: np.ndarray  # (E, 4) xi, yi, xj, yj of every ring edge (j is the vertex before i)
    edge_start: np.ndarray  # (n + 1,) offsets of each polygon's edges in `edges`


def _quads(shapes: _Shapes, which: np.ndarray) -> np.ndarray:
    """(m, 4, 2) reading quads of the polygons `which`: the quad, else its minimum-area rectangle clockwise (y down)
    from the top-left vertex (least x + y)."""
    which = np.asarray(which, dtype=np.int64)
    quads = shapes.quads[which].copy()
    others = np.flatnonzero(shapes.n_vertices[which] != 4)
    if len(others):
        rects = np.stack([_min_area_rect(shapely.get_coordinates(shapes.geoms[which[k]]))[0] for k in others])
        rects = np.where((_twice_signed_area(rects) < 0)[:, None, None], rects[:, ::-1], rects)
        order = (np.argmin(rects.sum(axis=2), axis=1)[:, None] + np.arange(4)) % 4
        quads[others] = np.take_along_axis(rects, order[..., None], axis=1)
    return quads


def _vertex_arrays(polygons: Sequence[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, 2) float64 vertices, counts and input positions of the finite (N, 2) polygons with N >= 3 once a repeated
    closing vertex is dropped."""
    if all(isinstance(p, np.ndarray) and p.ndim == 2 and p.shape[1] == 2 and len(p) for p in polygons):
        arrays, index = list(polygons), np.arange(len(polygons))  # e.g. post-processing output
    else:
        arrays, index = [], []
        for i, poly in enumerate(polygons):
            try:
                pts = np.asarray(poly, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if pts.ndim == 2 and pts.shape[1] == 2 and len(pts) > 0:
                arrays.append(pts)
                index.append(i)
        index = np.asarray(index, dtype=np.int64)
    if not arrays:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64), index
    coords = np.concatenate(arrays).astype(np.float64)
    counts = np.array([len(p) for p in arrays], dtype=np.int64)
    first = np.cumsum(counts) - counts
    last = first + counts - 1
    closed = (counts > 3) & (coords[first] == coords[last]).all(axis=1)
    keep_vertex = np.ones(len(coords), dtype=bool)
    keep_vertex[last[closed]] = False
    counts = counts - closed
    finite = np.logical_and.reduceat(np.isfinite(coords).all(axis=1), first)
    ok = finite & (counts >= 3)
    keep_vertex &= np.repeat(ok, counts + closed)
    return coords[keep_vertex], counts[ok], index[ok]


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry | None:
    """The polygons inside a `make_valid` result, as one geometry (None when there are none)."""
    parts = shapely.get_parts(shapely.get_parts(geom))
    parts = parts[shapely.get_type_id(parts) == _POLYGON_TYPE_ID]
    if len(parts) == 0:
        return None
    return parts[0] if len(parts) == 1 else shapely.multipolygons(parts)


def _clipped_area(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Area of subject[k] ∩ clip[k] for (P, 4, 2) strictly convex quads (Sutherland-Hodgman, all pairs at once)."""
    rows = np.arange(len(subject))[:, None]
    poly, n = subject, np.full(len(subject), 4)
    clip = np.where((_twice_signed_area(clip) < 0)[:, None, None], clip[:, ::-1], clip)  # inside: cross >= 0
    for e in range(4):
        a, b = clip[:, e][:, None], clip[:, (e + 1) % 4][:, None]
        k = np.arange(poly.shape[1])
        prev = (k - 1) % np.maximum(n, 1)[:, None]
        side = _cross(b - a, poly - a)
        side_prev = side[rows, prev]
        change = side_prev - side
        t = np.divide(side_prev, change, out=np.zeros_like(change), where=change != 0)[..., None]
        prev_point = poly[rows, prev]
        crossing = prev_point + t * (poly - prev_point)
        inside, valid = side >= 0, k < n[:, None]
        out = np.stack([crossing, poly], axis=2).reshape(len(poly), 2 * len(k), 2)
        keep = np.stack([valid & (inside != (side_prev >= 0)), valid & inside], axis=2).reshape(len(poly), 2 * len(k))
        n = keep.sum(axis=1)
        order = np.argsort(~keep, axis=1, kind="stable")[:, : max(int(n.max(initial=0)), 1)]
        poly = out[rows, order]
    k = np.arange(poly.shape[1])
    following = poly[rows, (k + 1) % np.maximum(n, 1)[:, None]]
    terms = np.where(k < n[:, None], _cross(poly, following), 0.0)
    return np.abs(terms.sum(axis=1)) / 2


def _area_in_rectangles(geoms: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Area of geoms[k] inside the box boxes[k] (xmin, ymin, xmax, ymax), by GEOS's ClipByRect (a ufunc)."""
    return shapely.area(shapely.lib.clip_by_rect(geoms, *boxes.T))


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z of the cross product of 2-vectors along the last axis."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _twice_signed_area(quads: np.ndarray) -> np.ndarray:
    """Shoelace sum of (n, K, 2) polygons: positive when clockwise on screen (y down)."""
    x, y = quads[..., 0], quads[..., 1]
    return (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)


def _min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Corners (4, 2) of the minimum-area rectangle around points, and its long/short side ratio."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    short, long_ = sorted(rect[1])
    return cv2.boxPoints(rect).astype(np.float64), (long_ / short if short > 0 else np.inf)


def _ring_edges(geom: shapely.Geometry) -> np.ndarray:
    """(E, 4) edges xi, yi, xj, yj of all rings of a (multi)polygon, j being the vertex before i."""
    rings = [shapely.get_coordinates(r) for r in shapely.get_rings(shapely.get_parts(geom))]
    return np.vstack([np.hstack([r, np.roll(r, 1, axis=0)]) for r in rings])


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Start offsets (n + 1,) of consecutive blocks of the given sizes."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def _prepare(polygons: Sequence[object]) -> _Shapes:
    """Validate, repair and index polygons (see module doc)."""
    coords, counts, index = _vertex_arrays(polygons)
    first = _offsets(counts)[:-1]
    quads = coords[np.minimum(first[:, None] + np.arange(4), len(coords) - 1)]  # the first four vertices
    step = np.roll(quads, -1, axis=1) - quads
    turn = _cross(step, np.roll(step, -1, axis=1))
    # a quad turning the same way, never straight, at all four vertices is valid: no GEOS check needed
    convex = (counts == 4) & ((turn > 0).all(axis=1) | (turn < 0).all(axis=1))
    upright = convex & ((step[..., 0] == 0) | (step[..., 1] == 0)).all(axis=1)  # every edge horizontal or vertical
    simple = convex.copy()
    geoms = np.empty(len(counts), dtype=object)
    geoms[convex] = shapely.polygons(quads[convex])
    previous = np.arange(len(coords)) - 1
    previous[first] = first + counts - 1
    edges = np.hstack([coords, coords[previous]])
    edge_counts = counts.copy()
    others = np.flatnonzero(~convex)
    if len(others):
        rings = np.repeat(np.arange(len(others)), counts[others])
        geoms[others] = shapely.polygons(shapely.linearrings(coords[np.repeat(~convex, counts)], indices=rings))
        valid = shapely.is_valid(geoms[others])
        simple[others] = valid
        if not valid.all():
            blocks = np.split(edges, first[1:])
            for k in others[~valid]:
                geoms[k] = _polygonal_part(shapely.make_valid(geoms[k]))
                blocks[k] = np.zeros((0, 4)) if geoms[k] is None else _ring_edges(geoms[k])
                edge_counts[k] = len(blocks[k])
            edges = np.vstack(blocks)
    area = shapely.area(geoms)
    usable = area > 0  # a repair that left no polygon gives None, whose area is NaN
    edges, edge_counts = edges[np.repeat(usable, edge_counts)], edge_counts[usable]
    bounds = shapely.bounds(geoms[usable]).reshape(-1, 4)
    return _Shapes(index[usable], geoms[usable], area[usable], bounds, quads[usable], counts[usable], simple[usable],
                   convex[usable], upright[usable], edges, _offsets(edge_counts))


def _aspect_ratio(quads: np.ndarray) -> np.ndarray:
    """clovaai's width/height of (n, 4, 2) quads: mean of top/bottom edges over mean of left/right edges."""
    step = np.roll(quads, -1, axis=1) - quads
    side = np.sqrt(step[..., 0] * step[..., 0] + step[..., 1] * step[..., 1])
    return ((side[:, 0] + side[:, 2]) / 2 + _EPS) / ((side[:, 1] + side[:, 3]) / 2 + _EPS)


def _char_counts(gt: _Shapes, quads: np.ndarray, texts: Sequence[str | None], dont_care: np.ndarray) -> np.ndarray:
    """Characters per word: its transcription's length, else a pseudo length from its shape."""
    counts = np.zeros(len(gt.index), dtype=np.int64)
    for k, i in enumerate(gt.index):
        text = texts[i]
        if text:
            counts[k] = len(text)
        else:
            side_ratio = _min_area_rect(shapely.get_coordinates(gt.geoms[k]))[1]
            counts[k] = min(round(0.5 + min(side_ratio, MAX_PSEUDO_LENGTH)), MAX_PSEUDO_LENGTH)
    ratio = _aspect_ratio(quads[dont_care])
    counts[dont_care] = np.minimum(np.rint(0.5 + np.maximum(ratio, 1 / ratio)), MAX_DONT_CARE_LENGTH)
    return counts


def _pseudo_char_centres(quads: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCCs of every word, (P, 2), and the word each belongs to, (P,)."""
    vertical = _aspect_ratio(quads) < VERTICAL_ASPECT_RATIO_THRESH
    q = np.where(vertical[:, None, None], np.roll(quads, 1, axis=1), quads)  # lt, rt, rb, lb
    start = (q[:, 0] + q[:, 3]) / 2
    unit = ((q[:, 1] + q[:, 2]) / 2 - start) / counts[:, None]
    owner = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    centres = start[owner] + unit[owner] / 2 + unit[owner] * rank[:, None]
    return centres, owner


def _points_inside(points: np.ndarray, det: _Shapes) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (point, detection) where the point is inside (Polygon3's even-odd crossing rule)."""
    order, boxes = np.argsort(points[:, 1], kind="stable"), det.bounds
    y_sorted = points[order, 1]
    lo = np.searchsorted(y_sorted, boxes[:, 1], side="left")
    n = np.searchsorted(y_sorted, boxes[:, 3], side="right") - lo
    d_idx = np.repeat(np.arange(len(boxes)), n)
    p_idx = order[np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(len(d_idx))]
    x = points[p_idx, 0]
    in_x = (boxes[d_idx, 0] <= x) & (x <= boxes[d_idx, 2])
    p_idx, d_idx = p_idx[in_x], d_idx[in_x]
    x, y = np.ascontiguousarray(points[p_idx, 0]), np.ascontiguousarray(points[p_idx, 1])
    inside = _crossing_rule(x, y, det.edges, det.edge_start, d_idx)
    return p_idx[inside], d_idx[inside]


@numba.njit(cache=True, nogil=True)
def _crossing_rule(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, edge_start: np.ndarray, d_idx: np.ndarray
) -> np.ndarray:
    """Whether (x[k], y[k]) is inside detection d_idx[k]: an odd number of its edges (xi, yi, xj, yj) straddle
    y half-open (yi <= y < yj or yj <= y < yi) with the crossing right of x, in float64 as Polygon3 computes it."""
    inside = np.zeros(len(x), dtype=np.bool_)
    for k in range(len(x)):
        px, py, odd = x[k], y[k], False
        for e in range(edge_start[d_idx[k]], edge_start[d_idx[k] + 1]):
            xi, yi, xj, yj = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
            if ((yi <= py) and (py < yj)) or ((yj <= py) and (py < yi)):
                if px < (xj - xi) * (py - yi) / (yj - yi) + xi:
                    odd = not odd
        inside[k] = odd
    return inside


def _subtract_words(dont_care: np.ndarray, gt: _Shapes) -> np.ndarray:
    """Don't-care geometries minus the cared-for words overlapping them."""
    geoms = gt.geoms.copy()
    cared = np.flatnonzero(~dont_care)
    for k in np.flatnonzero(dont_care):
        overlapping = cared[shapely.area(shapely.intersection(geoms[k], gt.geoms[cared])) > 0]
        if len(overlapping):
            geoms[k] = shapely.difference(geoms[k], shapely.union_all(gt.geoms[overlapping]))
    return geoms


def _area_precision(
    gt: _Shapes, gt_geoms: np.ndarray, reshaped: np.ndarray, det: _Shapes, g: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """float32 (G, D) matrix of area(gt ∩ det) / area(det) for the pairs (g, d) only (0 elsewhere);
    `reshaped` flags the `gt_geoms` that differ from `gt.geoms` (don't-care words less the others)."""
    ap = np.zeros((len(gt_geoms), len(det.geoms)), dtype=np.float32)
    if len(g) == 0:
        return ap
    inter = np.zeros(len(g))
    as_given = ~reshaped[g]
    rect = as_given & gt.upright[g] & det.simple[d]
    quads = as_given & ~rect & gt.convex[g] & det.convex[d]
    other = ~(rect | quads)
    if rect.any():
        inter[rect] = _area_in_rectangles(det.geoms[d[rect]], gt.bounds[g[rect]])
    if quads.any():
        inter[quads] = _clipped_area(det.quads[d[quads]], gt.quads[g[quads]])
    if other.any():
        inter[other] = shapely.area(shapely.intersection(gt_geoms[g[other]], det.geoms[d[other]]))
    ap[g, d] = inter / det.area[d]
    return ap


def _dont_care_detections(ap: np.ndarray, holds: np.ndarray, dont_care: np.ndarray) -> np.ndarray:
    """Detections that belong to don't-care words: one area precision or their float32 sum reaches the constraint."""
    rows = ap[dont_care]
    summed = np.cumsum(np.where(holds[dont_care], rows, np.float32(0)), axis=0, dtype=np.float32)
    if len(summed) == 0:
        return np.zeros(ap.shape[1], dtype=bool)
    return (rows >= _AP32).any(axis=0) | (summed[-1] >= _AP32)


def _match(ap: np.ndarray, holds: np.ndarray, gt_ok: np.ndarray, det_ok: np.ndarray) -> np.ndarray:
    """(G, D) match matrix: union of one-to-one, one-to-many and many-to-one matches among valid boxes."""
    valid = gt_ok[:, None] & det_ok[None, :]
    strong = (ap >= _AP32) & holds
    one_to_one = strong & (strong.sum(axis=1) == 1)[:, None] & (strong.sum(axis=0) == 1)[None, :]
    strong_valid = strong & valid
    one_to_many = strong_valid & (strong_valid.sum(axis=1) >= 2)[:, None]
    held_valid = holds & valid
    ap_sum = np.cumsum(np.where(held_valid, ap.astype(np.float64), 0.0), axis=0)
    ap_sum = ap_sum[-1] if len(ap_sum) else np.zeros(ap.shape[1])
    many_to_one = held_valid & ((held_valid.sum(axis=0) >= 2) & (ap_sum >= AP_CONSTRAINT))[None, :]
    return (one_to_one & valid) | one_to_many | many_to_one


def _false_chars(quads: np.ndarray) -> np.ndarray:
    """Characters charged for each detection if it stays unmatched."""
    return np.minimum(np.rint(0.5 + 1 / (_EPS + _aspect_ratio(quads))), MAX_FP_CHARS)


def _score(gt_chars: int, det_chars: int, found: int, split: float, merge: float) -> ImageScore:
    """Recall, precision, hmean from the character counts (module doc: images without ground truth)."""
    if gt_chars == 0:
        precision = 1.0 if det_chars == 0 else 0.0
        return ImageScore(1.0, precision, precision, gt_chars, det_chars, found, split, merge)
    recall = max(0.0, found - split) / gt_chars
    precision = max(0.0, found - merge) / det_chars if det_chars else 0.0
    hmean = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    return ImageScore(recall, precision, hmean, gt_chars, det_chars, found, split, merge)


@dataclass(frozen=True)
class GroundTruth:
    """One image's ground truth, prepared once for scoring any number of detection sets."""

    shapes: _Shapes
    dont_care: np.ndarray  # (n,) bool
    geoms: np.ndarray  # word shapes for area precision (don't-care words less the others)
    chars: int  # characters of the cared-for words
    centres: np.ndarray  # (P, 2) pseudo character centres
    owner: np.ndarray  # (P,) word of each centre


def prepare_ground_truth(
    gt_polygons: Polygons, gt_texts: Texts = None, gt_ignore: Sequence[bool] | None = None
) -> GroundTruth:
    """Validate and index one image's words (see `score_image` for the arguments)."""
    for name, values in (("gt_texts", gt_texts), ("gt_ignore", gt_ignore)):
        if values is not None and len(values) != len(gt_polygons):
            raise ValueError(f"{name} has {len(values)} entries for {len(gt_polygons)} gt_polygons")
    shapes = _prepare(gt_polygons)
    quads = _quads(shapes, np.arange(len(shapes.index)))
    texts = gt_texts if gt_texts is not None else [None] * len(gt_polygons)
    dont_care = np.zeros(len(shapes.index), bool) if gt_ignore is None else np.asarray(gt_ignore, bool)[shapes.index]
    counts = _char_counts(shapes, quads, texts, dont_care)
    centres, owner = _pseudo_char_centres(quads, counts)
    geoms = _subtract_words(dont_care, shapes) if dont_care.any() else shapes.geoms
    return GroundTruth(shapes, dont_care, geoms, int(counts[~dont_care].sum()), centres, owner)


@dataclass(frozen=True)
class Detections:
    """One image's detections prepared against its ground truth: any subset of them can then be scored
    without redoing the geometry (what a post-processing search needs across `box_thresh` values)."""

    shapes: _Shapes
    held: np.ndarray  # (n_words, n_dets) int: pseudo characters of each word inside each detection
    ap: np.ndarray  # (n_words, n_dets) float32 area precision, where it can matter (0 elsewhere)
    pcc_idx: np.ndarray  # (M,) pseudo characters inside a detection ...
    pcc_det: np.ndarray  # (M,) ... and that detection
    n_input: int  # length of the list the detections came from


def prepare_detections(truth: GroundTruth, det_polygons: Polygons) -> Detections:
    """Validate the detections and measure them against `truth` (PCC inclusion, area precisions)."""
    gt, dont_care = truth.shapes, truth.dont_care
    det = _prepare(det_polygons)
    n_gt, n_det = len(gt.index), len(det.index)
    pcc_idx, pcc_det = _points_inside(truth.centres, det)
    held = np.bincount(truth.owner[pcc_idx] * n_det + pcc_det, minlength=n_gt * n_det).reshape(n_gt, n_det)
    # area precision only matters where the detection holds a PCC of the word, or for don't-care words whose box
    # (xmin, ymin, xmax, ymax) shares interior area with the detection's
    needed = held > 0
    if dont_care.any():
        a, b = gt.bounds[dont_care], det.bounds
        hit = (a[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < a[:, None, 2])
        g, d = np.nonzero(hit & (a[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < a[:, None, 3]))
        needed[np.flatnonzero(dont_care)[g], d] = True
    ap = _area_precision(gt, truth.geoms, dont_care, det, *np.nonzero(needed))
    return Detections(det, held, ap, pcc_idx, pcc_det, len(det_polygons))


def score_prepared(truth: GroundTruth, dets: Detections, subset: Sequence[int] | None = None) -> ImageScore:
    """CLEval detection scores of the detections at positions `subset` of the prepared list (all if None);
    the same as `score_detections` on that sub-list."""
    det, dont_care, owner = dets.shapes, truth.dont_care, truth.owner
    cols = np.arange(len(det.index))
    if subset is not None:
        chosen = np.zeros(dets.n_input, dtype=bool)
        chosen[np.asarray(subset, dtype=np.int64)] = True
        cols = cols[chosen[det.index]]
    held, ap = dets.held[:, cols], dets.ap[:, cols]
    column = np.full(len(det.index), -1)
    column[cols] = np.arange(len(cols))
    inside = column[dets.pcc_det] >= 0
    pcc_idx, pcc_det = dets.pcc_idx[inside], column[dets.pcc_det[inside]]
    det_ok = ~_dont_care_detections(ap, held > 0, dont_care)
    matches = _match(ap, held > 0, ~dont_care, det_ok)
    found = len(np.unique(pcc_idx[matches[owner[pcc_idx], pcc_det]]))
    words_per_det = matches.sum(axis=0)
    split = float(np.maximum(matches.sum(axis=1) - 1, 0).sum())
    merge = float(np.maximum(words_per_det - 1, 0).sum())
    unmatched = np.flatnonzero(det_ok & (words_per_det == 0))
    det_chars = int(held[matches].sum() + _false_chars(_quads(det, cols[unmatched])).sum())
    return _score(truth.chars, det_chars, found, split, merge)


def score_detections(truth: GroundTruth, det_polygons: Polygons) -> ImageScore:
    """CLEval detection scores of `det_polygons` against prepared ground truth (same as `score_image`)."""
    return score_prepared(truth, prepare_detections(truth, det_polygons))


def score_image(
    gt_polygons: Polygons, gt_texts: Texts, det_polygons: Polygons, *, gt_ignore: Sequence[bool] | None = None
) -> ImageScore:
    """CLEval detection scores of one image; `gt_texts[i]` gives word i's character count (None or "": from
    its shape), `gt_ignore[i]` marks word i as don't-care."""
    return score_detections(prepare_ground_truth(gt_polygons, gt_texts, gt_ignore), det_polygons)


def mean_scores(scores: Iterable[ImageScore]) -> dict[str, float]:
    """The competition's aggregate: mean over images of recall, precision and hmean."""
    table = np.array([(s.recall, s.precision, s.hmean) for s in scores], dtype=np.float64)
    if len(table) == 0:
        raise ValueError("mean_scores needs at least one image score")
    recall, precision, hmean = table.mean(axis=0)
    return {"recall": float(recall), "precision": float(precision), "hmean": float(hmean)}
