"""The router: properties over random inputs (hypothesis), optimality against brute force, and the
explanations, fallback, shortfall and panic rules on hand-made examples.

The brute force enumerates every integer weight vector summing to 100 over the routable clouds
(5151 of them for three clouds) and scores each with an independent, vectorised statement of the
problem: the lexicographic objective (min weights missed, max weights exceeded, points beyond
capacity, share on fallback clouds, cost) from :mod:`orchestrator.control.routing.router`'s docstring. The
router's answer must not be beaten on any term by an allocation that ties it on the terms before.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.routing import WEIGHT_TOTAL, CloudInput, Decision, Demand, decide
from orchestrator.control.types import HealthState
from orchestrator.core.contract import CLOUDS

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED
SLO = 250.0

# --- strategies ---------------------------------------------------------------------------

# A few shared prices, so that ties (broken by name) come up often, and any price at all.
COSTS = st.one_of(
    st.sampled_from([0.0, 4.0e-8, 4.6e-7, 4.7e-7, 1.0e-6]),
    st.floats(min_value=0.0, max_value=1e-5, allow_nan=False, allow_infinity=False),
)
BOUNDS = st.one_of(
    st.just((0, 100)),
    st.lists(st.integers(0, 100), min_size=2, max_size=2).map(lambda b: (min(b), max(b))),
)


@st.composite
def clouds(draw: st.DrawFn, names: list[str], *, nice: bool) -> list[CloudInput]:
    """Inputs for ``names``. ``nice`` keeps capacities on a 0.1 rps grid, so that two capacities'
    fractional percentages either tie exactly or differ by far more than float noise (the brute
    force compares with a tolerance, the router exactly)."""
    out = []
    for name in names:
        if nice:
            capacity = draw(st.one_of(st.integers(0, 3000).map(lambda c: c / 10), st.just(math.inf)))
        else:
            capacity = draw(st.floats(min_value=0.0, max_value=1e4, allow_nan=False) | st.just(math.inf))
        low, high = draw(BOUNDS)
        out.append(
            CloudInput(
                cloud=name,
                state=draw(st.sampled_from(list(HealthState))),
                p95_ms=draw(st.none() | st.integers(0, 500).map(float)),
                capacity_rps=capacity,
                cost_per_request=draw(COSTS),
                min_weight=low,
                max_weight=high,
            )
        )
    return out


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[list[CloudInput], Demand]:
    """Up to three clouds, small enough to enumerate every allocation."""
    names = draw(st.permutations(list(CLOUDS)))[: draw(st.integers(1, 3))]
    return draw(clouds(names, nice=True)), Demand(float(draw(st.integers(0, 500))), SLO)


@st.composite
def medium_problems(draw: st.DrawFn) -> tuple[list[CloudInput], Demand]:
    """Two to six clouds on the same grid as :func:`small_problems`."""
    names = draw(st.permutations([f"c{i}" for i in range(6)]))[: draw(st.integers(2, 6))]
    return draw(clouds(names, nice=True)), Demand(float(draw(st.integers(0, 500))), SLO)


@st.composite
def any_problems(draw: st.DrawFn) -> tuple[list[CloudInput], Demand]:
    """Zero to six clouds with any numbers: for the properties that need no enumeration."""
    names = draw(st.permutations([f"c{i}" for i in range(6)]))[: draw(st.integers(0, 6))]
    rps = draw(st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False))
    return draw(clouds(names, nice=False)), Demand(rps, draw(st.floats(1.0, 1000.0)))


# --- an independent statement of the objective ----------------------------------------------


@cache
def allocations(n: int) -> np.ndarray:
    """Every vector of ``n`` non-negative integers summing to 100, one per row."""
    if n == 1:
        return np.array([[WEIGHT_TOTAL]])
    rows = [
        [first, *rest] for first in range(WEIGHT_TOTAL + 1) for rest in _sums(n - 1, WEIGHT_TOTAL - first)
    ]
    return np.array(rows)


def _sums(n: int, total: int) -> list[list[int]]:
    if n == 1:
        return [[total]]
    return [[first, *rest] for first in range(total + 1) for rest in _sums(n - 1, total - first)]


def objective(w: np.ndarray, routable: list[CloudInput], demand: Demand) -> list[np.ndarray]:
    """The five terms, in priority order, for each row of ``w`` (weights of ``routable``, in order)."""
    w = np.atleast_2d(w).astype(float)
    within = np.array(
        [c.state is H and (c.p95_ms is None or c.p95_ms <= demand.latency_slo_ms) for c in routable]
    )
    low = np.array([c.min_weight for c in routable])
    high = np.array([c.max_weight for c in routable])
    if demand.requests_per_s == 0:
        capacity = np.full(len(routable), np.inf)
    else:
        capacity = np.array([100 * c.capacity_rps / demand.requests_per_s for c in routable])
    cost = np.array([c.cost_per_request for c in routable])
    return [
        (np.maximum(0, low - w) * within).sum(axis=1),
        np.maximum(0, w - high).sum(axis=1),
        np.where(np.isinf(capacity), 0.0, np.maximum(0, w - capacity)).sum(axis=1),
        (w * ~within).sum(axis=1),
        w @ cost / 100,
    ]


def tolerances(routable: list[CloudInput]) -> list[float]:
    biggest = max(c.cost_per_request for c in routable)
    return [0.5, 0.5, 1e-6, 0.5, 1e-9 * biggest + 1e-18]


def chosen(decision: Decision, routable: list[CloudInput]) -> np.ndarray:
    assert decision.weights is not None
    return np.array([decision.weights[c.cloud] for c in routable])


def assert_not_beaten(
    router: np.ndarray, others: np.ndarray, routable: list[CloudInput], demand: Demand
) -> None:
    """No row of ``others`` ties the router's weights on the first terms and beats them on the next."""
    mine = [term[0] for term in objective(router, routable, demand)]
    terms = objective(others, routable, demand)
    alive = np.ones(len(others), dtype=bool)
    for k, (value, term, tol) in enumerate(zip(mine, terms, tolerances(routable), strict=True)):
        if alive.any():
            best = term[alive].min()
            assert value <= best + tol, (
                f"term {k}: the router's {value} is beaten by {best} at {others[alive][term[alive].argmin()]}"
            )
        alive &= np.abs(term - value) <= tol


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(any_problems())
def test_weights_are_whole_percentages_on_routable_clouds_only(problem):
    inputs, demand = problem
    decision = decide(inputs, demand)
    routable = {c.cloud for c in inputs if c.state.routable}
    assert decision.panic == (not routable)
    if decision.weights is None:
        assert decision.expected_cost_per_request is None
        assert decision.notes[0].startswith("PANIC")
        return
    assert sum(decision.weights.values()) == WEIGHT_TOTAL  # so never all zero while one is routable
    assert list(decision.weights) == sorted(c.cloud for c in inputs)
    for name, weight in decision.weights.items():
        assert 0 <= weight <= WEIGHT_TOTAL
        if name not in routable:
            assert weight == 0, f"{name} is not routable but got {weight}"
    assert [row.cloud for row in decision.rows] == sorted(c.cloud for c in inputs)
    assert [row.weight for row in decision.rows] == list(decision.weights.values())
    json.dumps(decision.as_dict(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(any_problems(), st.randoms(use_true_random=False))
def test_the_same_inputs_in_any_order_give_the_same_decision(problem, rng):
    inputs, demand = problem
    shuffled = list(inputs)
    rng.shuffle(shuffled)
    first, second = decide(inputs, demand), decide(shuffled, demand)
    assert first == second
    assert repr(first) == repr(second)  # the weights' order too, which == on dicts ignores


@settings(max_examples=300, deadline=None)
@given(small_problems())
def test_no_cheaper_feasible_integer_allocation_exists(problem):
    inputs, demand = problem
    decision = decide(inputs, demand)
    routable = [c for c in inputs if c.state.routable]
    if not routable:
        assert decision.panic
        return
    assert_not_beaten(chosen(decision, routable), allocations(len(routable)), routable, demand)


@settings(max_examples=300, deadline=None)
@given(small_problems())
def test_constraints_hold_whenever_some_allocation_meets_them(problem):
    inputs, demand = problem
    routable = [c for c in inputs if c.state.routable]
    if not routable:
        return
    decision = decide(inputs, demand)
    assert decision.weights is not None
    every = allocations(len(routable))
    missed, exceeded, beyond, fallback, _ = objective(every, routable, demand)
    feasible = (missed == 0) & (exceeded == 0) & (beyond <= 1e-6)
    within = {c.cloud for c in routable if c.state is H and (c.p95_ms is None or c.p95_ms <= SLO)}
    if feasible.any():
        for c in routable:
            w = decision.weights[c.cloud]
            assert w <= c.max_weight
            assert w * demand.requests_per_s / 100 <= c.capacity_rps + 1e-9
            if c.cloud in within:
                assert w >= c.min_weight
        assert decision.shortfall_rps == 0
    if (feasible & (fallback == 0)).any():
        # Degraded and over-SLO clouds only ever cover a shortfall of the clouds within SLO.
        assert all(decision.weights[c.cloud] == 0 for c in routable if c.cloud not in within)


@settings(max_examples=300, deadline=None)
@given(medium_problems())
def test_no_single_point_moved_between_two_clouds_improves_the_decision(problem):
    # For a separable convex objective, no improving one-point move means a global optimum: this
    # checks optimality for up to six clouds, where enumeration would be too slow.
    inputs, demand = problem
    routable = [c for c in inputs if c.state.routable]
    if len(routable) < 2:
        return
    decision = decide(inputs, demand)
    w = chosen(decision, routable)
    moves = []
    for i in range(len(routable)):
        for j in range(len(routable)):
            if i != j and w[i] > 0:
                moved = w.copy()
                moved[i] -= 1
                moved[j] += 1
                moves.append(moved)
    if moves:
        assert_not_beaten(w, np.array(moves), routable, demand)


# --- examples: the rules and their explanations -----------------------------------------------

# Costs per request shaped like the digits one-row profile (see test_pricing): Fargate has no
# request fee, Cloud Run and Container Apps pay 0.40 USD per million plus egress.
AWS, GCP, AZURE = 0.04e-6, 0.47e-6, 0.46e-6


def cloud(name, state=H, p95=80.0, capacity=1000.0, cost=GCP, low=0, high=100):
    return CloudInput(name, state, p95, capacity, cost, min_weight=low, max_weight=high)


def why(decision: Decision) -> dict[str, str]:
    return {row.cloud: row.why for row in decision.rows}


def test_cheapest_cloud_fills_to_capacity_and_the_next_takes_the_rest():
    decision = decide(
        [cloud("aws", capacity=30.0, cost=AWS), cloud("gcp", cost=GCP), cloud("azure", cost=AZURE)],
        Demand(50.0, SLO),
    )
    assert decision.weights == {"aws": 60, "azure": 40, "gcp": 0}
    assert decision.expected_cost_per_request == pytest.approx(0.6 * AWS + 0.4 * AZURE)
    assert decision.shortfall_rps == 0
    assert why(decision) == {
        "aws": "cheapest within SLO; capacity full",
        "azure": "within SLO, next by cost",
        "gcp": "not needed: cheaper clouds carry the demand",
    }
    row = decision.rows[0]
    assert (row.cloud, row.weight, row.load_rps, row.capacity_rps) == ("aws", 60, 30.0, 30.0)
    assert row.cost_per_million == pytest.approx(0.04)


def test_degraded_cloud_gets_nothing_while_healthy_ones_can_carry_the_demand():
    inputs = [
        cloud("aws", capacity=30.0, cost=AWS),
        cloud("gcp", capacity=40.0, cost=GCP),
        cloud("azure", state=D, p95=400.0, cost=0.0),  # free, but degraded: still no share
    ]
    carried = decide(inputs, Demand(50.0, SLO))
    assert carried.weights == {"aws": 60, "azure": 0, "gcp": 40}
    assert why(carried)["azure"] == (
        "degraded, p95 400 ms over the 250 ms SLO: no share while the clouds within SLO carry the demand"
    )
    assert carried.notes == ()

    short = decide(inputs, Demand(100.0, SLO))  # 70 rps within SLO; azure covers 30
    assert short.weights == {"aws": 30, "azure": 30, "gcp": 40}
    assert (
        why(short)["azure"]
        == "degraded, p95 400 ms over the 250 ms SLO: carries what the clouds within SLO cannot"
    )
    assert short.shortfall_rps == 0
    assert short.notes == ("the clouds within SLO cannot carry 100 rps: 30.0 rps go to azure",)


def test_whole_percentages_that_cannot_fit_capacity_exactly_put_the_last_point_on_a_fallback():
    # 30 + 40 rps carry 70 rps exactly, but 42.86 % and 57.14 % are not whole: capacity comes
    # before the SLO preference, so the point that fits nowhere goes to the degraded cloud.
    inputs = [cloud("aws", capacity=30.0, cost=AWS), cloud("gcp", capacity=40.0), cloud("azure", state=D)]
    decision = decide(inputs, Demand(70.0, SLO))
    assert decision.weights == {"aws": 42, "azure": 1, "gcp": 57}
    assert decision.shortfall_rps == 0


def test_a_healthy_cloud_over_the_slo_is_a_fallback_and_an_unmeasured_one_is_not():
    inputs = [cloud("aws", p95=300.0, cost=AWS), cloud("gcp", p95=None, cost=GCP)]
    decision = decide(inputs, Demand(50.0, SLO))
    assert decision.weights == {"aws": 0, "gcp": 100}
    assert (
        why(decision)["aws"]
        == "p95 300 ms over the 250 ms SLO: no share while the clouds within SLO carry the demand"
    )
    # A p95 exactly at the SLO is within it.
    assert decide([cloud("aws", p95=SLO, cost=AWS), cloud("gcp")], Demand(50.0, SLO)).weights == {
        "aws": 100,
        "gcp": 0,
    }


def test_unhealthy_and_drained_clouds_never_get_weight_even_with_a_min_weight():
    inputs = [
        cloud("aws", state=U, cost=0.0, low=50),
        cloud("azure", state=X, cost=0.0, low=50),
        cloud("gcp"),
    ]
    decision = decide(inputs, Demand(50.0, SLO))
    assert decision.weights == {"aws": 0, "azure": 0, "gcp": 100}
    assert why(decision) == {
        "aws": "unhealthy: never routed",
        "azure": "drained: never routed",
        "gcp": "cheapest within SLO",
    }


def test_min_weight_keeps_an_expensive_cloud_warm_but_not_a_degraded_one():
    inputs = [
        cloud("aws", cost=AWS),
        cloud("gcp", cost=GCP, low=10),
        cloud("azure", state=D, cost=AZURE, low=10),
    ]
    decision = decide(inputs, Demand(50.0, SLO))
    assert decision.weights == {"aws": 90, "azure": 0, "gcp": 10}
    assert why(decision)["gcp"] == "min_weight 10"


def test_max_weight_caps_the_cheapest_cloud():
    decision = decide([cloud("aws", cost=AWS, high=30), cloud("gcp")], Demand(50.0, SLO))
    assert decision.weights == {"aws": 30, "gcp": 70}
    assert why(decision)["aws"] == "cheapest within SLO; max_weight 30"


def test_maxima_below_100_are_exceeded_rather_than_routing_nothing():
    decision = decide([cloud("aws", cost=AWS, high=30), cloud("gcp", state=U)], Demand(50.0, SLO))
    assert decision.weights == {"aws": 100, "gcp": 0}
    assert "above max_weight 30" in why(decision)["aws"]
    assert decision.notes == ("max_weight of the routable clouds sums to 30 < 100: exceeded",)


def test_shortfall_is_reported_and_the_excess_goes_to_the_cheapest_cloud_within_slo():
    inputs = [
        cloud("aws", capacity=30.0, cost=AWS),
        cloud("gcp", capacity=20.0),
        cloud("azure", state=D, capacity=10.0),
    ]
    decision = decide(inputs, Demand(100.0, SLO))
    # 60 rps of capacity for 100 rps: every cloud full, and the 40 rps beyond go to aws.
    assert decision.weights == {"aws": 70, "azure": 10, "gcp": 20}
    assert decision.shortfall_rps == pytest.approx(40.0)
    assert why(decision)["aws"] == "cheapest within SLO; over capacity by 40.0 rps"
    assert (
        decision.notes[-1]
        == "shortfall: 40.0 rps beyond capacity on aws (routable capacity 60 rps for 100 rps of demand)"
    )


def test_only_degraded_clouds_still_serve():
    inputs = [cloud("aws", state=D, p95=None, cost=AWS), cloud("gcp", state=U)]
    decision = decide(inputs, Demand(50.0, SLO))
    assert decision.weights == {"aws": 100, "gcp": 0}
    assert why(decision)["aws"] == "degraded: no cloud is within SLO"
    assert decision.notes == (
        "no cloud is healthy within the latency SLO: routing to degraded or slow clouds",
    )


def test_no_demand_sends_everything_to_the_cheapest_cloud():
    decision = decide([cloud("aws", capacity=0.0, cost=AWS), cloud("gcp")], Demand(0.0, SLO))
    assert decision.weights == {"aws": 100, "gcp": 0}
    assert decision.shortfall_rps == 0


def test_equal_costs_are_broken_by_cloud_name():
    same = [cloud("gcp"), cloud("azure"), cloud("aws")]
    assert decide(same, Demand(50.0, SLO)).weights == {"aws": 100, "azure": 0, "gcp": 0}


def test_panic_when_no_cloud_is_routable():
    decision = decide(
        [cloud("aws", state=U), cloud("gcp", state=X), cloud("azure", state=U)], Demand(50.0, SLO)
    )
    assert decision.panic
    assert decision.weights is None
    assert decision.expected_cost_per_request is None
    assert decision.shortfall_rps == 50.0
    assert decision.notes == (
        "PANIC: no cloud is routable (aws unhealthy, azure unhealthy, gcp drained); "
        "keep the last applied weights",
    )
    assert [row.weight for row in decision.rows] == [None, None, None]
    assert decision.as_dict()["weights"] is None
    assert decide([], Demand(50.0, SLO)).panic


def test_a_decision_has_weights_exactly_when_it_is_not_a_panic():
    with pytest.raises(ValueError, match="exactly when"):
        Decision(
            weights=None, expected_cost_per_request=0.0, shortfall_rps=0.0, rows=(), panic=False, notes=()
        )
    with pytest.raises(ValueError, match="exactly when"):
        Decision(
            weights={"aws": 100},
            expected_cost_per_request=None,
            shortfall_rps=0.0,
            rows=(),
            panic=True,
            notes=(),
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_weight": 60, "max_weight": 50}, "min_weight <= max_weight"),
        ({"max_weight": 101}, "max_weight <= 100"),
        ({"capacity_rps": -1.0}, "capacity_rps"),
        ({"capacity_rps": math.nan}, "capacity_rps"),
        ({"cost_per_request": math.inf}, "cost_per_request"),
        ({"p95_ms": -1.0}, "p95_ms"),
    ],
)
def test_inputs_are_validated(kwargs, message):
    args = {
        "cloud": "aws",
        "state": H,
        "p95_ms": 80.0,
        "capacity_rps": 10.0,
        "cost_per_request": AWS,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        CloudInput(**args)


def test_demand_and_duplicate_clouds_are_refused():
    with pytest.raises(ValueError, match="requests_per_s"):
        Demand(-1.0, SLO)
    with pytest.raises(ValueError, match="latency_slo_ms"):
        Demand(1.0, 0.0)
    with pytest.raises(ValueError, match="once"):
        decide([cloud("aws"), cloud("aws")], Demand(1.0, SLO))


def test_unlimited_capacity_is_null_in_json():
    decision = decide([cloud("aws", capacity=math.inf)], Demand(50.0, SLO))
    assert json.loads(json.dumps(decision.as_dict()))["clouds"]["aws"]["capacity_rps"] is None
