"""The state store's interface (:class:`StateStore`), its value types, and the checks every backend
applies before writing.

Backends: :mod:`.sqlite` (a local file; transactions take a lock) and :mod:`.objectstore` (one JSON
document in S3, GCS or Azure; transactions are optimistic). Both honour the same contract, tested
once for all of them in ``tests/control/store/test_contract.py``.
"""

from __future__ import annotations

import abc
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, TypeVar

from orchestrator.control.errors import LeaseHeld, StateConflict
from orchestrator.control.types import Flip
from orchestrator.core.contract import CLOUDS

__all__ = [
    "BUSY_TIMEOUT",
    "DEFAULT_FLIP_LIMIT",
    "HEALTH_JOB_LEASE",
    "MAX_LEASE_S",
    "MAX_ROLLOUT_BYTES",
    "STEP_ATTEMPTS",
    "BackendStatus",
    "DesiredWeights",
    "Lease",
    "Override",
    "StateStore",
    "check_cloud",
    "check_rollout",
    "check_weights",
    "finite",
    "parse_backend",
    "parse_lease",
    "text",
]

T = TypeVar("T")

# How long a command waits for other commands' writes. SQLite: the busy timeout on its write lock.
# Object storage: the time after which a lost commit race is no longer retried. No transaction
# does network I/O (probes and routing changes happen before or after it: see orchestrator.control),
# so each holds SQLite's lock for milliseconds; 5 s is a hundred such commits queued ahead, and an
# operator's command that waits longer is told so instead of hanging.
BUSY_TIMEOUT = 5.0
# The lease the scheduled health job (`health --once`, `health --watch`) holds while it runs.
HEALTH_JOB_LEASE = "health-job"
# The longest a lease is ever taken for. The health job's covers its longest round, and for the
# watch one interval more, plus a minute of slack (ControlPlane.lease_ttl): at the configuration's
# bounds (10 samples of 10 s, a 300 s interval with 50 % jitter) about 9 minutes. A stored lease
# expiring further than this from now was written by a clock that has since stepped back, or runs
# ahead of ours: it is treated as expired, so a clock step never blocks the job for longer than
# this, and its holder, if alive, is fenced by the epoch at its next commit.
MAX_LEASE_S = 900.0
# A rollout record holds a plan, three clouds' stages and a few dozen gate verdicts: a few kB. The
# bound keeps the state document (rewritten whole at every commit) small whatever is put in it.
MAX_ROLLOUT_BYTES = 64 * 1024
# What `orchestrator status` shows by default.
DEFAULT_FLIP_LIMIT = 20
# How often :meth:`StateStore.atomically` runs a step whose commit found its reads stale. Each
# failed run means another command committed in between, so some command always progresses, but
# a step can lose several times in a row while a burst lasts (four writers committing with no pause
# made one step run 7 times). 20 runs, with a growing jittered backoff between them, ride out such
# bursts and still give up within seconds, rather than hang, when something keeps writing.
STEP_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's decision about one cloud: drained (out of rotation) or returned to it."""

    cloud: str
    drained: bool
    reason: str
    actor: str
    at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class DesiredWeights:
    """The routing decision committed last, when and why: what every routing backend must hold.
    Backends are written only after it is committed, and each is reconciled to it."""

    weights: dict[str, int]
    at: float  # unix seconds
    reason: str


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """What the last reconciliation found at one routing backend (``location`` names it)."""

    location: str
    kind: str  # "route53", "file"
    ok: bool  # it holds the desired weights
    in_effect: dict[str, int] | None  # the weights read back; None when it could not be read
    error: str | None  # why it is stale, when it is
    at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class Lease:
    """A time-limited claim on a job: ``holder`` runs it until ``expires_at`` (unix seconds).

    ``epoch`` grows by one whenever the holder changes, so a holder that was frozen past its
    expiry and taken over can tell (its epoch is no longer the stored one) and must stop. Built
    on :meth:`StateStore.acquire_lease`, :meth:`~StateStore.renew_lease` and
    :meth:`~StateStore.release_lease`, each one short transaction."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float
    epoch: int

    def live(self, now: float) -> bool:
        """Held at ``now``: not expired, and not expiring later than any holder takes a lease for
        (:data:`MAX_LEASE_S`; such an expiry comes from a clock that has stepped since)."""
        return now < self.expires_at <= now + MAX_LEASE_S


class StateStore(abc.ABC):
    """The control plane's persistent state. Use as a context manager, or call :meth:`close`.

    Every method is atomic on its own. :meth:`transaction` makes several calls one atomic step;
    use the object it yields inside the block. :meth:`atomically` also repeats the step when an
    optimistic backend could not commit it.
    """

    location: str  # for messages
    _clock: Callable[[], float]

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> StateStore:
        """Open the state at ``location`` (see :func:`orchestrator.control.store.open_state`)."""
        from orchestrator.control.store import open_state  # the package dispatches on the location

        return open_state(location, settings=settings, busy_timeout=busy_timeout, clock=clock)

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[StateStore]:
        """Everything done inside the block, through the yielded store or (from the same thread)
        the store itself, commits together when the block exits normally, and not at all if it
        raises. Concurrent transactions never see each other's partial writes and never
        overwrite each other's reads: one waits for the other (SQLite), or (object storage) the
        one that loses the race re-applies its writes to the newer state when nothing it read
        has changed, and otherwise raises :class:`~orchestrator.control.errors.StateConflict` at exit
        with nothing written, to be repeated by the caller (:meth:`atomically`). Transactions
        nest: an inner block that raises undoes only its own writes."""

    def atomically(self, step: Callable[[], T], *, attempts: int = STEP_ATTEMPTS) -> T:
        """Run ``step()`` in a transaction and return what it returns (the step reads and writes
        through this store: from the same thread, that is the transaction); if the commit raises
        StateConflict, run the whole step again on the state as it is now, up to ``attempts``
        times (then the last StateConflict propagates). Inside another transaction the step
        joins it, and the outer transaction's caller decides.

        ``step`` must be safe to run more than once: the store discards the writes of a failed
        run, but anything else it did (a probe, a routing change) has happened. Idempotent
        actions, such as applying a set of weights, are fine."""
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    return step()
            except StateConflict:
                if attempt == attempts:
                    raise
                self._before_rerun(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_rerun(self, attempt: int) -> None:  # noqa: B027  # optional hook, a no-op for SQLite
        """Called by :meth:`atomically` after run ``attempt`` of a step hit StateConflict: an
        optimistic store backs off here, so steps that keep colliding spread out."""

    @abc.abstractmethod
    def record_flips(self, flips: Iterable[Flip]) -> None:
        """Append flips to the history."""

    @abc.abstractmethod
    def recent_flips(self, limit: int | None = DEFAULT_FLIP_LIMIT, cloud: str | None = None) -> list[Flip]:
        """The newest ``limit`` flips (all kept if None), newest first, of one cloud or all; ties
        in time go to the one recorded later."""

    @abc.abstractmethod
    def set_override(
        self, cloud: str, *, drained: bool, reason: str, actor: str, at: float | None = None
    ) -> Override:
        """Record an operator's drain (``drained=True``) or return to rotation (False), made at
        ``at`` (unix seconds; default now: a replica copied from another vantage point keeps the
        time the operator made it, so the newest override wins everywhere)."""

    @abc.abstractmethod
    def overrides(self) -> dict[str, Override]:
        """The latest override of every cloud that has one, drained or not."""

    def drained(self) -> set[str]:
        """The clouds an operator has drained and not returned to rotation."""
        return {cloud for cloud, override in self.overrides().items() if override.drained}

    @abc.abstractmethod
    def save_desired(self, weights: Mapping[str, int], reason: str) -> DesiredWeights:
        """Commit a routing decision: the weights every backend must hold from now on."""

    @abc.abstractmethod
    def desired(self) -> DesiredWeights | None:
        """The routing decision saved last, or None if none was ever saved."""

    @abc.abstractmethod
    def record_backends(self, statuses: Iterable[BackendStatus]) -> None:
        """Record what reconciling each backend found (replacing its previous status)."""

    @abc.abstractmethod
    def backends(self) -> dict[str, BackendStatus]:
        """The last recorded status of every backend, by location."""

    @abc.abstractmethod
    def rollout(self) -> dict[str, Any] | None:
        """The progressive rollout in progress, or the last one finished (its record as
        :mod:`orchestrator.control.rollout.record` writes it); None if there never was one."""

    @abc.abstractmethod
    def save_rollout(self, record: Mapping[str, Any]) -> None:
        """Replace the rollout record (a JSON object, at most :data:`MAX_ROLLOUT_BYTES` encoded)."""

    @abc.abstractmethod
    def lease(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (live or expired), or None if it was never taken."""

    @abc.abstractmethod
    def put_lease(self, lease: Lease) -> None:
        """Store ``lease`` as it is (the methods below decide what it is)."""

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease:
        """Take the lease ``name`` for ``holder`` until ``ttl_s`` from now: if it is free, expired,
        or already ``holder``'s. Raises :class:`~orchestrator.control.errors.LeaseHeld` while another
        holder's lease is live. One short transaction."""
        _check_ttl(ttl_s)

        def step() -> Lease:
            now = self._clock()
            current = self.lease(name)
            if current is not None and current.holder != holder and current.live(now):
                raise LeaseHeld(
                    f"{current.holder} holds the {name} lease until "
                    f"{time.strftime('%H:%M:%S', time.localtime(current.expires_at))} "
                    f"({current.expires_at - now:.0f} s from now): another health job is running "
                    f"on this state ({self.location}); try again later",
                    holder=current.holder,
                    expires_at=current.expires_at,
                )
            same = current is not None and current.holder == holder
            lease = Lease(
                name=name,
                holder=holder,
                acquired_at=current.acquired_at if same and current is not None else now,
                expires_at=now + ttl_s,
                epoch=(current.epoch if same else current.epoch + 1) if current is not None else 1,
            )
            self.put_lease(lease)
            return lease

        return self.atomically(step)

    def renew_lease(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``ttl_s`` from now; LeaseHeld if another holder took it over (its
        epoch moved on). A lease absent from the state (deleted or replaced under the job) is
        taken again as it was: nobody else holds it. Inside a transaction it joins it, fencing
        that transaction's commit."""
        _check_ttl(ttl_s)

        def step() -> Lease:
            current = self.lease(lease.name)
            if current is None:
                current = lease
            elif (current.holder, current.epoch) != (lease.holder, lease.epoch):
                raise LeaseHeld(
                    f"lost the {lease.name} lease: {current.holder} holds it now; stopping so that "
                    "one job runs",
                    holder=current.holder,
                    expires_at=current.expires_at,
                )
            renewed = replace(current, expires_at=self._clock() + ttl_s)
            self.put_lease(renewed)
            return renewed

        return self.atomically(step)

    def release_lease(self, lease: Lease) -> None:
        """End ``lease`` now, if it is still ours (the next holder then takes it at once)."""

        def step() -> None:
            current = self.lease(lease.name)
            if current is not None and (current.holder, current.epoch) == (lease.holder, lease.epoch):
                self.put_lease(replace(current, expires_at=min(current.expires_at, self._clock())))

        self.atomically(step)

    @abc.abstractmethod
    def load_machines(self) -> dict[str, dict[str, Any]]:
        """Each cloud's saved health state machine memory, as saved."""

    @abc.abstractmethod
    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        """Save the memory of the given clouds' machines (others are kept as they are)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; it may not be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_ttl(ttl_s: float) -> None:
    if not 0 < ttl_s <= MAX_LEASE_S:
        raise ValueError(f"a lease's ttl must be in (0, {MAX_LEASE_S:g}] s, not {ttl_s!r}")


def check_rollout(record: object) -> dict[str, Any]:
    """``record`` as a plain JSON object if it is one of at most :data:`MAX_ROLLOUT_BYTES`
    (ValueError otherwise): what any store accepts as a rollout record."""
    import orjson

    if not isinstance(record, Mapping):
        raise TypeError("a rollout record is a JSON object")
    encoded = orjson.dumps(dict(record))
    if len(encoded) > MAX_ROLLOUT_BYTES:
        raise ValueError(f"a rollout record is at most {MAX_ROLLOUT_BYTES} bytes")
    loaded: dict[str, Any] = orjson.loads(encoded)
    return loaded


def check_cloud(cloud: str) -> str:
    """``cloud`` if it is one of :data:`~orchestrator.control.types.CLOUDS`, else ValueError."""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r} (clouds: {', '.join(CLOUDS)})")
    return cloud


def check_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """A copy of ``weights`` once every cloud is known and every weight an integer in 0..255."""
    checked: dict[str, int] = {}
    for cloud, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 255:
            raise ValueError(f"weight of {cloud} must be an integer in 0..255, not {_shown(weight)}")
        checked[check_cloud(cloud)] = weight
    return checked


def finite(value: object, what: str) -> float:
    """``value`` as a float if it is a finite number (not a bool), else TypeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{what}: expected a finite number, not {_shown(value)}")
    return float(value)


def text(value: object, what: str) -> str:
    """``value`` if it is a string, else TypeError naming ``what``."""
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a string, not {_shown(value)}")
    return value


def parse_lease(name: str, row: Mapping[str, Any]) -> Lease:
    """A stored lease; TypeError/ValueError/KeyError naming the field when it is malformed."""
    epoch = row["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"leases.{name}.epoch: expected a positive integer, not {_shown(epoch)}")
    return Lease(
        name=name,
        holder=text(row["holder"], f"leases.{name}.holder"),
        acquired_at=finite(row["acquired_at"], f"leases.{name}.acquired_at"),
        expires_at=finite(row["expires_at"], f"leases.{name}.expires_at"),
        epoch=epoch,
    )


def parse_backend(location: str, row: Mapping[str, Any]) -> BackendStatus:
    """A stored backend status; TypeError/ValueError/KeyError naming the field when malformed."""
    ok, in_effect, error = row["ok"], row["in_effect"], row["error"]
    if not isinstance(ok, bool):
        raise TypeError(f"backends.{location}.ok: expected true or false, not {_shown(ok)}")
    if in_effect is not None and not isinstance(in_effect, dict):
        raise TypeError(f"backends.{location}.in_effect: expected an object, not {_shown(in_effect)}")
    return BackendStatus(
        location=location,
        kind=text(row["kind"], f"backends.{location}.kind"),
        ok=ok,
        in_effect=None if in_effect is None else check_weights(in_effect),
        error=None if error is None else text(error, f"backends.{location}.error"),
        at=finite(row["at"], f"backends.{location}.at"),
    )


def _shown(value: object) -> str:
    """A stored value, quoted short enough for a one-line message."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
