"""Pausing Python's cyclic garbage collector around work that makes many short-lived lists without reference cycles
(pyclipper's ``[x, y]`` lists, thousands per image), whose collector passes would scan every object of the process."""

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
