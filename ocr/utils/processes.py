"""The start method for worker processes: never a plain fork of a process that may hold threads."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver


def process_context(*preload: str) -> multiprocessing.context.BaseContext:
    """forkserver (safe in a process holding threads or a CUDA context; its workers fork from a server that has
    imported the modules `preload`), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return context


def start_server(*preload: str) -> None:
    """Start the forkserver (importing `preload`) now, beside the caller's own work, rather than at the first worker."""
    if process_context(*preload).get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
