"""What a dataset allows before any training: counts and problems, text size, and the hmean ceiling per image size.

The *ceiling* at an image size is the CLEval score of a model that reproduces its training targets exactly: each
image (read as training reads it) has its ground-truth map (the DB targets' shrunk kernels) post-processed and scored,
averaged over the images as validation does, for the post-processing settings of a sweep config, in polygon and box
mode. Words the targets leave out (too small, or nothing left after shrinking) are *lost*: training never shows them
as text, though a network may still find some.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import OmegaConf

from ocr.config.checks import DEFAULT_CONFIGS_DIR, check_value, sweep_base_config
from ocr.data.annotations import PREDICTION_SPLIT, Word, load_split, split_paths
from ocr.data.transforms import ImageDecodeError, fit_scale, load_resized, orient_points, scaled_hw
from ocr.inference.tuned import PREFIX
from ocr.metrics.cleval import ImageScore, mean_scores, prepare_ground_truth
from ocr.sweep.engine import plain
from ocr.sweep.spec import sweep_parameters
from ocr.targets.db_targets import allocate_targets, rasterise
from ocr.targets.polygons import prepare_polygons
from ocr.training.val_cache import CachedImage
from ocr.tuning.evaluate import ImageState, score_shard
from ocr.tuning.space import check_values, default_config_path, ends_and_middle, read_yaml, search_config
from ocr.utils.display import shown_path
from ocr.utils.errors import UserError
from ocr.utils.processes import process_context

DEFAULT_SIZES = (640, 800, 1024, 1280)
DEFAULT_MARGIN = 0.01  # hmean: sizes whose ceiling is within this of the best are recommended
MODES = {True: "polygon", False: "box"}
TARGET_KEYS = ("shrink_ratio", "min_text_size")  # the DB target parameters the ground-truth maps depend on
PERCENTILES = (5, 25, 50, 75, 95)
IMAGES_PER_WORKER = 64  # a worker process costs about as much to start as scoring this many images at 4 sizes
Progress = Callable[[], None]
Task = tuple[str, str, list[Word] | None]  # split, image path, its words (None: only check that it decodes)


@dataclass(frozen=True)
class Settings:
    """The training config's post-processing (`base`) and targets; the values the sweep tries per swept key."""

    config_path: Path
    base: dict[str, Any]
    swept: dict[str, list[Any]]
    modes: tuple[bool, ...]  # use_polygon values the sweep runs
    shrink_ratio: float
    min_text_size: float
    synthetic: dict[str, Any] = field(default_factory=dict)  # the training config's synthetic dataset
    project: str | None = None  # the sweep's W&B project

    def keys(self, use_polygon: bool) -> list[str]:
        """The swept keys that act in one mode (not the mode itself, nor the other mode's unclip ratio)."""
        inactive = "box_unclip_ratio" if use_polygon else "polygon_unclip_ratio"
        return [k for k in self.swept if k not in ("use_polygon", inactive)]

    def grid(self, use_polygon: bool) -> list[dict[str, Any]]:
        """Every complete post-processing setting of one mode (the other mode's unclip ratio left at its base)."""
        keys = self.keys(use_polygon)
        return [{**self.base, **dict(zip(keys, values)), "use_polygon": use_polygon}
                for values in itertools.product(*(self.swept[k] for k in keys))]


def load_settings(config_path: Path | None = None, configs_dir: Path = DEFAULT_CONFIGS_DIR) -> Settings:
    """The settings of the sweep YAML at `config_path` (default: `sweep_config.yaml`) over the training config with the
    values the sweep fixes (one listed value, or `key=value` in its command, e.g. `experiment=...`); swept target
    parameters keep their training values."""
    config_path = Path(config_path) if config_path else default_config_path()
    raw, where = read_yaml(config_path), str(config_path)
    parameters = raw.get("parameters") if isinstance(raw.get("parameters"), dict) else {}
    fixed = sweep_base_config(sweep_parameters({**raw, "parameters": parameters}, where), configs_dir)
    cfg = OmegaConf.to_container(OmegaConf.masked_copy(fixed, ["models", "collate_fn", "data"]), resolve=False)
    base = {k: v for k, v in cfg["models"]["head"]["postprocess"].items() if not k.startswith("_")}
    chosen = {str(k)[len(PREFIX):]: spec for k, spec in parameters.items() if str(k).startswith(PREFIX)}
    if chosen:
        search_config(raw, where, set(base), method="random")  # keys, specs and the engine's own checks
    swept = {key: ends_and_middle(PREFIX + key, spec, where) for key, spec in chosen.items()}
    check_values(swept, base, where)
    modes = tuple(dict.fromkeys(bool(v) for v in swept.get("use_polygon", [base["use_polygon"]])))
    targets = {key: float(cfg["collate_fn"][key]) for key in TARGET_KEYS}
    project = raw.get("project") if isinstance(raw.get("project"), str) else None
    return Settings(config_path, base, swept, modes, **targets, synthetic=dict(cfg["data"].get("synthetic") or {}),
                    project=project)


