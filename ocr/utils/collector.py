"""Pausing Python's cyclic garbage collector around work that makes many short-lived lists.

pyclipper takes and returns polygons as lists of ``[x, y]`` lists, thousands per image: made while the collector
runs, they trigger passes that now and then scan every object of the process. Such work makes no reference cycles,
so reference counting still frees the lists as before. Usable as a decorator.
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
