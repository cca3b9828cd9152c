"""Cloud-neutral types shared by health, routing and state: the vocabulary of the control plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Flip", "HealthState"]


class HealthState(StrEnum):
    """A cloud's state as the control plane sees it.

    healthy    serves the expected model, correctly, within the latency SLO
    degraded   serves, but too slowly or the wrong version: no share while healthy clouds can carry it
    unhealthy  does not answer, is not ready, or answers wrongly: never routed to
    drained    taken out of rotation by an operator (``orchestrator failover``): never routed to
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DRAINED = "drained"

    @property
    def routable(self) -> bool:
        return self in (HealthState.HEALTHY, HealthState.DEGRADED)


@dataclass(frozen=True)
class Flip:
    """One state change of one cloud: what changed, when, why and (for operator actions) by whom."""

    cloud: str
    at: float  # unix seconds
    old: HealthState
    new: HealthState
    reason: str
    actor: str = "health-check"  # "health-check", or the operator's user name
    details: dict[str, Any] = field(default_factory=dict)