def check_image_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """The sizes sorted and without repeats; each must be a valid `image_size` of training."""
    for size in sizes:
        check_value("image_size", size)
    if not sizes:
        raise UserError("no image size given: pass e.g. --image-sizes 640,800,1024,1280")
    return tuple(sorted(set(int(s) for s in sizes)))


@contextmanager
def loader_messages() -> Iterator[list[str]]:
    """The warnings the data loader logs inside the block, collected (and not printed)."""
    logger, handler, messages = logging.getLogger("ocr.data"), logging.Handler(logging.WARNING), []
    handler.emit = lambda record: messages.append(record.getMessage())
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@dataclass(frozen=True)
class Job:
    """What each image is measured with: the image sizes, the target parameters and the settings to score."""

    sizes: tuple[int, ...]
    shrink_ratio: float
    min_text_size: float
    settings: tuple[dict[str, Any], ...]


@dataclass
class ImageResult:
    """One image: its decode error and warnings; for the inspected split, its words (original pixels) and their
    minAreaRect sides, and per size: the scale, the words the targets leave out, the scores of every setting."""

    split: str
    name: str
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    words: list[np.ndarray] = field(default_factory=list)
    sides: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (words, 2): shorter, longer
    scales: list[float] = field(default_factory=list)
    lost: list[np.ndarray] = field(default_factory=list)
    scores: np.ndarray | None = None  # (sizes, settings, 3)

    def polygons(self, k: int) -> list[np.ndarray]:
        """The words in input pixels at the `k`-th size, as the dataset has them."""
        return [(p * np.float32(self.scales[k])).astype(np.float32) for p in self.words]


def measure_image(job: Job, task: Task) -> ImageResult:
    """Decode the image of `task` at the smallest size (the decode check); with words, measure and score it at each
    size (an undecodable image as validation scores it: a blank map without words)."""
    split, path, words = task
    path = Path(path)
    result = ImageResult(split, path.name)
    with loader_messages() as result.notes:
        try:
            loaded = load_resized(path, job.sizes[0])
        except ImageDecodeError as err:
            result.error, loaded = str(err), None
    if words is None:
        return result
    if loaded:  # the words in original pixels of the upright (EXIF-oriented) image
        result.words = [orient_points(w.points, loaded.header.orientation, loaded.header.size) for w in words]
        result.sides = np.array([sorted(cv2.minAreaRect(p)[1]) for p in result.words], np.float32).reshape(-1, 2)
    texts = [w.text for w in words] if loaded else []
    truth = prepare_ground_truth(result.words, texts)  # one prepared ground truth serves every size
    scores = []
    for k, size in enumerate(job.sizes):
        orig_hw = loaded.orig_hw if loaded else (size, size)
        result.scales.append(fit_scale(orig_hw, size))
        batch = prepare_polygons(result.polygons(k), None, job.shrink_ratio, job.min_text_size)
        maps = allocate_targets(*scaled_hw(orig_hw, result.scales[k]))
        rasterise(batch, maps)  # a map of 0 and 1
        result.lost.append(np.asarray(batch.ignored, bool))
        image = CachedImage(path.name, maps.prob_map, result.scales[k], orig_hw, result.words, texts)
        scores.append(score_shard([ImageState(image, truth)], job.settings)[:, 0])
    result.scores = np.stack(scores)
    return result


def measure_all(tasks: list[Task], job: Job, workers: int, progress: Progress | None = None) -> list[ImageResult]:
    """`measure_image` of every (split, path, words) task, in order, over `workers` processes (1: here)."""
    workers = max(1, min(workers, len(tasks)))
    results = []
    with ExitStack() as stack:
        mapper = map
        if workers > 1:  # workers fork from a server with the imports (and compiled kernels) done
            mapper = stack.enter_context(ProcessPoolExecutor(workers, mp_context=process_context(__name__))).map
        for result in mapper(partial(measure_image, job), tasks):  # in order; a dead worker raises BrokenProcessPool
            results.append(result)
            if progress:
                progress()
    return results


