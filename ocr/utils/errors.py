"""User-facing errors: one clear line (what, where, how to fix), never a traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class UserError(Exception):
    """A mistake in what the user gave us (path, config, data). Its message is the whole report."""


@contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """Turn a `UserError` raised inside the block into `prog: error: <message>` and exit status 2."""
    try:
        yield
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
