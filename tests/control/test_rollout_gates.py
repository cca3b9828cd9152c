"""The rollout's gates on plain data: /metrics expositions, counts, drift answers (no endpoint needed).

Kinds covered: each gate passing, failing and without data; the drift answer missing, malformed in
every field the gate reads, with too few rows, without a reference (an artifact older than drift
profiles), or drifted against the old version's clouds or the reference; counters reset by a
restart; the plan's order and bounds.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from orchestrator.control.rollout import gates
from orchestrator.control.rollout.gates import EndpointSample
from orchestrator.control.rollout.plan import RolloutPlan, load_plan
from orchestrator.control.rollout.record import weight_caps
from orchestrator.core.errors import ConfigError


def exposition(ok: int, failed: int, latencies: list[float], route: str = "/v1/predict") -> str:
    """A /metrics text as the endpoint writes it (its metric names), made with prometheus-client."""
    registry = CollectorRegistry()
    requests = Counter("http_requests", "", ["endpoint", "method", "status"], registry=registry)
    latency = Histogram(
        "http_request_duration_seconds", "", ["endpoint", "method", "status"], registry=registry
    )
    requests.labels(route, "POST", "200").inc(ok)
    requests.labels(route, "POST", "503").inc(failed)
    requests.labels("/metrics", "GET", "500").inc(1000)  # not a prediction route: ignored
    for seconds in latencies:
        latency.labels(route, "POST", "200").observe(seconds)
    return generate_latest(registry).decode()


def test_parse_metrics_counts_prediction_routes_only() -> None:
    sample = gates.parse_metrics(exposition(90, 10, [0.01] * 5))
    assert (sample.requests, sample.errors) == (100, 10)
    assert sample.buckets[math.inf] == 5
    v2 = gates.parse_metrics(exposition(3, 0, [], route="/v2/models/{name}/infer"))
    assert v2.requests == 3
    with pytest.raises(ValueError):
        gates.parse_metrics("this is { not an exposition")


def test_increase_and_restart() -> None:
    before = EndpointSample(100, 1, {0.1: 50.0, math.inf: 100.0})
    after = EndpointSample(150, 6, {0.1: 60.0, math.inf: 150.0})
    assert after.minus(before) == EndpointSample(50, 5, {0.1: 10.0, math.inf: 50.0})
    restarted = EndpointSample(7, 0, {math.inf: 7.0})
    assert restarted.minus(before) == restarted  # counters reset: the later value is the increase


@pytest.mark.parametrize(
    ("moved", "old", "probes", "probe_failures", "status"),
    [
        (EndpointSample(100, 0, {}), EndpointSample(300, 0, {}), 5, 0, "pass"),
        (EndpointSample(100, 1, {}), EndpointSample(300, 0, {}), 5, 0, "pass"),  # within 1 point
        (EndpointSample(100, 5, {}), EndpointSample(300, 0, {}), 5, 0, "fail"),  # 5xx on traffic
        (EndpointSample(0, 0, {}), EndpointSample(300, 0, {}), 30, 3, "fail"),  # probes failing
        (EndpointSample(100, 5, {}), EndpointSample(300, 15, {}), 5, 0, "pass"),  # old as bad
        (EndpointSample(3, 3, {}), EndpointSample(300, 0, {}), 2, 0, "no-data"),  # too few
        # The probes are among the endpoint's own requests: 10 requests, not 20 (no double count).
        (EndpointSample(10, 0, {}), EndpointSample(300, 0, {}), 10, 0, "no-data"),
        (EndpointSample(50, 1, {}), EndpointSample(300, 0, {}), 10, 1, "fail"),  # 1 of 50, not 2 of 60
    ],
)
def test_error_rate_gate(
    moved: EndpointSample, old: EndpointSample, probes: int, probe_failures: int, status: str
) -> None:
    verdict = gates.error_rate_gate(
        moved, old, probes=probes, probe_failures=probe_failures, max_error_rate=0.01, min_requests=20
    )
    assert verdict.status == status, verdict.reason


def test_histogram_quantile_interpolates_as_prometheus() -> None:
    # 100 observations: 50 under 10 ms, 40 more under 100 ms, 10 more under 1 s.
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert gates.histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert gates.histogram_quantile(0.95, buckets) == pytest.approx(0.1 + 0.9 * 0.5)
    assert gates.histogram_quantile(0.95, {math.inf: 0.0}) is None
    assert gates.histogram_quantile(0.99, {0.5: 1.0, math.inf: 10.0}) == 0.5  # in +Inf: highest bound


def test_latency_gate() -> None:
    fast = EndpointSample(100, 0, {0.01: 100.0, 0.5: 100.0, math.inf: 100.0})
    slow = EndpointSample(100, 0, {0.01: 0.0, 0.5: 100.0, math.inf: 100.0})
    bounds = {"max_p95_ratio": 1.5, "p95_slack_ms": 50.0, "min_requests": 20}
    assert gates.latency_gate(fast, fast, **bounds).status == "pass"
    failed = gates.latency_gate(slow, fast, **bounds)
    assert failed.status == "fail"
    assert "p95" in failed.reason
    assert gates.latency_gate(fast, slow, **bounds).status == "pass"  # faster is never a failure
    assert gates.latency_gate(slow, EndpointSample(0, 0, {}), **bounds).status == "no-data"


def test_canary_gate() -> None:
    assert gates.canary_gate([], 5).status == "pass"
    assert gates.canary_gate([], 0).status == "no-data"
    failed = gates.canary_gate(["canary row 0: labels differ"], 5)
    assert failed.status == "fail"
    assert "labels differ" in failed.reason


def answer(counts: dict[str, int], *, rows: int | None = None, js: float | None = 0.02) -> dict[str, object]:
    """A drift answer in the shared contract's shape."""
    return {
        "model_name": "iris",
        "model_version": "v",
        "window": {"rows": sum(counts.values()) if rows is None else rows, "capacity_rows": 2000},
        "features": {},
        "prediction": {"counts": counts, "reference": None, "psi": None, "js_distance": js},
        "confidence": {"mean": 0.9, "reference_mean": None},
        "estimated_accuracy": None,
    }


