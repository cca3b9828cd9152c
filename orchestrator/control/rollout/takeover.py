"""The health job finishing or undoing a rollout whose command died.

The continuation rule: at the end of every ``health --once --apply`` round (and every round of
``health --watch --apply``), the job that holds the health-job lease looks at the rollout record.
A rollout still active (``running`` or ``rolling-back``) whose holder has not written it for
``takeover_after_s`` (the holder's heartbeat: it writes the record at least every
``probe_interval_s``) is taken over: the job becomes its holder and advances it by one step per
round, with the same code as the command (:meth:`~orchestrator.control.rollout.runner.Rollout.step`).

- ``running`` in ``move`` or ``serve``: continued (the move is idempotent; serving is judged by a
  probe, and ``serve_timeout_s`` still bounds it from the phase's start).
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

__all__ = ["TAKEOVER_FLOOR_S", "continue_rollout", "takeover_after"]

# The least time without a heartbeat before a rollout is taken over, whatever the plan says: a step
# of the command may take a storage write's whole retry budget (about 10 s) and a few probes.
TAKEOVER_FLOOR_S = 2.0


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
