"""Two jobs running at once (say the scheduled health job in two clouds) converge on one routing
decision: given the same probes and the same state, the decision is the same whatever order the
clouds come in, and through the object-store state the second job finds the first one's weights
already in effect, so the history gets one entry, not two, even when the two race.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.config import Config
from orchestrator.control import ControlPlane, RoundReport
from orchestrator.health.state import Machine, MachineConfig, Observation, Verdict, observe
from orchestrator.routing import CloudInput, Decision, Demand, decide
from orchestrator.routing.backends import open_backend
from orchestrator.state import ObjectStoreStateStore, StateStore
from orchestrator.types import Flip, HealthState
from tests.state.conftest import FakeClock, StateBackend

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
    return ControlPlane(
        config,
        store=store,
        backend=open_backend("file", {"path": str(routing)}),  # shared, as Route 53 would be
        client=httpx.Client(transport=transport),
        clock=clock,
        sleep=lambda _: None,
    )


def applied_history(store: StateStore) -> list[dict[str, Any]]:
    assert isinstance(store, ObjectStoreStateStore)
    history: list[dict[str, Any]] = orjson.loads(store.storage.get(store.key))["applied_weights"]
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
def test_two_racing_jobs_converge_one_reruns_on_the_others_state(
    state_backend: StateBackend, tmp_path: Path
) -> None:
    clock = FakeClock()
    both_read = threading.Barrier(2, timeout=30)
    raced = threading.Event()

    def endpoints_after_both_jobs_read_the_state(request: httpx.Request) -> httpx.Response:
        # Each job reads the state when its round starts, then probes: holding the first probe of
        # each until both have started makes their rounds overlap for certain.
        if not raced.is_set():
            both_read.wait()
            raced.set()
        return endpoints(request)

    transport = httpx.MockTransport(endpoints_after_both_jobs_read_the_state)
    routing = tmp_path / "routing.json"
    jobs = [
        plane(order, state_backend.open(clock=clock), routing, transport, clock) for order in CLOUD_ORDERS
    ]
    reports: dict[int, RoundReport] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            # What the scheduled job should do with an optimistic store: the whole round is the
            # step, run again if another job's commit made what it read stale.
            reports[n] = jobs[n].store.atomically(lambda _: jobs[n].health_round(apply=True))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    same_decision(reports[0], reports[1])
    assert sorted([reports[0].applied, reports[1].applied]) == [False, True]
    stores = [job_.store for job_ in jobs]
    stats = [s.stats for s in stores if isinstance(s, ObjectStoreStateStore)]
    assert sum(one["stale"] for one in stats) == 1  # the loser read machines the winner changed
    assert [entry["weights"] for entry in applied_history(stores[0])] == [reports[0].decision.weights]
    # One set of flips too: the loser's were discarded with the rest of its first run.
    assert sorted((f.cloud, f.new) for f in stores[0].recent_flips(limit=None)) == [
        ("aws", HealthState.HEALTHY),
        ("gcp", HealthState.HEALTHY),
    ]
    for job_ in jobs:
        job_.close()
