"""Judging a rollout's stage: reading the endpoints (``/metrics``, the drift answer) and the
gates' verdicts at the end of a bake (:mod:`.gates` holds the pure gates; :mod:`.runner` the steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from orchestrator.control.rollout import gates
from orchestrator.control.rollout.plan import RolloutPlan

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = ["DRIFT_PATH", "fetch_drift", "fetch_metrics", "sample_dict", "sample_from", "stage_verdicts"]

# The endpoint's drift answer (issue 16's contract); a 404 is "no drift data".
DRIFT_PATH = "/v1/model/drift"


def stage_verdicts(plane: ControlPlane, record: Mapping[str, Any], plan: RolloutPlan) -> list[gates.Verdict]:
    """The stage's gates at the end of its bake time (the module docstring of :mod:`.gates`): the
    moved cloud's increases since the bake's start against the clouds still on the old version."""
    cloud = str(record["order"][record["stage"]])
    bounds = plan.gates
    old = [c for c in plane.endpoints if c not in record["moved"]]
    before = record.get("before") or {}
    if cloud not in before:
        # The baseline was never recorded (the endpoint's /metrics did not answer at the bake's
        # start): the relative gates cannot be judged, which the continuation rule treats as
        # a reason to roll back rather than to guess.
        return [
            gates.Verdict(
                "error-rate", "fail", "no /metrics baseline was recorded: the stage cannot be judged", {}
            )
        ]
    increases: dict[str, gates.EndpointSample] = {}
    for c in [cloud, *old]:
        now = fetch_metrics(plane, c)
        if now is not None and c in before:
            increases[c] = now.minus(sample_from(before[c]))
    moved = increases.get(cloud, gates.EndpointSample(0, 0, {}))
    pooled = gates.EndpointSample.pooled(increases[c] for c in old if c in increases)
    failures = list(record["probe_failures"])
    failed_probes = int(record.get("failed_probes", len(failures)))
    return [
        gates.error_rate_gate(
            moved,
            pooled,
            probes=record["probes"],
            probe_failures=failed_probes,
            max_error_rate=bounds.max_error_rate,
            min_requests=bounds.min_requests,
        ),
        gates.latency_gate(
            moved,
            pooled,
            max_p95_ratio=bounds.max_p95_ratio,
            p95_slack_ms=bounds.p95_slack_ms,
            min_requests=bounds.min_requests,
        ),
        gates.canary_gate(
            failures,
            record["probes"],
            failed=int(record.get("failed_probes", len(failures))),
            tolerated=plane.config.health.unhealthy_threshold - 1,
        ),
        gates.drift_gate(
            fetch_drift(plane, cloud),
            [fetch_drift(plane, c) for c in old],
            max_js_distance=bounds.max_js_distance,
            min_rows=bounds.min_rows,
            moved_version=record["version"],
            old_version=record["baseline"],
        ),
    ]


def fetch_metrics(plane: ControlPlane, cloud: str) -> gates.EndpointSample | None:
    """``cloud``'s endpoint ``/metrics`` parsed (:func:`.gates.parse_metrics`); None when it did not
    answer or is not an exposition (no data from it this time). Never raises."""
    try:
        status, body = plane.prober.fetch(cloud, "/metrics", deadline_s=_deadline(plane))
        return gates.parse_metrics(body.decode("utf-8", "replace")) if status == 200 else None
    except Exception:  # unreachable or not an exposition: no data from it this time
        return None


def fetch_drift(plane: ControlPlane, cloud: str) -> object:
    """``cloud``'s drift answer (decoded JSON), None when it could not be had. Never raises."""
    try:
        status, body = plane.prober.fetch(cloud, DRIFT_PATH, deadline_s=_deadline(plane))
        return orjson.loads(body) if status == 200 else None
    except Exception:  # any failure is "no drift data", never a crash
        return None


def _deadline(plane: ControlPlane) -> float:
    return max(1.0, 2 * plane.config.health.timeout_s)


def sample_dict(sample: gates.EndpointSample) -> dict[str, Any]:
    """A sample as plain data for the record (bucket bounds as text, ``+Inf`` for infinity)."""
    return {
        "requests": sample.requests,
        "errors": sample.errors,
        "buckets": {repr(le) if math.isfinite(le) else "+Inf": n for le, n in sample.buckets.items()},
    }


def sample_from(row: Mapping[str, Any]) -> gates.EndpointSample:
    """The sample :func:`sample_dict` recorded."""
    return gates.EndpointSample(
        int(row.get("requests", 0)),
        int(row.get("errors", 0)),
        {float(le): float(n) for le, n in dict(row.get("buckets", {})).items()},
    )
