"""The state store's interface (:class:`StateStore`), its value types, and the checks every backend
applies before writing.

Backends: :mod:`.sqlite` (a local file; transactions take a lock) and :mod:`.objectstore` (one JSON
document in S3, GCS or Azure; transactions are optimistic). Both honour the same contract, tested
once for all of them in ``tests/state/test_contract.py``.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from orchestrator.errors import StateConflict
from orchestrator.types import CLOUDS, Flip

__all__ = [
    "BUSY_TIMEOUT",
    "DEFAULT_FLIP_LIMIT",
    "STEP_ATTEMPTS",
    "AppliedWeights",
    "Override",
    "StateStore",
    "check_cloud",
    "check_weights",
]

T = TypeVar("T")

# How long a command waits for other commands' writes. SQLite: the busy timeout on its write lock.
# Object storage: the time after which a lost commit race is no longer retried. Transactions are
# short, but a caller may apply routing inside one (one Route 53 change, bounded by its retry
# budget of a few seconds); 30 s covers that with room, and still ends a wait behind a hung process.
BUSY_TIMEOUT = 30.0
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
class AppliedWeights:
    """Weights that were put into effect, when and why."""

    weights: dict[str, int]
    at: float  # unix seconds
    reason: str


class StateStore(abc.ABC):
    """The control plane's persistent state. Use as a context manager, or call :meth:`close`.

    Every method is atomic on its own. :meth:`transaction` makes several calls one atomic step;
    use the object it yields inside the block. :meth:`atomically` also repeats the step when an
    optimistic backend could not commit it.
    """

    location: str  # for messages

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> StateStore:
        """Open the state at ``location`` (see :func:`orchestrator.state.open_state`)."""
        from orchestrator.state import open_state  # the package dispatches on the location

        return open_state(location, settings=settings, busy_timeout=busy_timeout, clock=clock)

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[StateStore]:
        """Everything done inside the block, through the yielded store or (from the same thread)
        the store itself, commits together when the block exits normally, and not at all if it
        raises. Concurrent transactions never see each other's partial writes and never
        overwrite each other's reads: one waits for the other (SQLite), or (object storage) the
        one that loses the race re-applies its writes to the newer state when nothing it read
        has changed, and otherwise raises :class:`~orchestrator.errors.StateConflict` at exit
        with nothing written, to be repeated by the caller (:meth:`atomically`). Transactions
        nest: an inner block that raises undoes only its own writes."""

    def atomically(self, step: Callable[[StateStore], T], *, attempts: int = STEP_ATTEMPTS) -> T:
        """Run ``step(tx)`` in a transaction and return what it returns; if the commit raises
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
                with self.transaction() as tx:
                    return step(tx)
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
    def set_override(self, cloud: str, *, drained: bool, reason: str, actor: str) -> Override:
        """Record an operator's drain (``drained=True``) or return to rotation (False)."""

    @abc.abstractmethod
    def overrides(self) -> dict[str, Override]:
        """The latest override of every cloud that has one, drained or not."""

    def drained(self) -> set[str]:
        """The clouds an operator has drained and not returned to rotation."""
        return {cloud for cloud, override in self.overrides().items() if override.drained}

    @abc.abstractmethod
    def save_weights(self, weights: Mapping[str, int], reason: str) -> AppliedWeights:
        """Record weights that were just applied."""

    @abc.abstractmethod
    def last_weights(self) -> AppliedWeights | None:
        """The most recently saved weights, or None if none were ever saved."""

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


def check_cloud(cloud: str) -> str:
    """``cloud`` if it is one of :data:`~orchestrator.types.CLOUDS`, else ValueError."""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r} (clouds: {', '.join(CLOUDS)})")
    return cloud


def check_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """A copy of ``weights`` once every cloud is known and every weight an integer."""
    checked: dict[str, int] = {}
    for cloud, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError(f"weight of {cloud} must be an integer, not {weight!r}")
        checked[check_cloud(cloud)] = weight
    return checked
