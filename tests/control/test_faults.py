"""Faults injected into real endpoints, with Route 53 (moto) following the control plane's decisions."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from orchestrator.control.plane import ControlPlane
from orchestrator.control.reports import FailoverRefused, RoundReport
from orchestrator.control.types import HealthState
from tests.control.conftest import Fleet

HEALTHY = HealthState.HEALTHY


@contextmanager
def watching(plane: ControlPlane) -> Iterator[list[RoundReport]]:
    """Run ``health --watch --apply`` in a thread; yields the reports as they come."""
    reports: list[RoundReport] = []
    done = threading.Event()
    thread = threading.Thread(
        target=plane.watch,
        kwargs={"apply": True, "stop": done.is_set, "on_round": reports.append},
        daemon=True,
    )
    thread.start()
    try:
        yield reports
    finally:
        done.set()
        thread.join(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic()


def all_healthy(reports: list[RoundReport]) -> bool:
    return bool(reports) and all(r.machine.state is HEALTHY for r in reports[-1].records.values())


def test_one_round_finds_all_healthy_and_applies_weights_to_route53(fleet: Fleet) -> None:
    report = fleet.plane().health_round(apply=True)
    assert report.exit_code == 0
    assert report.expected_version == fleet.models["v1"].manifest.version
    assert all(r.machine.state is HEALTHY for r in report.records.values())
    assert report.applied
    assert sum(report.weights.values()) == 100
    assert fleet.route53_weights() == report.weights
    again = fleet.plane().health_round(apply=True)
    assert not again.applied, "unchanged weights are not re-applied"


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_a_dead_or_frozen_cloud_leaves_routing_within_the_bound(fleet: Fleet, fault: str) -> None:
    config = fleet.config()
    plane = fleet.plane(config)
    h = plane.config.health
    bound = h.unhealthy_threshold * h.interval_s + h.timeout_s
    with watching(plane) as reports:
        wait_until(lambda: all_healthy(reports) and len(fleet.route53_weights()) == 3, what="healthy")
        weights = fleet.route53_weights()
        victim = max(weights, key=weights.__getitem__)  # the cloud carrying the traffic
        assert weights[victim] > 0
        process = fleet.endpoints[victim].process
        faulted_at = time.time()
        process.signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        wait_until(lambda: fleet.route53_weights()[victim] == 0, what="route53 weight 0")
        flips = [f for f in plane.store.recent_flips(cloud=victim) if f.new is HealthState.UNHEALTHY]
        # The flip is stamped with the probe that decided it: within threshold x interval + timeout
        # of the fault, plus one interval for where in the probe cycle the fault fell.
        assert flips, "the fall is recorded"
        assert flips[0].at - faulted_at <= bound + h.interval_s
        assert ("timed out" if fault == "freeze" else "unreachable") in flips[0].reason
        weights = fleet.route53_weights()
        assert sum(weights.values()) == 100
        assert weights[victim] == 0
    process.signal(signal.SIGCONT)


def test_a_wrong_version_or_a_slow_cloud_is_degraded_and_loses_its_share(fleet: Fleet) -> None:
    # 0.3 s per answer: three answers take 0.9 s, inside one probe's 2 s deadline (the fleet's 0.5 s
    # would fail the probe: the deadline covers all three requests).
    plane = fleet.plane(fleet.config(health__timeout_s=2.0))
    plane.health_round(apply=True)
    fleet.endpoints["aws"].stop()
    fleet.start("aws", "v2").wait_ready()
    fleet.proxy.delay_s = 0.3  # gcp answers, 300 ms late: over the 250 ms SLO
    report = plane.health_round(apply=True)
    assert report.records["aws"].machine.state is HealthState.DEGRADED
    assert "serves version" in report.records["aws"].machine.last_reason
    assert report.records["gcp"].machine.state is HealthState.DEGRADED
    assert "over the 250 ms SLO" in report.records["gcp"].machine.last_reason
    assert fleet.route53_weights() == {"aws": 0, "azure": 100, "gcp": 0}
    assert report.exit_code == 1, "degraded but serving"


def test_a_rollout_in_progress_keeps_every_cloud_healthy_until_the_grace_ends(fleet: Fleet) -> None:
    """LATEST moves to v2 everywhere; aws reloads first, the others still serve v1 for a while."""
    grace = 4.0
    config = fleet.config(health__rollout_grace_s=grace)
    plane = fleet.plane(config)
    assert plane.health_round(apply=True).exit_code == 0
    v1, v2 = (fleet.models[v].manifest.version for v in ("v1", "v2"))
    fleet.publish("v2")
    fleet.start("aws", "v2").wait_ready()
    time.sleep(1.0)  # the watch loop's expectation is re-read at most once a second
    report = plane.health_round(apply=True)
    assert report.expected_version == v2, "aws serving v2 made the plane re-read LATEST"
    assert report.exit_code == 0
    assert report.flips == []
    for cloud in ("gcp", "azure"):
        assert report.records[cloud].machine.last_reason == f"rolling out: still serves {v1}, next {v2}"

    once = fleet.plane(config).health_round(apply=True)  # a scheduled `health --once`: a new process
    assert once.exit_code == 0, "the grace comes from the pointer, not from the process's memory"

    time.sleep(grace)
    report = plane.health_round(apply=True)
    degraded = {c for c, r in report.records.items() if r.machine.state is HealthState.DEGRADED}
    assert degraded == {"gcp", "azure"}, "after the grace, v1 is the wrong version"
    assert fleet.route53_weights() == {"aws": 100, "azure": 0, "gcp": 0}


def test_comeback_waits_for_the_healthy_threshold_and_the_hold_down(fleet: Fleet) -> None:
    plane = fleet.plane()
    h = plane.config.health
    plane.health_round(apply=True)
    fleet.endpoints["aws"].process.signal(signal.SIGKILL)
    down = plane.health_round(apply=True)
    assert down.records["aws"].machine.state is HealthState.UNHEALTHY
    hold_until = down.records["aws"].machine.hold_until
    fleet.start("aws").wait_ready()
    with watching(plane) as reports:
        wait_until(lambda: fleet.route53_weights()["aws"] > 0, what="aws readmitted")
    back = next(f for f in plane.store.recent_flips(cloud="aws") if f.new is HEALTHY)
    assert back.at >= hold_until, "not before the hold-down ends"
    ups = [r for r in reports if r.probes["aws"][0].verdict.value == "ok"]
    assert len(ups) >= h.healthy_threshold, "not before healthy_threshold good probes"


def test_a_flapping_cloud_does_not_change_weights_on_every_probe(fleet: Fleet) -> None:
    plane = fleet.plane()
    process = fleet.endpoints["azure"].process
    with watching(plane) as reports:
        wait_until(lambda: all_healthy(reports), what="healthy")
        rounds_before = len(reports)
        changes_before = len(plane.store.recent_flips(limit=None))
        for _ in range(8):  # frozen half the time, in bursts shorter than two probes
            process.signal(signal.SIGSTOP)
            time.sleep(0.3)
            process.signal(signal.SIGCONT)
            time.sleep(0.3)
        rounds = len(reports) - rounds_before
    flips = len(plane.store.recent_flips(limit=None)) - changes_before
    assert rounds >= 6
    assert flips <= 2, f"{flips} flips over {rounds} probes"


def test_failover_drains_refuses_the_last_cloud_and_is_idempotent(fleet: Fleet) -> None:
    plane = fleet.plane()
    plane.health_round(apply=True)
    result = plane.failover("aws", to=None, reason="maintenance", actor="alice", dry_run=False, force=False)
    assert [(f.cloud, f.new, f.actor, f.reason) for f in result.flips] == [
        ("aws", HealthState.DRAINED, "alice", "maintenance")
    ]
    assert fleet.route53_weights()["aws"] == 0
    again = plane.failover("aws", to=None, reason="maintenance", actor="alice", dry_run=False, force=False)
    assert again.flips == []
    assert not again.applied
    moved = plane.failover("gcp", to="azure", reason="move", actor="alice", dry_run=False, force=False)
    assert moved.weights == {"aws": 0, "azure": 100, "gcp": 0}
    assert fleet.route53_weights() == moved.weights
    with pytest.raises(FailoverRefused, match="last cloud in rotation"):
        plane.failover("azure", to=None, reason="x", actor="alice", dry_run=False, force=False)
    assert fleet.route53_weights()["azure"] == 100, "refused: nothing changed"
    # The drain survives a health round: health checks never undo an operator's drain.
    report = plane.health_round(apply=True)
    assert report.records["aws"].machine.state is HealthState.DRAINED


def test_failback_only_returns_a_cloud_that_is_healthy_now(fleet: Fleet) -> None:
    plane = fleet.plane()
    plane.health_round(apply=True)
    plane.failover("gcp", to=None, reason="maintenance", actor="bob", dry_run=False, force=False)
    fleet.endpoints["gcp"].process.signal(signal.SIGKILL)
    with pytest.raises(FailoverRefused, match="stays drained"):
        plane.failback("gcp", actor="bob")
    fleet.start("gcp").wait_ready()
    result = plane.failback("gcp", actor="bob")
    assert [(f.old, f.new) for f in result.flips] == [(HealthState.DRAINED, HEALTHY)]
    assert fleet.route53_weights() == result.weights
    assert plane.failback("gcp", actor="bob").flips == [], "failing back twice changes nothing"


def test_when_every_cloud_is_down_the_last_weights_stay(fleet: Fleet) -> None:
    plane = fleet.plane()
    before = plane.health_round(apply=True).weights
    for endpoint in fleet.endpoints.values():
        endpoint.process.signal(signal.SIGKILL)
    report = plane.health_round(apply=True)
    assert report.exit_code == 2
    assert report.decision.panic
    assert report.weights == before
    assert fleet.route53_weights() == before, "never route to nothing"


def test_status_tells_the_truth(fleet: Fleet) -> None:
    plane = fleet.plane()
    plane.health_round(apply=True)
    fleet.endpoints["gcp"].process.signal(signal.SIGKILL)
    plane.health_round(apply=True)
    status = plane.status()
    gcp = status["clouds"]["gcp"]
    assert gcp["state"] == "unhealthy"
    assert gcp["weight"] == 0
    assert "unreachable" in gcp["last_probe"]["reason"]
    assert status["clouds"]["aws"]["served_version"] == fleet.models["v1"].manifest.version
    [route53] = status["backends"]
    assert route53["kind"] == "route53"
    assert route53["in_effect"] == fleet.route53_weights() == status["desired"]["weights"]
    assert route53["in_sync"] is True
    assert route53["last_reconciled"]["ok"] is True
    assert status["flips"][0]["cloud"] == "gcp"
    assert status["flips"][0]["new"] == "unhealthy"