BALANCED = {"setosa": 100, "versicolor": 100, "virginica": 100}
SHIFTED = {"setosa": 10, "versicolor": 20, "virginica": 270}


def drift(moved: object, old: list[object]) -> gates.Verdict:
    return gates.drift_gate(moved, old, max_js_distance=0.1, min_rows=200)


def test_drift_gate_passes_alike_and_fails_shifted() -> None:
    assert drift(answer(BALANCED), [answer(BALANCED), answer(BALANCED)]).status == "pass"
    failed = drift(answer(SHIFTED), [answer(BALANCED), answer(BALANCED)])
    assert failed.status == "fail"
    assert "old version" in failed.reason
    assert failed.values["js_old_version"] == pytest.approx(
        gates.js_distance(SHIFTED, {k: 2 * v for k, v in BALANCED.items()}), abs=1e-6
    )
    # Against the reference only (the old clouds have no drift data).
    against_reference = drift(answer(BALANCED, js=0.4), [None, None])
    assert against_reference.status == "fail"
    assert "reference" in against_reference.reason


@pytest.mark.parametrize("seed", range(20))
def test_js_distance_without_scipy_is_scipys(seed: int) -> None:
    import random

    from scipy.spatial.distance import jensenshannon

    rng = random.Random(seed)
    n = rng.randint(1, 12)
    a = [rng.choice([0.0, rng.random() * 100]) for _ in range(n)] + [1.0]
    b = [rng.choice([0.0, rng.random()]) for _ in range(n)] + [rng.random() + 0.1]
    assert gates._js_distance(a, b) == pytest.approx(float(jensenshannon(a, b, base=2)), abs=1e-9)


def test_js_distance_is_scipy_base_2() -> None:
    from scipy.spatial.distance import jensenshannon

    p, q = {"a": 3, "b": 1}, {"a": 1, "b": 3, "c": 4}
    assert gates.js_distance(p, q) == pytest.approx(jensenshannon([3, 1, 0], [1, 3, 4], base=2))
    assert gates.js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gates.js_distance({}, {"a": 1})


@pytest.mark.parametrize(
    "moved",
    [
        None,  # 404, an error, a timeout
        "not an object",
        [],
        {},
        {"window": {"rows": 500}},
        {"window": {"rows": 500}, "prediction": None},
        {"window": {"rows": "500"}, "prediction": {"counts": BALANCED}},
        {"window": {"rows": True}, "prediction": {"counts": BALANCED}},
        {"window": {"rows": 500}, "prediction": {"counts": {"a": -1}}},
        {"window": {"rows": 500}, "prediction": {"counts": {"a": "many"}}},
        {"window": {"rows": 500}, "prediction": {"counts": {"a": float("nan")}}},
        {"window": None, "prediction": {"counts": BALANCED}},
        answer(BALANCED, rows=50),  # too few rows in the window
        answer({}, rows=0, js=None),  # an empty window
    ],
)
def test_no_drift_data_neither_passes_nor_fails(moved: object) -> None:
    verdict = drift(moved, [answer(BALANCED)])
    assert verdict.status == "no-data"
    assert "no drift data" in verdict.reason


