"""User-facing errors: one clear line (what, where, how to fix), never a traceback."""

from __future__ import annotations

import argparse
import math
import numbers
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


class UserError(Exception):
    """A mistake in what the user gave us (path, config, data). Its message is the whole report."""


def is_finite_number(value: object, integer: bool = False) -> bool:
    """Whether a config value is a finite real (an integer if `integer`); booleans are not numbers here."""
    kinds = numbers.Integral if integer else numbers.Real
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


@contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """Turn a `UserError` raised inside the block into `prog: error: <message>` and exit status 2."""
    try:
        yield
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def list_of(cast: Callable[[str], Any], name: str) -> Callable[[str], tuple[Any, ...]]:
    """argparse type: comma-separated `cast` values (at least one), `name` saying what they are."""
    kind = {int: "an integer", positive_int: "a positive integer"}.get(cast, "valid")

    def parse(text: str) -> tuple[Any, ...]:
        values = []
        for item in (s.strip() for s in text.split(",") if s.strip()):
            try:
                values.append(cast(item))
            except (ValueError, argparse.ArgumentTypeError):
                raise argparse.ArgumentTypeError(f"{item!r} is not {kind} (in {text!r})") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected one or more {name}")
        return tuple(values)

    return parse


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake reported on one line (and where to read the usage) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def yaml_error_text(path: Path, err: yaml.YAMLError) -> str:
    """`PATH: malformed YAML at line L, column C: problem` for a parse error."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{path}: malformed YAML{where}: {problem}"


def first_line(err: BaseException) -> str:
    """`Type: first line of the message` of an exception from another package."""
    line = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
