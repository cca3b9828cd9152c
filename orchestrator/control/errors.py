"""The control plane's errors, in the core's tree (:mod:`orchestrator.core.errors` draws it all):
the job lease held by another run, and a state that cannot commit or holds what no orchestrator
wrote."""

from __future__ import annotations

from orchestrator.core.errors import OrchestratorError, PreconditionFailed, StorageError

__all__ = ["Fenced", "LeaseHeld", "StateConflict", "StateCorrupt"]


class LeaseHeld(OrchestratorError):
    """Another run of the health job holds the job's lease (or took it over from this one).

    Exit code 75 is EX_TEMPFAIL of sysexits.h ("temporary failure, the user is invited to retry
    later"): a scheduler that sees it knows the job is being done by the holder, and that this run
    changed nothing."""

    exit_code = 75

    def __init__(self, message: str, *, holder: str, expires_at: float) -> None:
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(message)


class StateConflict(PreconditionFailed):
    """An optimistic state transaction could not commit, and nothing of it was written: another
    command changed what it had read (``stale`` names those parts of the state), or other writers
    kept winning for ``attempts`` attempts. Repeat the whole step on the fresh state
    (:meth:`orchestrator.control.store.StateStore.atomically` does)."""

    def __init__(
        self, message: str, *, uri: str | None = None, stale: tuple[str, ...] = (), attempts: int
    ) -> None:
        self.stale = stale
        self.attempts = attempts
        super().__init__(message, uri=uri)


class StateCorrupt(StorageError):
    """The state holds a value no orchestrator writes (a health state ``"bogus"``, a negative
    counter, a weight that is not an integer...): the message names the location and the key.
    Nothing is written over it; restore the state or choose another location."""


class Fenced(OrchestratorError):
    """A routing backend refused a write carrying an older leader epoch than the last it accepted:
    the writer lost the cross-cloud leader lease (it was paused, or partitioned, past the lease's
    expiry) and a newer leader has written since. Nothing was changed; the writer must stop
    applying (:mod:`orchestrator.control.vantage`)."""

    def __init__(self, message: str, *, held: int, offered: int) -> None:
        self.held = held
        self.offered = offered
        super().__init__(message)