@dataclass
class SplitCounts:
    """One split: images, usable words, the loader's warnings, and the files that cannot be decoded."""

    split: str
    images: int
    words: int
    labelled: bool
    problems: list[str]
    undecodable: list[str] = field(default_factory=list)  # the decoder's message for each


@dataclass
class ModeCeiling:
    """The ceiling of one post-processing mode at one size: the best setting and its scores, and every setting's."""

    best: dict[str, Any]
    scores: dict[str, float]
    worst_hmean: float
    settings: list[dict[str, Any]]  # each: the swept values + recall, precision, hmean


@dataclass
class SizeFigures:
    """Text size and ceiling at one image size (words of the decodable images of the split)."""

    image_size: int
    words: int
    height: dict[str, float]  # percentiles of the shorter minAreaRect side, input pixels
    length: dict[str, float]  # the same for the longer side
    below_min: float  # share of words whose shorter side is under min_text_size
    lost: float  # share of words the targets leave out
    ceiling: dict[str, ModeCeiling]  # "polygon" / "box"
    heights: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))

    def best_hmean(self, modes: Sequence[bool]) -> float:
        """The best ceiling over the given modes."""
        return max(self.ceiling[MODES[m]].scores["hmean"] for m in modes)


@dataclass(frozen=True)
class Recommendation:
    """The sizes whose ceiling is within `margin` of the best one, and the sweep option that keeps them."""

    sizes: tuple[int, ...]
    best_size: int
    best_hmean: float
    margin: float
    all_sizes: tuple[int, ...]
    option: str

    def text(self) -> str:
        head = (f"best ceiling hmean {self.best_hmean:.3f} at {self.best_size} px; "
                f"within {self.margin:g} of it: {', '.join(map(str, self.sizes))} px")
        if self.sizes == self.all_sizes:
            return f"{head} (every size inspected): the ceiling does not narrow the sweep's image sizes"
        return f"{head}\n  pass {self.option} to the sweep (python wandb_sweep.py --create-sweep {self.option})"


def recommend(ceilings: dict[int, float], margin: float = DEFAULT_MARGIN) -> Recommendation:
    """Sizes (of `ceilings`: image size -> best hmean) within `margin` of the best (the smallest wins a tie)."""
    ordered = sorted(ceilings)
    best_size = max(ordered, key=lambda s: ceilings[s])
    sizes = tuple(s for s in ordered if ceilings[s] >= ceilings[best_size] - margin - 1e-12)
    option = "--image-sizes " + ",".join(map(str, sizes))
    return Recommendation(sizes, best_size, ceilings[best_size], margin, tuple(ordered), option)


@dataclass
class Inspection:
    """Everything `inspect_dataset` found."""

    root: Path
    split: str
    settings: Settings
    counts: list[SplitCounts]
    sizes: list[SizeFigures]
    recommendation: Recommendation
    images: list[ImageResult]  # the inspected split's images, by name

    def as_json(self) -> dict[str, Any]:
        """The figures as plain JSON values."""
        s = self.settings
        return plain({
            "dataset": str(self.root), "split": self.split, "counts": [asdict(c) for c in self.counts],
            "targets": {"shrink_ratio": s.shrink_ratio, "min_text_size": s.min_text_size},
            "postprocess": {"config": str(s.config_path), "base": s.base, "swept": s.swept,
                            "modes": [MODES[m] for m in s.modes]},
            "sizes": [{k: v for k, v in asdict(f).items() if k != "heights"} for f in self.sizes],
            "recommendation": asdict(self.recommendation),
        })

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        """(columns, rows) of the per-size figures, as printed and as logged."""
        keys = ("hmean", "worst_hmean", "recall", "precision")
        columns = ["image_size", "words", "height_p5", "height_p50", "height_p95", "length_p50",
                   "below_min_text_size", "lost", *(f"{mode}_{k}" for mode in ("polygon", "box") for k in keys)]
        rows = [[f.image_size, f.words, f.height["p5"], f.height["p50"], f.height["p95"], f.length["p50"], f.below_min,
                 f.lost, *(c.worst_hmean if k == "worst_hmean" else c.scores[k]
                           for c in (f.ceiling["polygon"], f.ceiling["box"]) for k in keys)]
                for f in self.sizes]
        return columns, rows


def _percentiles(values: np.ndarray) -> dict[str, float]:
    quantiles = np.percentile(values, PERCENTILES) if len(values) else [float("nan")] * len(PERCENTILES)
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, quantiles)}


