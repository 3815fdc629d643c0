"""Image and point transforms: decode, EXIF orientation, resize + pad to a square, augmentation, tensor.
Coordinates are continuous pixels (column j covers x in [j, j+1)): a flip maps x to W - x, resizing by s to x * s."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

EXIF_ORIENTATION = 0x0112
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageDecodeError(Exception):
    """The image file cannot be read or decoded."""


class ImageHeader(NamedTuple):
    """What the file header says: stored (width, height), EXIF orientation (1..8; 1 = none), and format."""

    size: tuple[int, int]
    orientation: int
    format: str | None


def read_header(path: Path) -> ImageHeader:
    """Header of the image at `path` (no pixel decoding). Raises ImageDecodeError when unreadable."""
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            return ImageHeader(im.size, orientation if orientation in range(1, 9) else 1, im.format)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{path}: {err}") from err


_stderr_lock = threading.Lock()  # fd 2 is redirected by one decode at a time
_stderr_sink: IO[bytes] | None = None  # this process's temporary file fd 2 points at during a decode
_reported: set[tuple[str, str]] = set()  # (file, decoder message) already logged by this process


def _fresh_sink_after_fork() -> None:
    """Give a forked process (a DataLoader worker) its own lock and file (the parent's file offset is shared)."""
    global _stderr_lock, _stderr_sink
    _stderr_lock, _stderr_sink = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_sink_after_fork)


def imread_quietly(path: Path, flags: int) -> tuple[np.ndarray | None, str]:
    """`cv2.imread(path, flags)` and what the decoders wrote to stderr meanwhile ("" when stderr cannot be captured)."""
    global _stderr_sink
    with _stderr_lock:
        try:
            _stderr_sink = _stderr_sink or tempfile.TemporaryFile()
            saved = os.dup(2)
        except OSError:
            return cv2.imread(str(path), flags), ""
        fd = _stderr_sink.fileno()
        if sys.stderr is not None:
            sys.stderr.flush()
        try:
            os.dup2(fd, 2)
            image = cv2.imread(str(path), flags)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        written = os.lseek(fd, 0, os.SEEK_CUR)
        text = os.pread(fd, written, 0).decode(errors="replace") if written else ""
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    return image, text


def decode_bgr(path: Path, factor: int = 1) -> np.ndarray:
    """Stored pixels (no EXIF orientation), BGR uint8, at about 1/`factor` size; decoder warnings are logged once
    per file."""
    flags = _REDUCED_FLAGS.get(factor, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    bgr, printed = imread_quietly(path, flags)
    said = "; ".join(line.strip() for line in printed.splitlines() if line.strip())
    if bgr is None:
        raise ImageDecodeError(f"{path}: OpenCV could not decode it" + (f" ({said})" if said else ""))
    if said and (str(path), said) not in _reported:
        _reported.add((str(path), said))
        log.warning(f"{path}: {said} (from the image decoder); decoded anyway")
    return bgr


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) after applying EXIF `orientation` to an image stored as `size` = (width, height)."""
    width, height = size
    return (height, width) if orientation >= 5 else (width, height)


# The 8 EXIF orientations as PIL.ImageOps.exif_transpose applies them, to (H, W, C) pixels and to stored (x, y).
_IMAGE_OPS = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_POINT_OPS = {
    1: lambda x, y, w, h: (x, y), 2: lambda x, y, w, h: (w - x, y), 3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y), 5: lambda x, y, w, h: (y, x), 6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x), 8: lambda x, y, w, h: (y, w - x),
}


def orient_points(points: np.ndarray, orientation: int, size: tuple[int, int]) -> np.ndarray:
    """(N, 2) points of a stored image of `size` = (width, height), mapped as its pixels are under `orientation`."""
    x, y = _POINT_OPS[orientation](points[:, 0], points[:, 1], *size)
    return np.stack([x, y], axis=1).astype(np.float32)


def fit_scale(orig_hw: tuple[int, int], image_size: int) -> float:
    """Scale that makes the longest side of an image of `orig_hw` equal `image_size`."""
    return image_size / max(orig_hw)


def scaled_hw(orig_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """The unpadded (h, w) of an image of `orig_hw` resized by `scale`."""
    return max(1, round(orig_hw[0] * scale)), max(1, round(orig_hw[1] * scale))


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`image` resized to `hw` = (h, w): INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    if image.shape[:2] == tuple(hw):
        return image
    shrinking = hw[0] * hw[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def pad_square(image: np.ndarray, size: int) -> np.ndarray:
    """`image` padded with zeros at the bottom and right to `size` x `size`."""
    h, w = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, size - h, 0, size - w, cv2.BORDER_CONSTANT, value=0)


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """uint8 `image` * alpha + beta * 255, clipped (albumentations' RandomBrightnessContrast formula)."""
    lut = np.clip(np.arange(256, dtype=np.float32) * alpha + beta * 255.0, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def sample_brightness_contrast(brightness_limit: float, contrast_limit: float, p: float) -> tuple[float, float] | None:
    """(alpha, beta) drawn uniformly within the limits with probability `p`, else None; torch's RNG, seeded per
    worker."""
    u = torch.rand(3).tolist()
    if u[0] >= p:
        return None
    return 1.0 + (2 * u[1] - 1) * contrast_limit, (2 * u[2] - 1) * brightness_limit


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> ImageNet-normalised float32 (3, H, W)."""
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous().float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0)
    return chw.sub_(mean).mul_(inv_std)


class LoadedImage(NamedTuple):
    """An image oriented and resized for the network: `image` is (h, w, 3) uint8, unpadded."""

    image: np.ndarray
    scale: float
    orig_hw: tuple[int, int]
    header: ImageHeader


def load_resized(path: Path, image_size: int, reduced_decode: bool = True) -> LoadedImage:
    """Decoded (reduced JPEG decoding if `reduced_decode`), oriented and resized so the longest side is `image_size`."""
    header = read_header(path)
    width, height = oriented_size(header.size, header.orientation)
    scale = fit_scale((height, width), image_size)
    hw = scaled_hw((height, width), scale)
    # the largest JPEG DCT reduction (1, 2, 4 or 8) that still decodes at least `image_size` pixels
    fits = (f for f in (8, 4, 2) if reduced_decode and header.format == "JPEG" and max(header.size) // f >= image_size)
    factor = next(fits, 1)
    oriented = np.ascontiguousarray(_IMAGE_OPS[header.orientation](decode_bgr(path, factor)))  # as displayed
    bgr = resize(oriented, hw)
    return LoadedImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale, (height, width), header)
