"""`orchestrator status`: the recorded state, the decision, and what every routing backend holds now."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from orchestrator.control.health.probe import short
from orchestrator.control.reports import flip_dict
from orchestrator.control.routing.backends import RoutingBackend
from orchestrator.core.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = ["status_report"]


def status_report(plane: ControlPlane) -> dict[str, Any]:
    """Each cloud's state, the decision, the desired weights, and per backend what it holds now
    (read live, all backends at once) against them, with what the last reconciliation found."""

    def read() -> tuple[Any, ...]:
        records = plane.records()
        store = plane.store
        return records, store.desired(), store.recent_flips(limit=20), store.backends(), store.rollout()

    records, desired, flips, recorded, rollout = plane.store.atomically(read)
    decision = plane.decide(records)
    routable = plane.routable_desired() if desired else None
    backends = _inspect(plane, routable.weights if routable else None)
    for entry in backends:
        last = recorded.get(entry["location"])
        entry["last_reconciled"] = (
            {"at": last.at, "ok": last.ok, "error": last.error} if last is not None else None
        )
    report: dict[str, Any] = {
        "clouds": {
            name: {
                "state": record.machine.state.value,
                "reason": record.machine.last_reason,
                "hold_until": record.machine.hold_until or None,
                "flaps": record.machine.flaps,
                "last_probe": record.last_probe,
                "p95_ms": record.p95_ms,
                "served_version": (record.last_probe or {}).get("served_version"),
                "drift": (record.last_probe or {}).get("drift"),
                "weight": (desired.weights.get(name) if desired else None),
                "cost_per_million_usd": round(plane.costs[name].total * 1e6, 4),
            }
            for name, record in records.items()
        },
        "desired": {"weights": desired.weights, "at": desired.at, "reason": desired.reason}
        if desired
        else None,
        "backends": backends,
        "decision": decision.as_dict(),
        "flips": [flip_dict(f) for f in flips],
        "rollout": _rollout(rollout),
    }
    if plane.vantage is not None:
        # Each point's last observation and its age, the quorum view, the lease: read, not written.
        report["vantage"] = plane.vantage.survey(list(records)).as_dict(plane.clock())
    return report


def _rollout(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rollout record as ``status`` shows it: everything but the metrics baseline."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k != "before"}


def _inspect(plane: ControlPlane, desired: dict[str, int] | None) -> list[dict[str, Any]]:
    def one(backend: RoutingBackend) -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": backend.kind, "location": backend.location}
        try:
            comparison = backend.compare(desired or {}, plane.endpoints)
        except Exception as exc:  # one backend unreachable: said, not raised
            text = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
            return {**entry, "in_effect": None, "in_sync": False, "differences": [], "error": short(text)}
        return {
            **entry,
            "in_effect": comparison.in_effect,
            "in_sync": comparison.in_sync,
            "differences": list(comparison.differences),
            "error": None,
        }

    if not plane.backends:
        return []
    with ThreadPoolExecutor(max_workers=len(plane.backends), thread_name_prefix="status") as pool:
        return list(pool.map(one, plane.backends))