def _mode_ceiling(table: np.ndarray, combos: list[dict[str, Any]], swept: list[str]) -> ModeCeiling:
    """`table` (settings, images, 3): the mean scores of each setting and the best one."""
    rows = [{**{k: combo[k] for k in swept}, **mean_scores(ImageScore(*map(float, row)) for row in per_image)}
            for combo, per_image in zip(combos, table)]
    best = max(rows, key=lambda r: r["hmean"])  # the first of equals: settings are in grid order
    return ModeCeiling({k: best[k] for k in swept}, {k: best[k] for k in ("recall", "precision", "hmean")},
                       min(r["hmean"] for r in rows), rows)


def split_names(root: Path) -> list[str]:
    """The splits of a dataset root: folders under images/ and JSON files under jsons/."""
    found = {p.name for p in (root / "images").iterdir() if p.is_dir()} if (root / "images").is_dir() else set()
    found |= {p.stem for p in (root / "jsons").glob("*.json")} if (root / "jsons").is_dir() else set()
    order = {"train": 0, "val": 1, PREDICTION_SPLIT: 2}
    return sorted(found, key=lambda s: (order.get(s, 3), s))


def _read_split(root: Path, split: str, inspected: bool) -> tuple[dict[str, list[Word]], SplitCounts]:
    """The split's images and words as the loader reads them, and its counts (decoding not yet checked)."""
    labelled = inspected or split != PREDICTION_SPLIT or split_paths(root, split)[1].is_file()
    words: dict[str, list[Word]] = {}
    with loader_messages() as problems:
        try:
            words = load_split(root, split, labels=labelled)
        except UserError as err:
            if inspected:
                raise
            problems.append(str(err))
    return words, SplitCounts(split, len(words), sum(map(len, words.values())), labelled, problems)


