"""Pausing Python's cyclic garbage collector around work that makes many short-lived lists.

pyclipper takes and returns polygons as lists of ``[x, y]`` lists: a few thousand containers per image.
Made while the collector runs, they trigger young-generation passes that promote them, and every so
often a full pass over every object of the process (hundreds of thousands once torch is loaded), which
then lands on one image. Such work makes no reference cycles, so pausing the collector frees nothing
late: reference counting frees the lists as before. Usable as a decorator.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block (restored after it, also when nested or raising)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