def test_drift_without_anything_to_compare_with() -> None:
    # The old clouds answer nothing usable and the artifact has no reference: no-data, not pass.
    verdict = drift(answer(BALANCED, js=None), [None, {"window": {"rows": 9}}])
    assert verdict.status == "no-data"
    # Old clouds with too few rows between them are not compared with.
    assert drift(answer(SHIFTED, js=None), [answer(BALANCED, rows=100)]).status == "no-data"


def test_plan_order_and_bounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = RolloutPlan()
    costs = {"aws": 3.0, "gcp": 1.0, "azure": 2.0}
    assert plan.resolved_order(["aws", "gcp", "azure"], costs) == ["gcp", "azure", "aws"]
    given = RolloutPlan(order=("azure", "aws", "gcp"))
    assert given.resolved_order(["aws", "gcp", "azure"], costs) == ["azure", "aws", "gcp"]
    with pytest.raises(ConfigError, match="name each configured cloud once"):
        RolloutPlan(order=("aws", "aws", "gcp")).resolved_order(["aws", "gcp", "azure"], costs)
    with pytest.raises(ConfigError, match="azure not configured"):
        RolloutPlan(order=("azure", "aws")).resolved_order(["aws", "gcp"], costs)
    path = tmp_path / "plan.yaml"
    path.write_text("canary_weight: 5\nbake_s: 60\ngates:\n  max_js_distance: 0.2\n")
    loaded = load_plan(str(path), {"bake_s": 2.0, "order": None})
    assert (loaded.canary_weight, loaded.bake_s, loaded.gates.max_js_distance) == (5, 2.0, 0.2)
    path.write_text("canary_weight: 500\n")
    with pytest.raises(ConfigError, match=r"plan.yaml: canary_weight: "):
        load_plan(str(path), {})
    path.write_text("gates:\n  max_js: 1\n")
    with pytest.raises(ConfigError, match=r"gates.max_js"):
        load_plan(str(path), {})
    with pytest.raises(ConfigError, match="bake_s"):
        load_plan(None, {"bake_s": -1.0})


def test_weight_caps_only_while_active() -> None:
    assert weight_caps({"status": "running", "caps": {"aws": 10, "gcp": 0}}) == {"aws": 10, "gcp": 0}
    assert weight_caps({"status": "rolling-back", "caps": {"aws": 0}}) == {"aws": 0}
    assert weight_caps({"status": "succeeded", "caps": {"aws": 10}}) == {}
    assert weight_caps(None) == {}
    assert weight_caps({"status": "running", "caps": {"aws": 500, "gcp": True, "azure": "x"}}) == {}


def test_a_lost_probe_is_tolerated_up_to_the_threshold() -> None:
    assert gates.canary_gate(["timed out"], 10, tolerated=1).status == "pass"
    failed = gates.canary_gate(["timed out", "timed out"], 10, tolerated=1)
    assert failed.status == "fail"
    kept = gates.canary_gate(["a"] * 5, 40, failed=9, tolerated=1)  # only the first five reasons kept
    assert kept.values["failures"] == 9
    assert kept.reason.startswith("9 of 40 probes failed")


def test_the_drift_gate_ignores_answers_of_another_version_than_expected() -> None:
    def of(version: str, counts: dict[str, int]) -> dict[str, object]:
        return {**answer(counts), "model_version": version}

    def gate(moved: object, old: list[object]) -> gates.Verdict:
        return gates.drift_gate(
            moved, old, max_js_distance=0.1, min_rows=200, moved_version="v2", old_version="v1"
        )

    assert gate(of("v2", SHIFTED), [of("v1", BALANCED)]).status == "fail"
    # The moved cloud's window is still of the old version (it just reloaded): no data yet.
    assert gate(of("v1", SHIFTED), [of("v1", BALANCED)]).status == "no-data"
    # An old cloud answering for another version is left out of the pool.
    assert gate(of("v2", SHIFTED), [of("v3", BALANCED)]).values["old_rows"] == 0
