"""Put the committed routing decision into effect at every backend, each on its own, and repair drift.

A command first commits its decision (the desired weights, :meth:`StateStore.save_desired`) in a
short state transaction; only then are backends written, here. :class:`Reconciler` does not trust
its own memory of what it wrote: for every backend it reads what the backend holds now
(:meth:`RoutingBackend.compare`) and rewrites it when it differs from the desired weights, so a
deleted or corrupted routing file, a record changed by hand, a backend added to the configuration,
or a write that a concurrent command made with an older decision are all repaired by the next
reconciliation. Every ``--apply`` round, ``route --apply``, ``failover`` and ``failback`` runs one.

Backends are independent. Each has its own worker thread, which reads the desired weights when it
starts and brings its backend to them; one that fails (Route 53 unreachable, a disk full) is
reported stale with its error while the others are brought up to date, and nothing here raises for
a backend's failure. A caller may wait for the workers only so long (:meth:`Reconciler.run`'s
``wait``, which the watch uses): a backend that does not answer in that time is reported stale as
still pending, its worker goes on, and the next run reports how it ended, so a black-holed API
delays neither the other backends nor the next round's probes. Asked again while still busy, a
worker runs once more when it is done, with the decision committed by then; requests never queue up.

Why the decision is read again after a write: two commands may commit decisions D1 then D2 and
reconcile concurrently, the slower one writing D1 after D2. Whoever writes re-reads the desired
weights afterwards and writes again if they moved on, so the last write to each backend is checked
against the last decision; at most :data:`RECONCILE_PASSES` passes, then the next reconciliation
finishes the job. A backend that failed is not tried again in the same run.

Fencing: with several vantage points, only the leader reconciles, and every read and write
carries the leader lease's epoch (``read_fence``, read by each worker when it starts); a backend
that a newer leader has written refuses it (:class:`~orchestrator.control.errors.Fenced`), which
is reported here as that backend being stale, like any other failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from orchestrator.control.routing.backends import RoutingBackend
from orchestrator.control.store.base import BackendStatus, DesiredWeights
from orchestrator.core.errors import OrchestratorError, StorageError

__all__ = ["PENDING_STALE_S", "RECONCILE_PASSES", "BackendResult", "Reconciler"]

# One pass writes what is out of date; a second one checks the write against a decision that may
# have been committed meanwhile; a third covers a decision committed during the second. More
# would only chase a burst of commands, each of which reconciles after its own commit anyway.
RECONCILE_PASSES = 3
# An error is a line in a table and in the state, not a dump.
MAX_ERROR = 300
# A backend still at work is stale once it has been at it this long: the file answers in
# milliseconds and a Route 53 call in-region in about 100 ms, so a second is late by any healthy
# API's standards, and shorter waits (a round that stopped waiting early) are not worth a warning.
PENDING_STALE_S = 1.0


@dataclass(frozen=True)
class BackendResult:
    """One backend after a reconciliation.

    ``ok``: it holds the desired weights now. ``wrote``: this reconciliation rewrote it.
    ``differences``: what differed when it was first read (drift, or a new decision). ``in_effect``:
    the weights it holds now as far as known (None when it could not be read). ``error``: why it is
    stale (it could not be read or written, or it has not answered yet). ``pending``: its worker
    was still at it when the caller stopped waiting (then ``ok`` is False), for ``busy_s``."""

    kind: str
    location: str
    ok: bool
    wrote: bool
    in_effect: dict[str, int] | None
    differences: tuple[str, ...]
    error: str | None
    at: float
    pending: bool = False
    busy_s: float = 0.0

    @property
    def stale(self) -> bool:
        """It does not hold the decision: it failed, or has been at it for PENDING_STALE_S or more."""
        return not self.ok and (not self.pending or self.busy_s >= PENDING_STALE_S)

    def status(self) -> BackendStatus:
        """What the state records of this result (see :meth:`StateStore.record_backends`)."""
        return BackendStatus(self.location, self.kind, self.ok, self.in_effect, self.error, self.at)


ReadDesired = Callable[[], DesiredWeights | None]
ReadFence = Callable[[], int | None]


class Reconciler:
    """Keeps ``backends`` at the committed decision (``read_desired()``, read by each worker when it
    starts), each backend in its own daemon thread, started on first use. ``targets`` maps each
    configured cloud to its endpoint URL. :meth:`close` when done."""

    def __init__(
        self,
        backends: Sequence[RoutingBackend],
        targets: Mapping[str, str],
        read_desired: ReadDesired,
        *,
        clock: Callable[[], float] = time.time,
        read_fence: ReadFence | None = None,
    ) -> None:
        self.clock = clock
        fence = read_fence or _no_fence
        self._workers = [
            _Worker(backend, lambda b=backend: _reconcile_backend(b, targets, read_desired, clock, fence))  # type: ignore[misc]
            for backend in backends
        ]

    def run(self, *, wait: float | None = None) -> list[BackendResult]:
        """Reconcile every backend to the decision committed now; one result per backend, in
        order (none when no decision was ever committed). ``wait``: the longest to wait for the
        backends, in seconds (None: until each has finished, which their own timeouts bound); one
        still at work after that is reported stale and ``pending``."""
        deadline = None if wait is None else time.monotonic() + wait
        tickets = [worker.request() for worker in self._workers]
        results = []
        for worker, ticket in zip(self._workers, tickets, strict=True):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = worker.wait(ticket, left)
            if result is None and worker.busy:
                result = worker.pending(self.clock())
            if result is not None:
                results.append(result)
        return results

    def close(self) -> None:
        """Stop the workers (one still in a backend call finishes it on its own: it is a daemon)."""
        for worker in self._workers:
            worker.close()


class _Worker:
    """One backend's thread: runs ``job`` whenever asked, one run at a time, later requests that
    arrive during a run merged into one more run after it."""

    def __init__(self, backend: RoutingBackend, job: Callable[[], BackendResult | None]) -> None:
        self.backend = backend
        self._job = job
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._done = 0  # the last ticket a finished run covered
        self._result: BackendResult | None = None
        self._last: BackendResult | None = None  # the last result with a reading of the backend
        self._running_since: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running_since is not None or self._requested > self._done

    def request(self) -> int:
        with self._cond:
            self._requested += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"reconcile {self.backend.kind}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
            return self._requested

    def wait(self, ticket: int, timeout: float | None) -> BackendResult | None:
        with self._cond:
            self._cond.wait_for(lambda: self._done >= ticket or self._closed, timeout)
            return self._result if self._done >= ticket else None

    def pending(self, now: float) -> BackendResult:
        with self._cond:
            since = self._running_since if self._running_since is not None else time.monotonic()
            last = self._last
        busy_for = time.monotonic() - since
        return BackendResult(
            kind=self.backend.kind,
            location=self.backend.location,
            ok=False,
            wrote=False,
            in_effect=last.in_effect if last is not None else None,
            differences=(),
            error=f"no answer yet after {busy_for:.1f} s (still trying; the next round says how it ended)",
            at=now,
            pending=True,
            busy_s=busy_for,
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._done or self._closed)
                if self._closed:
                    return
                ticket = self._requested
                self._running_since = time.monotonic()
            try:
                result = self._job()
            except Exception as exc:  # a worker never dies: its backend is stale, and said so
                result = BackendResult(
                    self.backend.kind, self.backend.location, False, False, None, (), _error(exc), time.time()
                )
            with self._cond:
                self._done, self._result, self._running_since = ticket, result, None
                if result is not None and result.in_effect is not None:
                    self._last = result
                self._cond.notify_all()


def _reconcile_backend(
    backend: RoutingBackend,
    targets: Mapping[str, str],
    read_desired: ReadDesired,
    clock: Callable[[], float],
    read_fence: ReadFence,
) -> BackendResult | None:
    """Bring one backend to the latest decision: up to RECONCILE_PASSES passes, another only when
    this one wrote and the decision moved on meanwhile. None when nothing was ever decided."""
    first: BackendResult | None = None
    result: BackendResult | None = None
    written: dict[str, int] | None = None
    for _ in range(RECONCILE_PASSES):
        desired = read_desired()
        if desired is None or (written is not None and desired.weights == written):
            break
        result = _one(backend, desired, targets, clock, read_fence())
        first = first or result
        if not result.wrote:
            break
        written = desired.weights
    if result is None or first is None:
        return None
    return replace(result, wrote=written is not None or result.wrote, differences=first.differences)


def _one(
    backend: RoutingBackend,
    desired: DesiredWeights,
    targets: Mapping[str, str],
    clock: Callable[[], float],
    fence: int | None,
) -> BackendResult:
    in_effect: dict[str, int] | None = None
    differences: tuple[str, ...] = ()

    def result(*, ok: bool, wrote: bool, error: str | None = None) -> BackendResult:
        return BackendResult(
            backend.kind, backend.location, ok, wrote, in_effect, differences, error, clock()
        )

    try:
        if fence is None:  # unfenced: the calls as a lone job makes them
            comparison = backend.compare(desired.weights, targets)
        else:
            comparison = backend.compare(desired.weights, targets, fence=fence)
        in_effect, differences = comparison.in_effect, comparison.differences
        if comparison.in_sync:
            return result(ok=True, wrote=False)
        if fence is None:
            backend.apply(desired.weights, targets, reason=desired.reason)
        else:
            backend.apply(desired.weights, targets, reason=desired.reason, fence=fence)
    except Exception as exc:  # one backend's failure is its own: reported, never raised
        return result(ok=False, wrote=False, error=_error(exc))
    in_effect = {**in_effect, **desired.weights} if in_effect else dict(desired.weights)
    return result(ok=True, wrote=True)


def _no_fence() -> int | None:
    return None


def _error(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StorageError) and exc.uri:
        text = text.removeprefix(f"{exc.uri}: ")  # the result names the backend already
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR else flat[: MAX_ERROR - 3] + "..."
