"""Two jobs on one state (say the scheduled health job in two clouds) converge on one routing
decision: given the same probes and the same state, the decision is the same whatever order the
clouds come in; through the object-store state the second job finds the first one's decision
already committed and in effect, so the history gets one entry, not two; and while one holds the
health-job lease, another is refused before it probes or writes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.control.config import Config
from orchestrator.control.errors import LeaseHeld
from orchestrator.control.health.machine import Machine, MachineConfig, Observation, Verdict, observe
from orchestrator.control.plane import ControlPlane
from orchestrator.control.reports import RoundReport
from orchestrator.control.routing import CloudInput, Decision, Demand, decide
from orchestrator.control.routing.backends import open_backend
from orchestrator.control.store import HEALTH_JOB_LEASE, ObjectStoreStateStore, StateStore
from orchestrator.control.types import Flip, HealthState
from orchestrator.control.wiring import open_plane
from tests.control.store.conftest import FakeClock, StateBackend

CFG = MachineConfig(unhealthy_threshold=2, healthy_threshold=2, hold_down_s=10, startup_grace_s=0)
OK = Observation(Verdict.OK, "ok")
SLOW = Observation(Verdict.DEGRADED, "canary took 400 ms, over the 250 ms SLO")
DOWN = Observation(Verdict.FAIL, "connection refused")
# What every job sees, sample by sample: aws fine, gcp slow, azure down.
PROBES = {"aws": [OK, OK, OK], "gcp": [SLOW, SLOW, SLOW], "azure": [DOWN, DOWN, DOWN]}
# The state both jobs start from, as the store returns it: all healthy after an earlier round.
START = {cloud: Machine(state=HealthState.HEALTHY, first_seen=0.0, probed=True).to_dict() for cloud in PROBES}
P95 = {"aws": 80.0, "gcp": 400.0, "azure": None}
COST = {"aws": 4.0e-8, "gcp": 3.0e-8, "azure": 2.0e-8}
DEMAND = Demand(requests_per_s=50.0, latency_slo_ms=250.0)


def job(
    order: list[str], start: dict[str, dict[str, Any]]
) -> tuple[Decision, dict[str, Machine], list[Flip]]:
    """One job's round, the pure part of it: feed each sample to the machines, then decide."""
    machines = {cloud: Machine.from_dict(start[cloud]) for cloud in order}
    flips = []
    for sample in range(3):
        now = 100.0 + sample
        for cloud in order:
            machines[cloud], flip = observe(machines[cloud], PROBES[cloud][sample], now, CFG, cloud)
            if flip is not None:
                flips.append(flip)
    inputs = [
        CloudInput(cloud, machines[cloud].state, P95[cloud], capacity_rps=100.0, cost_per_request=COST[cloud])
        for cloud in order
    ]
    return decide(inputs, DEMAND), machines, flips


def test_the_same_probes_and_state_give_the_same_decision_in_any_cloud_order() -> None:
    first, machines_1, flips_1 = job(["aws", "gcp", "azure"], START)
    second, machines_2, flips_2 = job(["azure", "gcp", "aws"], START)

    assert repr(first) == repr(second)  # weights (and their order), rows, notes: all of it
    assert first.weights == {"aws": 100, "azure": 0, "gcp": 0}
    assert machines_1 == machines_2
    key = lambda f: (f.at, f.cloud)  # noqa: E731
    assert sorted(flips_1, key=key) == sorted(flips_2, key=key)
    assert {(f.cloud, f.new) for f in flips_1} == {
        ("gcp", HealthState.DEGRADED),
        ("azure", HealthState.UNHEALTHY),
    }


# --- through the control plane and the object-store state ------------------------------------

CANARY = {"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"], "probabilities": [[0.98, 0.01, 0.01]]}
CLOUD_ORDERS = (["aws", "gcp", "azure"], ["azure", "gcp", "aws"])


def endpoints(request: httpx.Request) -> httpx.Response:
    """Every job probes the same fleet: aws and gcp answer correctly, azure is not ready."""
    host, path = request.url.host, request.url.path
    if path == "/readyz":
        return (
            httpx.Response(503, json={"reason": "loading"}) if host == "azure.test" else httpx.Response(200)
        )
    if path == "/v1/model":
        return httpx.Response(200, json={"version": "v1", "canary": CANARY})
    if path == "/v1/predict":
        return httpx.Response(
            200, json={"predictions": CANARY["labels"], "probabilities": CANARY["probabilities"]}
        )
    return httpx.Response(404)


def plane(
    order: list[str], store: StateStore, routing: Path, transport: httpx.MockTransport, clock: FakeClock
) -> ControlPlane:
    config = Config.model_validate(
        {
            "model": {"name": "iris"},
            # The clouds in a different order per job, as two differently written configs would.
            "clouds": {cloud: {"endpoint": f"http://{cloud}.test", "capacity_rps": 100} for cloud in order},
            "health": {"unhealthy_threshold": 2, "healthy_threshold": 2, "startup_grace_s": 0, "jitter": 0},
            "routing": {"backend": "file", "file": {"path": str(routing)}},
        }
    )
    return open_plane(
        config,
        store=store,
        backends=[open_backend("file", {"path": str(routing)})],  # shared, as Route 53 would be
        transport=transport,
        clock=clock,
        sleep=lambda _: None,
    )


def applied_history(store: StateStore) -> list[dict[str, Any]]:
    assert isinstance(store, ObjectStoreStateStore)
    history: list[dict[str, Any]] = orjson.loads(store.storage.get(store.key))["desired_weights"]
    return history


