"""Environment: `.env` loading, the W&B mode a run or sweep will use (secrets are never printed), and the set-up
every subcommand runs in."""

from __future__ import annotations

import argparse
import logging
import netrc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from dotenv import load_dotenv

from ocr.utils.compat import wandb_settings_base_url
from ocr.utils.errors import UserError

WANDB_MODES = ("online", "offline", "disabled")


def load_env(path: str | Path = ".env") -> None:
    """Load `.env` from the current directory into `os.environ`, never overriding variables already set."""
    load_dotenv(Path(path), override=False)


def wandb_base_url() -> str:
    """The W&B server wandb would talk to: WANDB_BASE_URL, else its settings (`wandb login --host`) or default."""
    return os.environ.get("WANDB_BASE_URL") or wandb_settings_base_url()


def wandb_key_is_set() -> bool:
    """True when a W&B API key is available (WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(wandb_base_url()).hostname
    if not host:
        return False
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE if set (validated), else `online` with an API key and `offline` without one."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "dryrun":
        return "offline"
    if mode in WANDB_MODES:
        return mode
    if mode:
        raise UserError(f"WANDB_MODE={mode!r} is not one of {', '.join(WANDB_MODES)}; "
                        "fix it in the environment or .env")
    return "online" if wandb_key_is_set() else "offline"


def run_command(name: str, run: Callable[[], int]) -> int:
    """`run()` with `.env` loaded (its WANDB_MODE checked first) and warnings shown; a `UserError` prints
    `NAME: error: <message>` and gives status 2."""
    load_env()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        wandb_mode()
        return run()
    except UserError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2


def subcommand_main(command: str, build_parser: Callable[[str], argparse.ArgumentParser],
                    run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None, prog: str) -> int:
    """`PROG COMMAND [options]` from `argv` (default: the command line; the COMMAND word optional), run as
    `run_command` runs it."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(name := f"{prog} {command}").parse_args(words[1:] if words[:1] == [command] else words)
    return run_command(name, lambda: run(args))
