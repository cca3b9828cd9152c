"""The rollout record in the state store: what a rollout is doing, so that another process can
finish it or undo it.

One record (``StateStore.rollout()``), a JSON object::

    {"id", "model", "channel", "version", "baseline", "order": [...], "plan": {...},
     "status": "running" | "rolling-back" | "succeeded" | "rolled-back",
     "stage": 0, "phase": "move" | "serve" | "bake" | "done",
     "moved": ["aws", ...],            # clouds whose pointer may name the new version (intent first)
     "caps": {"aws": 10},              # the most weight each cloud may get now (0: none yet)
     "before": {"aws": {...}, ...},    # /metrics at the bake's start, per cloud (the gates' baseline)
     "probes": 0, "probe_failures": [...],   # the bake's probes; the first failures' reasons
     "failed_probes": 0, "failed_in_row": 0,  # failed probes in the bake, and the current run of them
     "failing_since": null,            # when the steps started failing (absent while they succeed)
     "verdicts": [{"stage", "cloud", "gate", "status", "reason", "values"}, ...],
     "holder", "heartbeat_at", "started_at", "phase_started_at", "finished_at",
     "reason", "failed_at", "rolled_back_at"}

Every change is one short transaction that first checks the record is still this holder's (a
rollout taken over by the health job stops its command: :class:`RolloutTakenOver`). No network
I/O happens inside one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.core.errors import OrchestratorError

__all__ = [
    "ACTIVE",
    "EXIT_ROLLED_BACK",
    "RolloutFailed",
    "RolloutTakenOver",
    "is_active",
    "weight_caps",
]

# The statuses in which a rollout still has work to do (and holds the clouds' weights capped).
ACTIVE = ("running", "rolling-back")
# `rollout`: a gate failed (or --abort) and every moved cloud was moved back: the version is bad,
# the fleet is as before. Distinct from 1 (an error: the rollout may not have finished).
EXIT_ROLLED_BACK = 7


class RolloutFailed(OrchestratorError):
    """The rollout was rolled back (a gate failed, or it was aborted); exit :data:`EXIT_ROLLED_BACK`."""

    exit_code = EXIT_ROLLED_BACK


class RolloutTakenOver(OrchestratorError):
    """Another process (the health job) holds this rollout now, or a newer one replaced it."""


def is_active(record: Mapping[str, Any] | None) -> bool:
    """Whether ``record`` is a rollout with work left (running or rolling back)."""
    return record is not None and record.get("status") in ACTIVE


def weight_caps(record: Mapping[str, Any] | None) -> dict[str, int]:
    """The weight caps an active rollout puts on clouds (cloud -> the most it may get), {} otherwise.
    A malformed entry is ignored (the router then decides as without a rollout)."""
    if not is_active(record):
        return {}
    assert record is not None
    caps = record.get("caps")
    if not isinstance(caps, Mapping):
        return {}
    return {
        str(cloud): cap
        for cloud, cap in caps.items()
        if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap <= 100
    }
