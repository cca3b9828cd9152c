"""The routing decision: integer traffic weights that minimise the expected cost per request.

Pure: inputs in, a :class:`Decision` out, no I/O, no clock, no randomness. The caller gathers each
cloud's health state, p95 latency, capacity and cost per request (:mod:`orchestrator.control.routing.pricing`)
and hands the weights to a backend (:mod:`orchestrator.control.routing.backends`).

The rules, from the issue:

- only routable clouds (healthy or degraded) get weight; unhealthy and drained never do;
- a cloud is *within SLO* when it is healthy and its p95 is within the latency SLO (or not yet
  measured: the health state is then the only evidence). Degraded clouds, and healthy ones over the
  SLO, are *fallbacks*: no share while the clouds within SLO can carry the demand, only what they
  cannot carry otherwise;
- a cloud's share of the demand is at most its capacity; ``min_weight`` (for clouds within SLO)
  and ``max_weight`` (for all) are honoured; when all traffic cannot fit, the rest goes where it
  costs least and the decision reports the shortfall;
- weights are integers summing to :data:`WEIGHT_TOTAL` whenever a cloud is routable, so never all
  zero; when none is, the decision is a *panic*: no weights, and the caller keeps the last applied.

The problem solved, over integer weights ``w`` summing to 100 (zero off routable clouds), is to
minimise, in lexicographic order (the first term that differs decides):

    1. M = sum over clouds within SLO of max(0, min_weight - w)     min weights missed
    2. X = sum of max(0, w - max_weight)                           max weights exceeded
    3. O = sum of max(0, w - k), k = 100 * capacity / demand        points beyond capacity
    4. F = sum of w over fallback clouds                           share off the SLO
    5. C = sum of w * cost_per_request / 100                       expected cost per request

When some ``w`` has M = X = O = 0 this is: satisfy every constraint, use fallbacks only as far as
needed, and minimise cost; when none has, the order says which rule yields first (the operator's
min and max weights before the capacity estimates, capacity before the SLO preference).

Why the greedy below is exact. Each term is a sum over clouds of a convex function of that cloud's
own weight, so the objective is ``g(w) = sum g_i(w_i)`` with each ``g_i`` convex, valued in R^5
ordered lexicographically (an ordered vector space, where the argument holds as in R). Let
``d_i(t) = g_i(t + 1) - g_i(t)``, nondecreasing in ``t``. The greedy starts from zero and gives
the 100 points one at a time, each to the cloud with the least ``d_i(w_i)``. When cloud ``i``
got its last point, every other cloud ``j`` had at most its final ``w_j``, so by monotonicity
``d_i(w_i - 1) <= d_j(w_j)`` for all ``i`` with ``w_i > 0`` and all ``j``: every point given
costs at most ``lam = max_i d_i(w_i - 1)``, every point not given at least ``mu = min_j d_j(w_j)``,
and ``lam <= mu``. Any other allocation ``v`` takes ``n`` points off some clouds, saving at most
``lam`` each (marginals below ``w_i`` are at most ``d_i(w_i - 1)``), and puts ``n`` points on
others, paying at least ``mu`` each; so ``g(v) - g(w) >= n (mu - lam) >= 0``. The continuous
problem is the same argument with infinitesimal points: each ``g_i`` is piecewise linear, the
problem an LP, and its optimum the fractional-knapsack fill by ascending slope, that is by
ascending cost within each tier, after the min weights and up to each capacity and max weight.
Solving over whole percentage points directly needs no rounding step, so no rounding can break a
constraint or leave a cheaper integer allocation. Cost: 100 heap operations, O(100 log N).

Determinism: clouds are processed in name order and ties go to the first name, so the same inputs
in any order give the same decision.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.control.types import HealthState

__all__ = ["WEIGHT_TOTAL", "CloudExplanation", "CloudInput", "Decision", "Demand", "decide"]

# Route 53 accepts 0..255 per weighted record and reads them as ratios; 100 makes every weight a
# percentage of the traffic, for the tables and the operators who read them.
WEIGHT_TOTAL = 100
# A capacity within this many percentage points of a whole number is that whole number, so that
# 100 * 34 / 100 = 34.000000000000004 still admits 34 points; far below any real capacity estimate.
_SNAP = 1e-9


@dataclass(frozen=True, slots=True)
class CloudInput:
    """One cloud as the router sees it. ``cost_per_request`` is in USD (``CostBreakdown.total``)."""

    cloud: str
    state: HealthState
    p95_ms: float | None  # None: no latency measured yet
    capacity_rps: float  # math.inf for "not limited"
    cost_per_request: float
    min_weight: int = 0
    max_weight: int = WEIGHT_TOTAL

    def __post_init__(self) -> None:
        if not (0 <= self.min_weight <= self.max_weight <= WEIGHT_TOTAL):
            raise ValueError(
                f"{self.cloud}: need 0 <= min_weight <= max_weight <= {WEIGHT_TOTAL}, "
                f"not {self.min_weight} and {self.max_weight}"
            )
        if not (self.capacity_rps >= 0):  # also refuses NaN
            raise ValueError(f"{self.cloud}: capacity_rps must be >= 0, not {self.capacity_rps}")
        if not (math.isfinite(self.cost_per_request) and self.cost_per_request >= 0):
            raise ValueError(
                f"{self.cloud}: cost_per_request must be finite and >= 0, not {self.cost_per_request}"
            )
        if self.p95_ms is not None and not (self.p95_ms >= 0):
            raise ValueError(f"{self.cloud}: p95_ms must be >= 0 or None, not {self.p95_ms}")


@dataclass(frozen=True, slots=True)
class Demand:
    """The traffic to place (requests per second over all clouds) and the latency SLO it must meet."""

    requests_per_s: float
    latency_slo_ms: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.requests_per_s) and self.requests_per_s >= 0):
            raise ValueError(f"Demand.requests_per_s must be finite and >= 0, not {self.requests_per_s}")
        if not (self.latency_slo_ms > 0):
            raise ValueError(f"Demand.latency_slo_ms must be > 0, not {self.latency_slo_ms}")


@dataclass(frozen=True, slots=True)
class CloudExplanation:
    """One row of the decision table: what the router knew about a cloud, what it gave, and why."""

    cloud: str
    state: HealthState
    p95_ms: float | None
    capacity_rps: float
    cost_per_million: float  # USD per million requests
    weight: int | None  # None in a panic: the router assigns nothing
    load_rps: float  # the demand this weight sends there
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "state": self.state.value,
            "p95_ms": self.p95_ms,
            "capacity_rps": None if math.isinf(self.capacity_rps) else self.capacity_rps,
            "cost_per_million_usd": self.cost_per_million,
            "weight": self.weight,
            "load_rps": self.load_rps,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The router's answer. ``weights is None`` exactly when ``panic``: no cloud is routable, and
    the caller must keep the weights it last applied (and say so loudly; ``notes`` does).

    Otherwise ``weights`` maps every input cloud, in name order, to an integer in 0..100, summing
    to 100. ``shortfall_rps`` is the demand this decision sends beyond the clouds' capacities (in a
    panic, all of it). ``rows`` has one explanation per input cloud, in name order.
    """

    weights: dict[str, int] | None
    expected_cost_per_request: float | None  # USD; None in a panic
    shortfall_rps: float
    rows: tuple[CloudExplanation, ...]
    panic: bool
    notes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.panic != (self.weights is None) or self.panic != (self.expected_cost_per_request is None):
            raise ValueError("a Decision has weights and a cost exactly when it is not a panic")

    @property
    def expected_cost_per_million(self) -> float | None:
        cost = self.expected_cost_per_request
        return None if cost is None else cost * 1e6

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``orchestrator route --json`` prints."""
        return {
            "panic": self.panic,
            "weights": self.weights,
            "expected_cost_per_million_usd": self.expected_cost_per_million,
            "shortfall_rps": self.shortfall_rps,
            # Keyed by cloud, as every JSON output keys its clouds.
            "clouds": {row.cloud: _without_cloud(row.as_dict()) for row in self.rows},
            "notes": list(self.notes),
        }


def _without_cloud(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "cloud"}


# A point's marginal cost: (min points missed, max exceeded, points beyond capacity, fallback, USD).
_Step = tuple[int, int, float, int, float]


def decide(clouds: Iterable[CloudInput], demand: Demand) -> Decision:
    """The cost-optimal integer weights under the rules in the module docstring, explained."""
    ordered = sorted(clouds, key=lambda c: c.cloud)
    names = [c.cloud for c in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"each cloud may appear once: {names}")
    routable = [c for c in ordered if c.state.routable]
    if not routable:
        return _panic(ordered, demand)

    within = {c.cloud for c in routable if _within_slo(c, demand)}
    points = {c.cloud: _capacity_points(c, demand) for c in routable}
    weights = dict.fromkeys(names, 0)
    # The greedy of the module docstring: each point to the cloud whose next point costs least.
    heap = [(_step(c, 0, c.cloud in within, points[c.cloud]), c.cloud, c) for c in routable]
    heapq.heapify(heap)
    for _ in range(WEIGHT_TOTAL):
        _, name, cloud = heapq.heappop(heap)
        weights[name] += 1
        heapq.heappush(heap, (_step(cloud, weights[name], name in within, points[name]), name, cloud))

    rps = demand.requests_per_s
    load = {name: w * rps / WEIGHT_TOTAL for name, w in weights.items()}
    over = {c.cloud: _over(load[c.cloud], c.capacity_rps) for c in ordered}
    rows = tuple(_explain(c, ordered, weights, load[c.cloud], over[c.cloud], within, demand) for c in ordered)
    return Decision(
        weights=weights,
        expected_cost_per_request=sum(weights[c.cloud] * c.cost_per_request for c in ordered) / WEIGHT_TOTAL,
        shortfall_rps=sum(over.values()),
        rows=rows,
        panic=False,
        notes=_notes(ordered, routable, within, weights, load, over, demand),
    )


def _within_slo(cloud: CloudInput, demand: Demand) -> bool:
    return cloud.state is HealthState.HEALTHY and (
        cloud.p95_ms is None or cloud.p95_ms <= demand.latency_slo_ms
    )


def _capacity_points(cloud: CloudInput, demand: Demand) -> float:
    """The weight at which a cloud is full: capacity as a percentage of the demand."""
    if demand.requests_per_s == 0 or math.isinf(cloud.capacity_rps):
        return math.inf  # nothing to carry, or no limit: capacity never binds
    k = WEIGHT_TOTAL * cloud.capacity_rps / demand.requests_per_s
    if k >= WEIGHT_TOTAL:  # can carry all of it (k may even overflow to inf for a tiny demand)
        return math.inf
    return float(round(k)) if abs(k - round(k)) <= _SNAP else k


def _step(cloud: CloudInput, w: int, within: bool, capacity_points: float) -> _Step:
    """``g_i(w + 1) - g_i(w)``: what giving ``cloud`` its next point adds to each objective term."""
    missed_min = -1 if within and w < cloud.min_weight else 0
    over_max = 1 if w >= cloud.max_weight else 0
    # Only the point that straddles the capacity is partly over; rounded so that float noise in
    # 34 - 33.4 cannot outrank the terms after it.
    beyond = round(min(1.0, max(0.0, w + 1 - capacity_points)), 9)
    return (missed_min, over_max, beyond, 0 if within else 1, cloud.cost_per_request)


def _over(load_rps: float, capacity_rps: float) -> float:
    excess = load_rps - capacity_rps
    # Sub-microrequest excess is float noise from w * demand / 100, not an overload.
    return excess if excess > 1e-9 * max(1.0, load_rps) else 0.0


# -- explanations ------------------------------------------------------------------------------


def _explain(
    cloud: CloudInput,
    ordered: list[CloudInput],
    weights: dict[str, int],
    load_rps: float,
    over_rps: float,
    within: set[str],
    demand: Demand,
) -> CloudExplanation:
    w = weights[cloud.cloud]
    return CloudExplanation(
        cloud=cloud.cloud,
        state=cloud.state,
        p95_ms=cloud.p95_ms,
        capacity_rps=cloud.capacity_rps,
        cost_per_million=cloud.cost_per_request * 1e6,
        weight=w,
        load_rps=load_rps,
        why="; ".join(
            [_role(cloud, ordered, weights, within, demand), *_limits(cloud, w, over_rps, within, demand)]
        ),
    )


def _fallback_label(cloud: CloudInput, demand: Demand) -> str:
    slow = cloud.p95_ms is not None and cloud.p95_ms > demand.latency_slo_ms
    over = f"p95 {cloud.p95_ms:.0f} ms over the {demand.latency_slo_ms:.0f} ms SLO" if slow else ""
    if cloud.state is HealthState.DEGRADED:
        return f"degraded, {over}" if slow else "degraded"
    return over


def _role(
    cloud: CloudInput, ordered: list[CloudInput], weights: dict[str, int], within: set[str], demand: Demand
) -> str:
    """Why this cloud has any weight at all, or none."""
    w = weights[cloud.cloud]
    if not cloud.state.routable:
        return f"{cloud.state.value}: never routed"
    if cloud.cloud not in within:
        return _fallback_role(cloud, ordered, weights, within, demand)
    if w == 0:
        return "max_weight 0" if cloud.max_weight == 0 else "not needed: cheaper clouds carry the demand"
    if w == cloud.min_weight:
        return f"min_weight {cloud.min_weight}"
    cheapest = min((c for c in ordered if c.cloud in within), key=lambda c: (c.cost_per_request, c.cloud))
    return "cheapest within SLO" if cheapest is cloud else "within SLO, next by cost"


def _fallback_role(
    cloud: CloudInput, ordered: list[CloudInput], weights: dict[str, int], within: set[str], demand: Demand
) -> str:
    label = _fallback_label(cloud, demand)
    if weights[cloud.cloud] > 0:
        return f"{label}: " + (
            "carries what the clouds within SLO cannot" if within else "no cloud is within SLO"
        )
    if cloud.max_weight == 0:
        return f"{label}: max_weight 0"
    fallback_share = sum(weights[c.cloud] for c in ordered if c.state.routable and c.cloud not in within)
    if within and fallback_share == 0:
        return f"{label}: no share while the clouds within SLO carry the demand"
    return f"{label}: not needed, cheaper clouds carry the rest"


def _limits(cloud: CloudInput, w: int, over_rps: float, within: set[str], demand: Demand) -> list[str]:
    """Which bounds the weight sits at: these say why it is not higher (or is higher than asked)."""
    if w == 0:
        return []
    limits = []
    if over_rps > 0:
        limits.append(f"over capacity by {over_rps:.1f} rps")
    elif (w + 1) * demand.requests_per_s / WEIGHT_TOTAL > cloud.capacity_rps:
        limits.append("capacity full")
    if w > cloud.max_weight:
        limits.append(f"above max_weight {cloud.max_weight}: the routable clouds' maxima sum below 100")
    elif w == cloud.max_weight < WEIGHT_TOTAL:
        limits.append(f"max_weight {cloud.max_weight}")
    if cloud.cloud in within and w < cloud.min_weight:
        limits.append(f"below min_weight {cloud.min_weight}: the minima sum above 100")
    return limits


def _notes(
    ordered: list[CloudInput],
    routable: list[CloudInput],
    within: set[str],
    weights: dict[str, int],
    load: dict[str, float],
    over: dict[str, float],
    demand: Demand,
) -> tuple[str, ...]:
    notes = []
    rps = demand.requests_per_s
    if rps == 0:
        notes.append("no demand expected: capacity does not bind, weights follow cost")
    fallbacks = [c for c in routable if c.cloud not in within]
    carried = sum(load[c.cloud] for c in fallbacks)
    if not within:
        notes.append("no cloud is healthy within the latency SLO: routing to degraded or slow clouds")
    elif carried > 0:
        names = ", ".join(c.cloud for c in fallbacks if weights[c.cloud])
        notes.append(f"the clouds within SLO cannot carry {rps:g} rps: {carried:.1f} rps go to {names}")
    shortfall = sum(over.values())
    if shortfall > 0:
        capacity = sum(c.capacity_rps for c in routable)
        names = ", ".join(name for name, rps_over in over.items() if rps_over > 0)
        notes.append(
            f"shortfall: {shortfall:.1f} rps beyond capacity on {names} (routable capacity {capacity:g} rps "
            f"for {rps:g} rps of demand)"
        )
    minima = sum(c.min_weight for c in routable if c.cloud in within)
    if minima > WEIGHT_TOTAL:
        notes.append(f"min_weight of the clouds within SLO sums to {minima} > {WEIGHT_TOTAL}: not all met")
    maxima = sum(c.max_weight for c in routable)
    if maxima < WEIGHT_TOTAL:
        notes.append(f"max_weight of the routable clouds sums to {maxima} < {WEIGHT_TOTAL}: exceeded")
    return tuple(notes)


def _panic(ordered: list[CloudInput], demand: Demand) -> Decision:
    states = ", ".join(f"{c.cloud} {c.state.value}" for c in ordered) or "no clouds given"
    rows = tuple(
        CloudExplanation(
            cloud=c.cloud,
            state=c.state,
            p95_ms=c.p95_ms,
            capacity_rps=c.capacity_rps,
            cost_per_million=c.cost_per_request * 1e6,
            weight=None,
            load_rps=0.0,
            why=f"{c.state.value}: never routed",
        )
        for c in ordered
    )
    return Decision(
        weights=None,
        expected_cost_per_request=None,
        shortfall_rps=demand.requests_per_s,
        rows=rows,
        panic=True,
        notes=(f"PANIC: no cloud is routable ({states}); keep the last applied weights",),
    )
