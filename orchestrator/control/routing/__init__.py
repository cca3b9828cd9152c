"""Cost-aware routing: which share of the traffic each cloud gets, and why.

    decision = decide([CloudInput("aws", HealthState.HEALTHY, 80.0, 400.0, 4.0e-8), ...],
                      Demand(requests_per_s=50.0, latency_slo_ms=250.0))
    decision.weights          # {"aws": 100, "azure": 0, "gcp": 0}, or None in a panic
    decision.rows             # per cloud: cost per million, p95, capacity, state, weight, why

:mod:`.router` owns the decision: pure, exact (integer weights minimising the expected cost per
request under health, latency, capacity and min/max weight rules) and deterministic. The
:mod:`.backends` subpackage puts a decision into effect (Route 53, a JSON file); it is imported
only by whoever applies one. Cost per request comes from :mod:`orchestrator.control.routing.pricing`.
"""

from __future__ import annotations

from orchestrator.control.routing.router import (
    WEIGHT_TOTAL,
    CloudExplanation,
    CloudInput,
    Decision,
    Demand,
    decide,
)

__all__ = ["WEIGHT_TOTAL", "CloudExplanation", "CloudInput", "Decision", "Demand", "decide"]
