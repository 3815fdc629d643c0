"""Synthetic receipts in the competition layout, one tight box per text run, deterministic for a seed.
CLI: ``python -m ocr.data.synthetic --out DIR`` (``--help`` lists the options)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)
INK_THRESHOLD = 96  # anti-aliased ink above this (of 255) counts as text for the tight box

_ITEMS = (
    "BREAD MILK RICE SUGAR COFFEE TEA CHICKEN EGG NOODLE WATER SOAP OIL SALT APPLE ORANGE BANANA FLOUR BUTTER "
    "CHEESE TISSUE SHAMPOO BISCUIT CHOCOLATE JUICE SODA BEEF FISH PRAWN TOFU ONION GARLIC CHILLI SAUCE PAPER "
    "PEN BATTERY CANDLE DETERGENT YOGURT CEREAL HONEY JAM KETCHUP PASTA SPINACH CARROT POTATO TOMATO LEMON"
).split()
_NAMES = "MAJU JAYA SENTOSA MUTIARA BINTANG INDAH MEGA SINAR CAHAYA HARMONI PERMAI SETIA BAHAGIA UTAMA".split()
_SHOP = ("SDN BHD", "ENTERPRISE", "MART", "TRADING", "RESTAURANT", "BAKERY", "HARDWARE", "STATIONERY")
_CITIES = "JOHOR BAHRU,KUALA LUMPUR,PETALING JAYA,SHAH ALAM,IPOH,MELAKA,KLANG,SEREMBAN".split(",")
_TOTALS = ("SUBTOTAL", "TOTAL", "GST 6%", "ROUNDING", "CASH", "CHANGE", "DISCOUNT", "TOTAL QTY", "NET TOTAL")
_FOOTERS = ("THANK YOU", "PLEASE COME AGAIN", "GOODS SOLD ARE NOT RETURNABLE", "HAVE A NICE DAY",
            "*** CUSTOMER COPY ***")
DEFAULT_TEXT_HEIGHT = (0.022, 0.032)  # body text height / paper height: ~40 lines per receipt, like the real ones


class Style(NamedTuple):
    """How one line is drawn: font face, scale and stroke thickness."""

    font: int
    scale: float
    thickness: int


def _price(rng: np.random.Generator) -> str:
    return f"{rng.uniform(0.3, 250.0):.2f}"


def _pick(rng: np.random.Generator, options: tuple | list) -> str:
    return options[int(rng.integers(len(options)))]


def _header_texts(rng: np.random.Generator) -> list[str]:
    lines = [f"{_pick(rng, _NAMES)} {_pick(rng, _NAMES)} {_pick(rng, _SHOP)}"]
    if rng.random() < 0.8:
        lines.append(f"NO {rng.integers(1, 200)}, JALAN {_pick(rng, _NAMES)} {rng.integers(1, 30)}")
    if rng.random() < 0.7:
        lines.append(f"{rng.integers(10000, 99999)} {_pick(rng, _CITIES)}")
    if rng.random() < 0.6:
        lines.append(f"TEL: 0{rng.integers(3, 10)}-{rng.integers(1000, 9999)} {rng.integers(1000, 9999)}")
    return lines


def _meta_texts(rng: np.random.Generator) -> list[tuple[str, str | None]]:
    date = f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/20{rng.integers(15, 25)}"
    time = f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    options = [(f"DATE: {date}", f"TIME: {time}"), (f"INVOICE NO: INV{rng.integers(0, 999999):06d}", None),
               (f"CASHIER: {_pick(rng, _NAMES)}", None), (f"TABLE {rng.integers(1, 40)}", f"PAX: {rng.integers(1, 9)}"),
               (f"{date} {time}", None)]
    order = rng.permutation(len(options))[: int(rng.integers(1, 4))]
    return [options[i] for i in order]


def _text_size(text: str, style: Style) -> tuple[int, int, int]:
    """(width, height above baseline, descent below baseline) of `text` drawn in `style`."""
    (width, height), baseline = cv2.getTextSize(text, style.font, style.scale, style.thickness)
    return width, height, baseline + style.thickness


def _fit(text: str, style: Style, max_width: float) -> str:
    """`text` without trailing words until it fits `max_width` (at least its first word)."""
    words = text.split(" ")
    while len(words) > 1 and _text_size(" ".join(words), style)[0] > max_width:
        words.pop()
    return " ".join(words)


def _draw_run(ink: np.ndarray, text: str, style: Style, x: float, baseline: float) -> np.ndarray | None:
    """Draw `text` into the float ink mask with its origin at (x, baseline); return its tight box (4, 2)."""
    width, height, descent = _text_size(text, style)
    pad = style.thickness + 2
    patch = np.zeros((height + descent + 2 * pad, width + 2 * pad), np.uint8)
    cv2.putText(patch, text, (pad, pad + height), style.font, style.scale, 255, style.thickness, cv2.LINE_AA)
    x0, y0 = int(round(x)) - pad, int(round(baseline)) - height - pad
    ph, pw = patch.shape
    if x0 < 0 or y0 < 0 or x0 + pw > ink.shape[1] or y0 + ph > ink.shape[0]:
        return None
    region = ink[y0 : y0 + ph, x0 : x0 + pw]
    np.maximum(region, patch.astype(np.float32) / 255.0, out=region)
    ys, xs = np.nonzero(patch > INK_THRESHOLD)
    if len(xs) == 0:
        return None
    left, top, right, bottom = x0 + xs.min() - 1, y0 + ys.min() - 1, x0 + xs.max() + 2, y0 + ys.max() + 2
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.float32)


def _style(rng: np.random.Generator, font: int, cap_height: float) -> Style:
    """`font` scaled so capitals are `cap_height` px tall; bigger text is sometimes bold."""
    thickness = 2 if cap_height >= 11 and rng.random() < 0.4 else 1
    unit = cv2.getTextSize("H", font, 1.0, thickness)[0][1]
    return Style(font, cap_height / unit, thickness)


def _layout_text(
    rng: np.random.Generator, ink: np.ndarray, paper: tuple[int, int, int, int], text_height: tuple[float, float]
) -> list[tuple[np.ndarray, str]]:
    """Draw the lines into `ink` within `paper` (x0, y0, x1, y1), capitals `text_height` of its height; return runs."""
    px0, py0, px1, py1 = paper
    pad = (px1 - px0) * rng.uniform(0.04, 0.08)
    left, right = px0 + pad, px1 - pad
    text_h = (py1 - py0) * rng.uniform(*text_height)
    font = _pick(rng, FONTS)
    runs: list[tuple[np.ndarray, str]] = []
    y = py0 + text_h * rng.uniform(1.0, 2.5)

    def line(parts: list[tuple[str, str]], style: Style) -> bool:
        """Draw one line of (text, alignment) parts at the cursor; False when the paper is full."""
        nonlocal y
        _, height, descent = _text_size("Hg", style)
        baseline = y + height
        if baseline + descent + text_h > py1:
            return False
        room = (right - left) / len(parts) - text_h if len(parts) > 1 else right - left
        for text, align in parts:
            text = _fit(text, style, room)
            width = _text_size(text, style)[0]
            x = {"left": left, "right": right - width, "centre": (left + right - width) / 2}[align]
            box = _draw_run(ink, text, style, x, baseline)
            if box is not None:
                runs.append((box, text))
        y = baseline + descent + height * rng.uniform(0.6, 1.2)
        return True

    header_style = _style(rng, _pick(rng, FONTS), text_h * rng.uniform(1.2, 1.7))
    body = _style(rng, font, text_h)
    header_align = "centre" if rng.random() < 0.8 else "left"
    for i, text in enumerate(_header_texts(rng)):
        line([(text, header_align)], header_style if i == 0 else body)
    y += text_h * rng.uniform(0.3, 1.5)
    for first, second in _meta_texts(rng):
        line([(first, "left")] + ([(second, "right")] if second else []), body)
    y += text_h * rng.uniform(0.3, 1.5)
    leaders = rng.random() < 0.3
    for _ in range(int(rng.integers(3, 16))):
        item = " ".join(_pick(rng, _ITEMS) for _ in range(int(rng.integers(1, 4))))
        if leaders:
            dots = "." * int(rng.integers(3, 12))
            ok = line([(f"{item} {dots} {_price(rng)}", "left")], body)
        elif rng.random() < 0.25:
            ok = line([(f"{rng.integers(1, 9)} X {_price(rng)}", "left"), (_price(rng), "right")], body)
        else:
            ok = line([(item, "left"), (_price(rng), "right")], body)
        if not ok:
            return runs
    y += text_h * rng.uniform(0.3, 1.5)
    for _ in range(int(rng.integers(2, 5))):
        if not line([(_pick(rng, _TOTALS), "left"), (_price(rng), "right")], body):
            return runs
    y += text_h * rng.uniform(0.5, 2.0)
    for _ in range(int(rng.integers(0, 3))):
        if not line([(_pick(rng, _FOOTERS), "centre")], body):
            break
    return runs


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], (h, w) float32."""
    grid = rng.uniform(-1, 1, (max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _paper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Off-white, slightly warm paper with a gradient and texture, (h, w, 3) float32 RGB."""
    base = rng.uniform(228, 248)
    tint = np.array([base, base - rng.uniform(0, 6), base - rng.uniform(0, 12)], np.float32)
    ramp = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * rng.uniform(-8, 8)
    ramp = ramp + np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-5, 5)
    texture = _smooth_noise(rng, h, w, 12) * rng.uniform(1, 5)
    return tint[None, None, :] + (ramp + texture)[..., None]


def _perspective(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A 3x3 homography: small rotation, shrink and corner jitter about the image centre."""
    angle = np.deg2rad(rng.uniform(-2.5, 2.5))
    shrink = rng.uniform(0.95, 1.0)
    centre = np.array([w / 2, h / 2], np.float32)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = (corners - centre) @ rot.T * shrink + centre
    moved += rng.uniform(-0.012, 0.012, (4, 2)).astype(np.float32) * [w, h]
    return cv2.getPerspectiveTransform(corners, moved.astype(np.float32))


def render_receipt(
    rng: np.random.Generator, size: tuple[int, int] = (320, 640), text_height: tuple[float, float] = DEFAULT_TEXT_HEIGHT
) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """One receipt: RGB uint8 image whose longest side is in `size` (min, max), and its (quad, text) runs."""
    h = int(rng.integers(size[0], size[1] + 1))
    w = int(h * rng.uniform(0.5, 0.8))
    mx, my = int(w * rng.uniform(0.05, 0.1)), int(h * rng.uniform(0.03, 0.06))
    ink = np.zeros((h, w), np.float32)
    runs = _layout_text(rng, ink, (mx, my, w - mx, h - my), text_height)
    paper = _paper(rng, h, w)
    ink_colour = rng.uniform(10, 70) + rng.uniform(-8, 8, 3)
    opacity = np.minimum(ink * 1.5, 1.0)[..., None] * rng.uniform(0.9, 1.0)  # thin anti-aliased strokes stay dark
    flat = paper * (1 - opacity) + ink_colour[None, None, :].astype(np.float32) * opacity
    mask = np.zeros((h, w), np.float32)
    mask[my : h - my, mx : w - mx] = 1.0

    matrix = _perspective(rng, h, w)
    warped = cv2.warpPerspective(flat, matrix, (w, h), flags=cv2.INTER_LINEAR)
    warped_mask = cv2.warpPerspective(mask, matrix, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    table_colour = rng.uniform(70, 170) + rng.uniform(-25, 25, 3)
    table = table_colour.astype(np.float32)[None, None, :] + _smooth_noise(rng, h, w, 24)[..., None] * 12
    image = warped * warped_mask + table * (1 - warped_mask)

    sigma = rng.uniform(0, 0.7)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0, rng.uniform(1, 4), image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)

    quads = []
    for box, text in runs:
        quad = cv2.perspectiveTransform(box.reshape(-1, 1, 2), matrix).reshape(-1, 2)
        quads.append((np.clip(quad, 0, [w, h]).astype(np.float32), text))
    return image, quads


def generate_dataset(
    out: str | Path, n_train: int = 64, n_val: int = 16, n_test: int = 8, seed: int = 0,
    size: tuple[int, int] = (320, 640), progress: bool = True, text_height: tuple[float, float] = DEFAULT_TEXT_HEIGHT,
) -> Path:
    """Write a synthetic dataset (ROOT/images/{train,val,test}/*.jpg + ROOT/jsons/*.json) to `out`."""
    out = Path(out)
    counts = dict(zip(SPLITS, (n_train, n_val, n_test)))
    (out / "jsons").mkdir(parents=True, exist_ok=True)
    with tqdm(total=sum(counts.values()), desc="synthetic receipts", unit="img", disable=not progress) as bar:
        for split_index, (split, count) in enumerate(counts.items()):
            image_dir = out / "images" / split
            image_dir.mkdir(parents=True, exist_ok=True)
            images = {}
            for i in range(count):
                rng = np.random.default_rng([seed, split_index, i])
                image, runs = render_receipt(rng, size, text_height)
                name = f"{split}_{i:05d}.jpg"
                quality = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))]
                cv2.imwrite(str(image_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), quality)
                points = [[[round(float(x), 1), round(float(y), 1)] for x, y in quad] for quad, _ in runs]
                images[name] = {"words": {f"{k + 1:04d}": {"points": p, "transcription": text}
                                          for k, (p, (_, text)) in enumerate(zip(points, runs))}}
                bar.update()
            (out / "jsons" / f"{split}.json").write_text(json.dumps({"images": images}), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: write a synthetic dataset and print its root."""
    parser = argparse.ArgumentParser(prog="python -m ocr.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    for split, count in zip(SPLITS, (64, 16, 8)):
        parser.add_argument(f"--{split}", type=int, default=count, help=f"number of {split} images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 640), metavar=("MIN", "MAX"),
                        help="longest side range")
    parser.add_argument("--text-height", type=float, nargs=2, default=DEFAULT_TEXT_HEIGHT, metavar=("MIN", "MAX"),
                        help="body text height as a fraction of the paper's height (default 0.022 0.032)")
    args = parser.parse_args(argv)
    for split in SPLITS:
        if getattr(args, split) < 0:
            parser.error(f"--{split} must be >= 0")
    if not 0 < args.text_height[0] <= args.text_height[1] < 0.5:
        parser.error("--text-height needs 0 < MIN <= MAX < 0.5")
    if not 16 <= args.size[0] <= args.size[1]:
        parser.error("--size needs 16 <= MIN <= MAX")
    print(generate_dataset(args.out, args.train, args.val, args.test, args.seed, tuple(args.size),
                           text_height=tuple(args.text_height)))


if __name__ == "__main__":
    main()
