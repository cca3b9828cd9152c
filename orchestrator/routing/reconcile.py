"""Put the committed routing decision into effect at every backend, each on its own, and repair drift.

A command first commits its decision (the desired weights, :meth:`StateStore.save_desired`) in a
short state transaction; only then are backends written, here. :func:`reconcile` does not trust
its own memory of what it wrote: for every backend it reads what the backend holds now
(:meth:`RoutingBackend.compare`) and rewrites it when it differs from the desired weights, so a
deleted or corrupted routing file, a record changed by hand, a backend added to the configuration,
or a write that a concurrent command made with an older decision are all repaired by the next
reconciliation. Every ``--apply`` round, ``route --apply``, ``failover`` and ``failback`` runs one.

Backends are independent: each is read and written in its own thread, and one that fails (Route 53
unreachable, a disk full) is reported stale with its error while the others are brought up to
date. Nothing here raises for a backend's failure.

Why the decision is read again (from the store) before every pass, and a pass repeated after a
write: two commands may commit decisions D1 then D2 and reconcile concurrently, the slower one
writing D1 after D2. Whoever writes re-reads the desired weights afterwards and writes again if
they moved on, so the last write to each backend is checked against the last decision; at most
:data:`RECONCILE_PASSES` passes, then the next round's reconciliation finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from orchestrator.errors import OrchestratorError, StorageError
from orchestrator.routing.backends import RoutingBackend
from orchestrator.state.base import BackendStatus, DesiredWeights

__all__ = ["RECONCILE_PASSES", "BackendResult", "reconcile"]

# One pass writes what is out of date; a second one checks the write against a decision that may
# have been committed meanwhile; a third covers a decision committed during the second. More
# would only chase a burst of commands, each of which reconciles after its own commit anyway.
RECONCILE_PASSES = 3
# An error is a line in a table and in the state, not a dump.
MAX_ERROR = 300


@dataclass(frozen=True)
class BackendResult:
    """One backend after a reconciliation.

    ``ok``: it holds the desired weights now. ``wrote``: this reconciliation rewrote it.
    ``differences``: what differed when it was first read (drift, or a new decision). ``in_effect``:
    the weights it holds now as far as known (None when it could not be read). ``error``: why it is
    stale (it could not be read or written)."""

    kind: str
    location: str
    ok: bool
    wrote: bool
    in_effect: dict[str, int] | None
    differences: tuple[str, ...]
    error: str | None
    at: float

    def status(self) -> BackendStatus:
        return BackendStatus(self.location, self.kind, self.ok, self.in_effect, self.error, self.at)


def reconcile(
    backends: Sequence[RoutingBackend],
    targets: Mapping[str, str],
    read_desired: Callable[[], DesiredWeights | None],
    *,
    clock: Callable[[], float] = time.time,
) -> list[BackendResult]:
    """Bring every backend to the desired weights (``read_desired()``, read before each pass);
    one result per backend, in the order given. No desired weights yet: nothing is written."""
    if not backends:
        return []
    first: dict[str, BackendResult] = {}
    wrote: set[str] = set()
    results: list[BackendResult] = []
    with ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="reconcile") as pool:
        for _ in range(RECONCILE_PASSES):
            desired = read_desired()
            if desired is None:
                break
            results = list(pool.map(lambda b, d=desired: _one(b, d, targets, clock), backends))
            for result in results:
                first.setdefault(result.location, result)
                if result.wrote:
                    wrote.add(result.location)
            if not any(r.wrote for r in results):
                break
    return [
        BackendResult(
            kind=r.kind,
            location=r.location,
            ok=r.ok,
            wrote=r.location in wrote,
            in_effect=r.in_effect,
            differences=first[r.location].differences,
            error=r.error,
            at=r.at,
        )
        for r in results
    ]


def _one(
    backend: RoutingBackend, desired: DesiredWeights, targets: Mapping[str, str], clock: Callable[[], float]
) -> BackendResult:
    in_effect: dict[str, int] | None = None
    differences: tuple[str, ...] = ()

    def result(*, ok: bool, wrote: bool, error: str | None = None) -> BackendResult:
        return BackendResult(
            backend.kind, backend.location, ok, wrote, in_effect, differences, error, clock()
        )

    try:
        comparison = backend.compare(desired.weights, targets)
        in_effect, differences = comparison.in_effect, comparison.differences
        if comparison.in_sync:
            return result(ok=True, wrote=False)
        backend.apply(desired.weights, targets, reason=desired.reason)
    except Exception as exc:  # one backend's failure is its own: reported, never raised
        return result(ok=False, wrote=False, error=_error(exc))
    in_effect = dict(desired.weights)
    return result(ok=True, wrote=True)


def _error(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StorageError) and exc.uri:
        text = text.removeprefix(f"{exc.uri}: ")  # the result names the backend already
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR else flat[: MAX_ERROR - 3] + "..."