def same_decision(first: RoundReport, second: RoundReport) -> None:
    # Rows carry each job's measured p95 (real timings of the mock calls), so compare the rest.
    assert first.decision.weights == second.decision.weights
    assert [(r.cloud, r.state, r.weight, r.why) for r in first.decision.rows] == [
        (r.cloud, r.state, r.weight, r.why) for r in second.decision.rows
    ]
    assert first.decision.notes == second.decision.notes


CONVERGENCE_BACKENDS = [
    pytest.param("local", id="objectstore-local"),
    pytest.param("s3", id="objectstore-s3", marks=pytest.mark.emulator),
    pytest.param("azure", id="objectstore-azure", marks=pytest.mark.emulator),
]


@pytest.mark.parametrize("state_backend", CONVERGENCE_BACKENDS, indirect=True)
def test_two_sequential_jobs_converge_to_one_applied_weights_entry(
    state_backend: StateBackend, tmp_path: Path
) -> None:
    clock = FakeClock()
    transport = httpx.MockTransport(endpoints)
    routing = tmp_path / "routing.json"
    jobs = [
        plane(order, state_backend.open(clock=clock), routing, transport, clock) for order in CLOUD_ORDERS
    ]

    first = jobs[0].health_round(apply=True)
    second = jobs[1].health_round(apply=True)

    same_decision(first, second)
    assert first.decision.weights == {"aws": 100, "azure": 0, "gcp": 0}  # the cheaper of the healthy two
    assert (first.applied, second.applied) == (True, False)  # the second finds them in effect
    assert [entry["weights"] for entry in applied_history(jobs[1].store)] == [first.decision.weights]
    for job_ in jobs:
        job_.close()


@pytest.mark.parametrize("state_backend", CONVERGENCE_BACKENDS, indirect=True)
def test_a_job_that_finds_the_lease_held_probes_and_writes_nothing(
    state_backend: StateBackend, tmp_path: Path
) -> None:
    clock = FakeClock()
    probed: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        probed.append(request.url.host)
        return endpoints(request)

    routing = tmp_path / "routing.json"
    jobs = [
        plane(order, state_backend.open(clock=clock), routing, httpx.MockTransport(counting), clock)
        for order in CLOUD_ORDERS
    ]
    holder = jobs[0].store.acquire_lease(HEALTH_JOB_LEASE, "a job still running", ttl_s=60.0)
    with pytest.raises(LeaseHeld, match="a job still running holds the health-job lease") as info:
        jobs[1].health_round(apply=True)
    assert info.value.exit_code == 75
    assert probed == []
    assert jobs[1].store.desired() is None
    assert jobs[1].store.recent_flips(limit=None) == []
    assert not routing.exists()

    jobs[0].store.release_lease(holder)
    report = jobs[1].health_round(apply=True)
    assert report.applied
    lease = jobs[0].store.lease(HEALTH_JOB_LEASE)
    assert lease is not None
    assert (lease.holder, lease.epoch) == (jobs[1].holder, 2)
    assert not lease.live(clock.now), "released at the end of the round"
    for job_ in jobs:
        job_.close()


@pytest.mark.parametrize("state_backend", CONVERGENCE_BACKENDS[:1], indirect=True)
def test_a_watch_whose_lease_was_taken_over_stops_and_commits_nothing_more(
    state_backend: StateBackend, tmp_path: Path
) -> None:
    clock = FakeClock()
    watch = plane(
        CLOUD_ORDERS[0],
        state_backend.open(clock=clock),
        tmp_path / "r.json",
        httpx.MockTransport(endpoints),
        clock,
    )
    other = state_backend.open(clock=clock)
    rounds: list[RoundReport] = []

    def on_round(report: RoundReport) -> None:
        rounds.append(report)
        # The watch was frozen past its lease (SIGSTOP, say) and a scheduled run took the job over.
        clock.now += watch.lease_ttl(1, watch=True) + 1
        other.acquire_lease(HEALTH_JOB_LEASE, "a scheduled run", ttl_s=600)

    flips_before = len(other.recent_flips(limit=None))
    with pytest.raises(LeaseHeld, match="lost the health-job lease: a scheduled run holds it now"):
        watch.watch(apply=True, stop=lambda: len(rounds) >= 3, on_round=on_round)
    assert len(rounds) == 1, "the next round's commit found the lease gone and wrote nothing"
    assert len(other.recent_flips(limit=None)) == flips_before
    lease = other.lease(HEALTH_JOB_LEASE)
    assert lease is not None
    assert lease.holder == "a scheduled run", "the watch left the new holder's lease alone"
    watch.close()


@pytest.mark.parametrize("state_backend", CONVERGENCE_BACKENDS[:1], indirect=True)
def test_a_watch_round_that_fails_is_reported_and_the_watch_goes_on(
    state_backend: StateBackend, tmp_path: Path
) -> None:
    clock = FakeClock()
    watch = plane(
        CLOUD_ORDERS[0],
        state_backend.open(clock=clock),
        tmp_path / "r.json",
        httpx.MockTransport(endpoints),
        clock,
    )
    rounds: list[RoundReport] = []
    errors: list[str] = []

    def on_round(report: RoundReport) -> None:
        rounds.append(report)
        if len(rounds) == 1:
            raise RuntimeError("a bug in whatever consumes the rounds")

    watch.watch(apply=True, stop=lambda: len(rounds) >= 3, on_round=on_round, on_error=errors.append)
    assert len(rounds) == 3
    assert errors == ["health round failed: RuntimeError: a bug in whatever consumes the rounds"]
    watch.close()
