"""The health job finishing or undoing a rollout whose command died.

The continuation rule: at the end of every ``health --once --apply`` round (and every round of
``health --watch --apply``), the job that holds the health-job lease looks at the rollout record.
A rollout still active (``running`` or ``rolling-back``) whose holder has not written it for
``takeover_after_s`` (the holder's heartbeat: it writes the record at every step, in every phase,
so at least every ``probe_interval_s`` plus the longest step, :func:`longest_step_s`; a rollout
whose ``takeover_after_s`` does not exceed that is refused when it starts) is taken over: the job
becomes its holder and advances it by one step per round, with the same code as the command
(:meth:`~orchestrator.control.rollout.runner.Rollout.step`).

- ``running`` in ``move`` or ``serve``: continued (the move is idempotent; serving is judged by a
  probe, and ``serve_timeout_s`` still bounds it from the phase's start). Steps that keep failing
  (recorded as ``failing_since``) roll it back once they have failed for ``serve_timeout_s``.
- ``running`` in ``bake``: continued when the stage can still be judged: the record holds the
  endpoints' ``/metrics`` at the bake's start (the gates' baseline). Without it (the command died
  before recording it) the stage cannot be judged, and the rollout is rolled back.
- ``rolling-back``: the rollback is finished (the pointers moved back, the flips recorded).

An endpoint restarted meanwhile (its counters reset) is judged on the counts since its restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.control.health.probe import short
from orchestrator.control.rollout.record import is_active
from orchestrator.core.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = [
    "STORAGE_WRITE_BUDGET_S",
    "TAKEOVER_FLOOR_S",
    "continue_rollout",
    "longest_step_s",
    "takeover_after",
]

# The least time without a heartbeat before a rollout is taken over, whatever the plan says.
TAKEOVER_FLOOR_S = 2.0
# A pointer write's whole retry budget with the storage defaults (orchestrator.core.storage's
# retry policy: about 10 s); the move step may spend it before it writes the record again.
STORAGE_WRITE_BUDGET_S = 10.0


def longest_step_s(health_timeout_s: float, clouds: int) -> float:
    """An upper bound, in seconds, on the time between two writes of the record within one step,
    the longest of: ``move``, a pointer write's retry budget (:data:`STORAGE_WRITE_BUDGET_S`);
    ``serve``, a probe (``health_timeout_s``) and every endpoint's ``/metrics``; the bake's end,
    every endpoint's ``/metrics`` and drift answer. Each endpoint read is bounded by
    ``max(1, 2 x health_timeout_s)`` (the runner's deadline). With the defaults (2 s, three
    clouds): 24 s."""
    per_read = max(1.0, 2 * health_timeout_s)
    return max(STORAGE_WRITE_BUDGET_S, health_timeout_s + clouds * per_read, 2 * clouds * per_read)


def takeover_after(plan: dict[str, object]) -> float:
    """Seconds without a heartbeat after which the rollout's holder is presumed dead: the plan's
    ``takeover_after_s``, at least three probe intervals, and at least :data:`TAKEOVER_FLOOR_S`."""
    interval = plan.get("probe_interval_s")
    explicit = plan.get("takeover_after_s")
    beats = 3 * float(interval) if isinstance(interval, int | float) else 0.0
    given = float(explicit) if isinstance(explicit, int | float) else 0.0
    return max(TAKEOVER_FLOOR_S, beats, given)


def continue_rollout(plane: ControlPlane) -> str | None:
    """One step of a rollout whose holder is this plane or presumed dead (module docstring); a note
    for the round's report saying what was done, None when there was nothing to do. Never raises
    (a failure of the step is the note): the health round's result stands."""
    from orchestrator.control.rollout.runner import Rollout

    try:
        record = plane.store.atomically(plane.store.rollout)
        if not is_active(record):
            return None
        assert record is not None
        now = plane.clock()
        plan = record.get("plan") if isinstance(record.get("plan"), dict) else {}
        assert isinstance(plan, dict)
        mine = record.get("holder") == plane.holder
        heartbeat = record.get("heartbeat_at")
        stale = not isinstance(heartbeat, int | float) or now - heartbeat > takeover_after(plan)
        if not mine and not stale:
            return None
        if not mine:
            rollout_id = record.get("id")

            def take() -> dict[str, Any]:
                current = plane.store.rollout()
                if current is None or current.get("id") != rollout_id or not is_active(current):
                    raise OrchestratorError("the rollout changed while it was being taken over")
                current["holder"] = plane.holder
                current["heartbeat_at"] = plane.clock()
                plane.store.save_rollout(current)
                return current

            record = plane.store.atomically(take)
        rollout = Rollout(plane, holder=plane.holder, record=record)
        before = (record["status"], record.get("stage"), record.get("phase"))
        try:
            after = rollout.step()
        finally:
            rollout.close()
        what = (
            f"rollout of {after['version']}: {before[0]} stage {before[1]} {before[2]} -> {after['status']}"
        )
        if after["status"] == "running":
            what += f" stage {after['stage']} {after['phase']}"
        return ("took over the " if not mine else "continued the ") + what
    except OrchestratorError as exc:
        return short(f"rollout step failed: {exc}")
    except Exception as exc:  # the health round's result stands whatever the rollout's step does
        return short(f"rollout step failed: {type(exc).__name__}: {exc}")