def inspect_dataset(root: Path, split: str, sizes: Sequence[int], settings: Settings, workers: int = 1,
                    margin: float = DEFAULT_MARGIN, progress: Callable[[int], Progress] | None = None) -> Inspection:
    """Counts and problems of every split of `root`; text size and ceiling of `split` at each of `sizes`;
    `progress(total)` returns a callback called once per image scanned."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist: pass --data DIR (a folder holding images/ and jsons/)")
    sizes = check_image_sizes(sizes)
    names = split_names(root)
    if split not in names:
        names.append(split)  # the loader says what is missing
    splits = {name: _read_split(root, name, name == split) for name in names}
    words, counts = splits[split]
    if not counts.words:
        image_dir, json_path = split_paths(root, split)
        raise UserError(f"the {split} split has no labelled words ({json_path} with words for the images in "
                        f"{image_dir}): choose a split with labels, e.g. --split val")

    # a ground-truth map is 0 or 1: every thresh in [0, 1) binarises it alike, so one thresh stands for all
    grids = {mode: settings.grid(mode) for mode in MODES}
    thresh = min(float(c["thresh"]) for grid in grids.values() for c in grid)
    unique: dict[tuple, int] = {}
    index = {mode: [unique.setdefault(tuple(sorted({**c, "thresh": thresh}.items())), len(unique)) for c in grid]
             for mode, grid in grids.items()}
    job = Job(sizes, settings.shrink_ratio, settings.min_text_size, tuple(dict(key) for key in unique))
    tasks = [(name, str(split_paths(root, name)[0] / image), found if name == split else None)
             for name, (images, _) in splits.items() for image, found in images.items()]
    results = measure_all(tasks, job, min(workers, max(1, len(words) // IMAGES_PER_WORKER)),
                          progress(len(tasks)) if progress else None)
    for r in results:
        c = splits[r.split][1]
        if r.error:
            c.undecodable.append(r.error)
        c.problems.extend(m for m in r.notes if m not in c.problems)

    images = [r for r in results if r.split == split]
    figures = []
    for k, size in enumerate(sizes):
        heights, lengths = np.concatenate([r.sides * np.float32(r.scales[k]) for r in images]).T
        lost = np.concatenate([r.lost[k] for r in images])
        table = np.stack([r.scores[k] for r in images], axis=1)  # (settings, images, 3)
        ceiling = {MODES[mode]: _mode_ceiling(table[index[mode]], grids[mode], settings.keys(mode)) for mode in MODES}
        n = len(heights)
        figures.append(SizeFigures(
            size, n, _percentiles(heights), _percentiles(lengths),
            float(np.mean(heights < settings.min_text_size)) if n else 0.0,
            float(np.mean(lost)) if n else 0.0, ceiling, heights,
        ))
    recommendation = recommend({f.image_size: f.best_hmean(settings.modes) for f in figures}, margin)
    return Inspection(root, split, settings, [c for _, c in splits.values()], figures, recommendation, images)


def describe_settings(settings: Settings) -> str:
    """One line: the values tried for each swept key, per mode, and where they come from."""
    parts = []
    for mode in MODES:
        grid = len(settings.grid(mode))
        unclip = "polygon_unclip_ratio" if mode else "box_unclip_ratio"
        keys = settings.keys(mode) + ([] if unclip in settings.swept else [unclip])
        shown = ", ".join(f"{k} " + "/".join(f"{v:g}" if isinstance(v, float) else str(v)
                                             for v in settings.swept.get(k, [settings.base[k]])) for k in keys)
        parts.append(f"{MODES[mode]} mode {grid} setting{'s' * (grid != 1)} ({shown})")
    return f"post-processing of {shown_path(settings.config_path)}: " + "; ".join(parts)


def report(ins: Inspection) -> str:
    """The figures as printed: counts and problems, the table per image size, the recommendation."""
    s = ins.settings
    lines = [f"dataset {ins.root}",
             f"  {'split':<8}{'images':>8}{'words':>9}{'undecodable':>13}{'loader warnings':>17}"]
    for c in ins.counts:
        words = c.words if c.labelled else "no labels"
        lines.append(f"  {c.split:<8}{c.images:>8}{words:>9}{len(c.undecodable):>13}{len(c.problems):>17}")
    for c in ins.counts:
        lines += [f"  {c.split}: {message}" for message in c.problems]
        if c.undecodable:
            more = " ..." if len(c.undecodable) > 3 else ""
            lines.append(f"  {c.split}: {len(c.undecodable)} image(s) cannot be decoded (training reads each as a "
                         f"blank image without words): {'; '.join(c.undecodable[:3])}{more}")
    minimum = f"{s.min_text_size:g}"
    lines += [
        "",
        f"{ins.split} at each image size: word height/length = shorter/longer side of its minAreaRect in input pixels; "
        f"lost = left out of the targets (min_text_size {minimum} px, shrink_ratio {s.shrink_ratio:g})",
        "ceiling = ground-truth maps -> post-processing -> CLEval, mean over images: the best setting (the worst in "
        f"brackets); {describe_settings(s)}",
        "",
        f"{'size':>6}{'words':>7}{'height p5/p50/p95':>20}{'length p50':>12}{'< ' + minimum + ' px':>9}{'lost':>8}"
        f"{'polygon hmean':>22}{'R':>7}{'P':>7}{'box hmean':>20}{'R':>7}{'P':>7}",
    ]
    for size, words, h5, h50, h95, l50, below, lost, *scores in ins.rows()[1]:
        height = f"{h5:.1f}/{h50:.1f}/{h95:.1f}"
        cells = [f"{h:.3f} ({w:.3f}){r:>7.3f}{p:>7.3f}" for h, w, r, p in (scores[:4], scores[4:])]
        lines.append(f"{size:>6}{words:>7}{height:>20}{l50:>12.1f}{below:>9.1%}{lost:>8.1%}"
                     f"{cells[0]:>36}{cells[1]:>34}")
    modes = " and ".join(MODES[m] for m in s.modes)
    lines += ["", f"recommendation ({modes} mode, as the sweep runs): {ins.recommendation.text()}"]
    return "\n".join(lines)


def lost_overlays(ins: Inspection, count: int = 3) -> list[tuple[str, np.ndarray]]:
    """(image name, RGB) of up to `count` images with the most words lost at the smallest size, drawn at that size
    (doubled): lost words in red, kept words in green."""
    size = ins.sizes[0].image_size
    ranked = sorted((r for r in ins.images if r.error is None and r.lost and r.lost[0].any()),
                    key=lambda r: (-int(r.lost[0].sum()), r.name))[:count]
    image_dir = split_paths(ins.root, ins.split)[0]
    out = []
    for r in ranked:
        image = load_resized(image_dir / r.name, size).image
        canvas = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        for lost in (False, True):
            chosen = [np.round(p * 2).astype(np.int32) for p, gone in zip(r.polygons(0), r.lost[0]) if gone == lost]
            cv2.polylines(canvas, chosen, True, (230, 0, 0) if lost else (0, 170, 0), 2 if lost else 1, cv2.LINE_AA)
        out.append((r.name, canvas))
    return out
