"""The health state machine, driven by an explicit clock: thresholds, hysteresis, hold-down, drain."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.control.health.machine import (
    Machine,
    MachineConfig,
    Observation,
    Verdict,
    drain,
    observe,
    undrain,
)
from orchestrator.control.types import HealthState

CFG = MachineConfig(
    unhealthy_threshold=2, healthy_threshold=3, hold_down_s=10, max_hold_down_s=80, startup_grace_s=5
)
OK = Observation(Verdict.OK, "ok")
SLOW = Observation(Verdict.DEGRADED, "p95 300 ms over the 250 ms SLO")
DOWN = Observation(Verdict.FAIL, "connection refused")
NOT_READY = Observation(Verdict.FAIL, "readyz 503", not_ready=True)


def run(machine: Machine, observations: list[Observation], start: float = 100.0, step: float = 1.0):
    flips = []
    now = start
    for obs in observations:
        machine, flip = observe(machine, obs, now, CFG, "aws")
        if flip:
            flips.append(flip)
        now += step
    return machine, flips, now


def healthy() -> Machine:
    machine, _, _ = run(Machine(), [OK] * 3, start=0.0)
    assert machine.state is HealthState.HEALTHY
    return machine


def test_a_new_cloud_becomes_healthy_after_the_healthy_threshold() -> None:
    machine, flips, _ = run(Machine(), [OK, OK])
    assert machine.state is HealthState.UNHEALTHY
    assert flips == []
    machine, flips, _ = run(machine, [OK])
    assert machine.state is HealthState.HEALTHY
    assert [(f.old, f.new) for f in flips] == [(HealthState.UNHEALTHY, HealthState.HEALTHY)]


def test_going_down_needs_the_unhealthy_threshold_and_is_recorded_with_its_reason() -> None:
    machine, flips, _ = run(healthy(), [DOWN])
    assert machine.state is HealthState.HEALTHY
    assert flips == []
    machine, flips, _ = run(machine, [DOWN])
    assert machine.state is HealthState.UNHEALTHY
    assert flips[0].reason == "2 consecutive failures: connection refused"
    assert flips[0].actor == "health-check"


def test_one_good_probe_between_failures_resets_the_count() -> None:
    machine, flips, _ = run(healthy(), [DOWN, OK, DOWN, OK, DOWN])
    assert machine.state is HealthState.HEALTHY
    assert flips == []


def test_slow_or_wrong_version_is_degraded_and_recovers_with_good_probes() -> None:
    machine, _, _ = run(healthy(), [SLOW, SLOW])
    assert machine.state is HealthState.DEGRADED
    machine, _, _ = run(machine, [OK, OK, OK])
    assert machine.state is HealthState.HEALTHY


def test_coming_back_waits_for_the_hold_down() -> None:
    machine, _, _ = run(healthy(), [DOWN, DOWN], start=50.0)  # unhealthy at t=51, hold-down until 61
    assert machine.hold_until == 61.0
    machine, flips, _ = run(machine, [OK, OK, OK, OK], start=52.0)  # t=52..55: threshold met, held
    assert machine.state is HealthState.UNHEALTHY
    assert flips == []
    machine, flips, _ = run(machine, [OK], start=61.0)
    assert machine.state is HealthState.HEALTHY
    assert flips[0].reason.endswith("consecutive answering probes")


def test_the_hold_down_doubles_with_each_flap_and_is_capped() -> None:
    machine = healthy()
    holds = []
    now = 100.0
    for _ in range(6):
        machine, _, now = run(machine, [DOWN, DOWN], start=now)
        holds.append(machine.hold_until - (now - 1))
        machine, _, now = run(machine, [OK] * 3, start=machine.hold_until)
        assert machine.state is HealthState.HEALTHY
    assert holds == [10, 20, 40, 80, 80, 80]


def test_a_cloud_stable_for_the_max_hold_down_is_forgiven() -> None:
    machine = healthy()
    machine, _, now = run(machine, [DOWN, DOWN, *([OK] * 3)], start=100.0)
    machine, _, now = run(machine, [OK] * 3, start=machine.hold_until)
    machine, _, _ = run(machine, [DOWN, DOWN], start=now + 1000)
    assert machine.flaps == 1
    assert machine.hold_until - (now + 1001) == 10


def test_a_flapping_endpoint_flips_far_less_often_than_it_changes() -> None:
    """Alternating good and bad probes never reach a threshold: no flip at all."""
    _machine, flips, _ = run(healthy(), [DOWN, OK] * 50)
    assert flips == []


def test_startup_grace_excuses_not_ready_only() -> None:
    machine = Machine()
    machine, _, _ = run(machine, [OK, OK, OK], start=0.0)
    machine, _, _ = run(machine, [NOT_READY, NOT_READY], start=2.0)
    assert machine.state is HealthState.HEALTHY, "within grace, not-ready is not a failure"
    machine, _, _ = run(machine, [DOWN, DOWN], start=3.0)
    assert machine.state is HealthState.UNHEALTHY, "a refused connection is never excused"
    machine, _, _ = run(healthy(), [NOT_READY, NOT_READY], start=50.0)
    assert machine.state is HealthState.UNHEALTHY, "after grace, not-ready counts"


def test_drained_belongs_to_the_operator() -> None:
    machine, flip = drain(healthy(), 10.0, "aws", "maintenance", "alice")
    assert machine.state is HealthState.DRAINED
    assert (flip.old, flip.new, flip.reason, flip.actor) == (
        HealthState.HEALTHY,
        HealthState.DRAINED,
        "maintenance",
        "alice",
    )
    again, second = drain(machine, 11.0, "aws", "maintenance", "alice")
    assert second is None, "draining twice changes nothing"
    assert again == machine
    machine, flips, _ = run(machine, [DOWN] * 5 + [OK] * 5)
    assert machine.state is HealthState.DRAINED
    assert flips == []
    assert machine.oks == 5, "counters stay current while drained"
    machine, flip = undrain(machine, 30.0, "aws", "failback", "alice")
    assert machine.state is HealthState.HEALTHY
    assert flip is not None


def test_machines_round_trip_through_a_dict() -> None:
    machine, _, _ = run(healthy(), [DOWN, DOWN])
    assert Machine.from_dict(machine.to_dict()) == machine


@given(st.lists(st.sampled_from([OK, SLOW, DOWN, NOT_READY]), max_size=60))
def test_invariants_under_any_sequence(observations: list[Observation]) -> None:
    machine, flips, _ = run(Machine(), observations, start=0.0, step=3.0)
    for before, after in itertools.pairwise(flips):
        assert before.new == after.old, "flips chain: each starts where the last ended"
        assert after.at >= before.at
    for flip in flips:
        assert flip.old != flip.new
        if flip.new is HealthState.UNHEALTHY:
            continue
        assert flip.new is not HealthState.DRAINED, "only an operator drains"
    assert machine.state is not HealthState.DRAINED
