"""Where a routing decision takes effect: one small interface, one module per backend.

    backend = open_backend("route53", {"hosted_zone_id": "Z123", "record_name": "model.example.com."})
    backend.compare({"aws": 70, "gcp": 30, "azure": 0}, targets)   # what differs from that routing
    applied = backend.apply({"aws": 70, "gcp": 30, "azure": 0}, targets, reason="azure unhealthy")
    backend.current()                                   # {"aws": 70, "gcp": 30, "azure": 0}

``targets`` maps each cloud key to its endpoint's base URL (``clouds.<cloud>.endpoint``).
Backends: :mod:`.route53` (one weighted CNAME per cloud, all changed in one atomic batch) and
:mod:`.file` (an atomically replaced JSON routing table, for development and for proxies).
Their modules, and the SDKs they need, are imported only when :func:`open_backend` opens one.

This package owns the I/O of routing only. Deciding the weights is the router's job; it hands
over integers in 0..255 that are not all zero (Route 53 would read all-zero as "equal shares",
see :mod:`.route53`), and every backend refuses anything else rather than guess. Keeping every
backend equal to the committed decision, each on its own, is :mod:`orchestrator.control.routing.reconcile`'s.
Errors are the project's tree: settings → ConfigError; the backend's service → NotFound,
PermissionDenied, TransientError (retried) or StorageError.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, Self

from orchestrator.core.contract import CLOUDS
from orchestrator.core.errors import ConfigError

__all__ = [
    "BACKENDS",
    "MAX_WEIGHT",
    "AppliedRouting",
    "Comparison",
    "RoutingBackend",
    "check_settings",
    "checked_weights",
    "fence_difference",
    "open_backend",
    "untargeted_zero",
]

# Route 53 accepts 0..255 per weighted record; the file backend keeps the same range so that any
# decision one backend accepts, the other does too.
MAX_WEIGHT = 255
# kind -> module under this package; imported on demand (boto3 only for route53).
BACKENDS: Mapping[str, str] = {"route53": "route53", "file": "file"}


@dataclass(frozen=True, slots=True)
class AppliedRouting:
    """What one :meth:`RoutingBackend.apply` put into effect.

    ``targets`` is what each cloud now points at as the backend stores it (Route 53: the CNAME's
    host name; file: the endpoint URL). ``change_id`` identifies the change at the backend: a
    Route 53 change id (``GetChange`` says when it reached every name server) or the routing
    file's version. ``at`` is when the backend accepted it, in unix seconds.
    """

    backend: str
    location: str
    weights: dict[str, int]
    targets: dict[str, str]
    change_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """What a backend holds, against a routing it should hold: the weights in effect (of the
    clouds it has an entry for) and, one line each, what differs (empty: it holds exactly that)."""

    in_effect: dict[str, int]
    differences: tuple[str, ...]

    @property
    def in_sync(self) -> bool:
        """The backend holds exactly the routing compared against."""
        return not self.differences


class RoutingBackend(Protocol):
    """A place where per-cloud weights take effect."""

    kind: str  # "route53", "file"
    location: str  # where, for messages: "route53 zone Z123 record model.example.com."

    def apply(
        self,
        weights: Mapping[str, int],
        targets: Mapping[str, str],
        *,
        reason: str = "",
        fence: int | None = None,
    ) -> AppliedRouting:
        """Make ``weights`` (cloud -> 0..255) the routing, pointing each cloud at ``targets[cloud]``,
        in one atomic step. Clouds absent from ``weights`` are left as they are. ``reason`` (what
        decided it) is recorded where the backend can keep it. Idempotent.

        ``fence``: the leader lease's epoch this write is made under (:mod:`orchestrator.control.vantage`).
        The backend keeps the highest epoch it accepted, in the same atomic step as the weights,
        and refuses a lower one with :class:`~orchestrator.control.errors.Fenced`, changing
        nothing. None (one health job, an operator's command): no check, the epoch kept."""
        ...

    def current(self) -> dict[str, int]:
        """The weights in effect now, read back from the backend ({} if it holds none)."""
        ...

    def compare(
        self, weights: Mapping[str, int], targets: Mapping[str, str], *, fence: int | None = None
    ) -> Comparison:
        """Read the backend and say how it differs from ``weights`` pointing at ``targets``: a
        missing or unreadable table, a missing record, another weight or (where the backend owns
        it) another target; with ``fence``, an epoch other than it. Raises only when the backend
        cannot be reached at all."""
        ...

    def close(self) -> None:
        """Release connections; the backend may not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None:
        """Calls :meth:`close`."""


def open_backend(kind: str, settings: Mapping[str, str]) -> RoutingBackend:
    """Open the routing backend ``kind`` ("route53" or "file") with its ``settings``."""
    if kind not in BACKENDS:
        raise ConfigError(f"unknown routing backend {kind!r}; choose one of: {', '.join(BACKENDS)}")
    module = importlib.import_module(f"{__name__}.{BACKENDS[kind]}")
    backend: RoutingBackend = module.open_from_settings(settings)
    return backend


def check_settings(kind: str, settings: Mapping[str, str], *, required: set[str], optional: set[str]) -> None:
    """Refuse unknown and missing settings, naming them (a typo must not silently mean a default)."""
    if unknown := sorted(settings.keys() - required - optional):
        allowed = ", ".join(sorted(required | optional))
        raise ConfigError(
            f"{kind} routing backend: unknown setting(s) {', '.join(unknown)} (allowed: {allowed})"
        )
    if missing := sorted(key for key in required if not settings.get(key)):
        raise ConfigError(f"{kind} routing backend: setting(s) {', '.join(missing)} required")


def checked_weights(weights: Mapping[str, int], targets: Mapping[str, str], *, kind: str) -> dict[str, int]:
    """``weights`` as a plain dict after the checks every backend shares: known cloud keys, integers
    in 0..MAX_WEIGHT, not all zero, and a target for every cloud with a positive weight (a cloud
    with weight 0 and no target, one no longer configured, is only taken to 0 where it has an entry).

    A bad weight is the caller's bug (ValueError); a cloud without an endpoint is a configuration
    gap (ConfigError).
    """
    if not weights:
        raise ValueError("no weights to apply")
    checked: dict[str, int] = {}
    for cloud, weight in weights.items():
        if cloud not in CLOUDS:
            raise ValueError(f"unknown cloud {cloud!r} in weights (clouds: {', '.join(CLOUDS)})")
        # bool is an int subclass; True as a weight is a bug, not 1.
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of {cloud} must be an integer in 0..{MAX_WEIGHT}, not {weight!r}")
        if weight and not targets.get(cloud):
            raise ConfigError(
                f"{kind} routing backend: cloud {cloud} has a weight but no endpoint to route to"
            )
        checked[cloud] = weight
    if not any(checked.values()):
        raise ValueError(
            "refusing to apply all-zero weights: Route 53 would split traffic equally among all of them, "
            "drained and unhealthy clouds included; keep the last applied weights instead (panic rule)"
        )
    return checked


def untargeted_zero(cloud: str, weight: int, targets: Mapping[str, str]) -> bool:
    """A weight that only takes an entry to 0 if there is one: a cloud with no target (no longer
    configured) and weight 0. Its absence from a backend is no difference."""
    return weight == 0 and not targets.get(cloud)


def fence_difference(held: int, fence: int | None) -> tuple[str, ...]:
    """What :meth:`RoutingBackend.compare` reports for the epoch ``held`` against ``fence``."""
    if fence is None or held == fence:
        return ()
    if held > fence:
        return (f"fenced: a newer leader (epoch {held}) wrote it; this one has epoch {fence}",)
    return (f"leader epoch {held}, now {fence}",)
