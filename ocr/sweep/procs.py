"""Process identity and liveness, so a restarted agent can tell a dead trial from a running one.

Hand-written because the project has no psutil: a pid plus its start time from /proc (Linux) identifies a
process even after its pid is reused; elsewhere the pid alone is used and heartbeats cover the rest.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on; the name in (...) may hold spaces


def start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where /proc is absent."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def identity(pid: int | None = None) -> dict[str, Any]:
    """Host, pid and start token of process `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": start_token(pid)}


def is_alive(ident: dict[str, Any]) -> bool | None:
    """True/False for a process on this host; None when it ran on another host (liveness unknown here)."""
    if not ident or ident.get("host") != socket.gethostname():
        return None
    pid = int(ident["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return not Path("/proc").is_dir()  # no /proc: the pid answering is all we know
    return fields[0] not in ("Z", "X") and (ident.get("started") is None or fields[19] == ident["started"])


def kill_group(ident: dict[str, Any]) -> None:
    """SIGKILL the process group led by the process `ident` names, if that process is still alive here."""
    if is_alive(ident):
        try:
            os.killpg(int(ident["pid"]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
