"""One trial of a local sweep as the store keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# W&B run states (sweeps.RunState) and how a trial gets each one here: pending (reserved by an agent),
# running (its process runs), finished (exit status 0; `stopped` tells whether hyperband ended it early),
# failed (non-zero exit), killed (the user interrupted its agent), crashed (its agent died, found by pid
# liveness or a stale heartbeat).
ACTIVE_STATES = ("pending", "running")
# Ended by the agent's fate, not by the parameters: the engine ignores them and run_cap does not count them,
# so a resumed sweep replaces them.
INTERRUPTED_STATES = ("killed", "crashed")


@dataclass
class Trial:
    """A reserved suggestion and everything learnt about it (JSON-serialisable)."""

    run_id: str
    number: int
    params: dict[str, dict[str, Any]]
    state: str = "pending"
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    search_info: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)  # host, pid, started (process identity of the agent)
    process: dict[str, Any] = field(default_factory=dict)  # pid, started (process identity of the trial)
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    heartbeat: float = 0.0
    exitcode: int | None = None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def interrupted(self) -> bool:
        return self.state in INTERRUPTED_STATES

    @property
    def label(self) -> str:
        """State as shown to users: `stopped` for a finished trial that hyperband ended early."""
        return "stopped" if self.state == "finished" and self.stopped else self.state

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
