"""What the control plane's commands return, and the small helpers around them."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.control.health.probe import ProbeResult
from orchestrator.control.health.record import CloudRecord
from orchestrator.control.routing import Decision
from orchestrator.control.routing.reconcile import BackendResult
from orchestrator.control.types import Flip, HealthState
from orchestrator.core.errors import OrchestratorError

__all__ = [
    "EXIT_STALE_BACKEND",
    "FailoverRefused",
    "OperatorResult",
    "RoundReport",
    "current_user",
    "flip_dict",
    "move_share",
]

# The exit code when the decision was committed but a routing backend could not be brought up to
# date (it is named on stderr and in `status`); 2 keeps meaning "no healthy cloud" for `health`.
EXIT_STALE_BACKEND = 4


class FailoverRefused(OrchestratorError):
    """A failover or failback that would be unsafe; the message says why and what would allow it."""


def current_user() -> str:
    """Who runs this command, for the flips it records: ``$ORCHESTRATOR_USER``, else the login."""
    try:
        return os.environ.get("ORCHESTRATOR_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def move_share(weights: dict[str, int], source: str, dest: str) -> dict[str, int]:
    """``weights`` with ``source``'s whole share added to ``dest`` (the total is unchanged)."""
    moved = dict(weights)
    moved[dest] = moved.get(dest, 0) + moved.get(source, 0)
    moved[source] = 0
    return moved


def _stale(backends: Sequence[BackendResult]) -> list[str]:
    return [b.location for b in backends if b.stale]


@dataclass(frozen=True)
class OperatorResult:
    """What a failover or failback did: its flips, the router's view, the weights decided, and what
    reconciling the backends found (``applied``: at least one was rewritten)."""

    flips: list[Flip]
    decision: Decision
    weights: dict[str, int] | None
    applied: bool
    backends: list[BackendResult] = field(default_factory=list)

    @property
    def stale(self) -> list[str]:
        """The backends that do not hold the decision (named in the CLI's error line)."""
        return _stale(self.backends)


@dataclass
class RoundReport:
    """One health round: each cloud's record after it, the probes, the flips, the decision, the
    desired weights (the decision's, or in a panic the last committed ones), the backends."""

    records: dict[str, CloudRecord]
    probes: dict[str, list[ProbeResult]]
    flips: list[Flip]
    decision: Decision
    applied: bool
    weights: dict[str, int] | None
    expected_version: str | None
    backends: list[BackendResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # With vantage points: each point's observation and age, the quorum view, the lease.
    vantage: dict[str, Any] | None = None

    @property
    def stale(self) -> list[str]:
        """The backends that do not hold the decision (named in the CLI's error lines)."""
        return _stale(self.backends)

    @property
    def exit_code(self) -> int:
        """2: no healthy cloud; 4: a routing backend is stale; 1: degraded but serving; 0: every
        cloud in rotation is healthy and every backend holds the decision."""
        states = [
            r.machine.state for r in self.records.values() if r.machine.state is not HealthState.DRAINED
        ]
        if not any(s is HealthState.HEALTHY for s in states):
            return 2
        if self.stale:
            return EXIT_STALE_BACKEND
        return 0 if all(s is HealthState.HEALTHY for s in states) else 1


def flip_dict(flip: Flip) -> dict[str, Any]:
    """A flip as the JSON outputs show it (times in unix seconds, states by name)."""
    return {
        "cloud": flip.cloud,
        "at": flip.at,
        "old": flip.old.value,
        "new": flip.new.value,
        "reason": flip.reason,
        "actor": flip.actor,
    }
