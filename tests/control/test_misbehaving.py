"""One misbehaving cloud never stops failover: every kind of bad answer is a verdict.

Three real `orchestrator serve` endpoints and Route 53 on moto; in front of aws (the cheapest
cloud, so it carries all the traffic) stands ``tests/misbehaving.py``, a real HTTP server process
that forwards to aws until told to misbehave in one of its modes: wrong types and shapes in the
canary answer, HTML or plain text where JSON belongs, error statuses, a trickled body, a stalled
status line, answers each late enough to add up past the deadline, a hang, a 100 MB body, a gzip
bomb, a reset mid-body, a short body, bytes that are not HTTP, huge headers, a wrong version.

For each mode, `orchestrator health --watch --apply` (a real process) takes aws's weight to 0 at
Route 53 while gcp and azure keep serving: the fall is recorded with a short reason naming the
fault, the weights still sum to 100 on healthy clouds, and it happens within the bound counted in
rounds (``unhealthy_threshold`` failing probes, plus the round in flight when the fault began);
benchmarks/failover.py measures the same in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.control.health.probe import MAX_REASON
from orchestrator.control.store import open_state
from orchestrator.control.types import HealthState
from orchestrator.training.pipeline import TrainResult
from tests.control.conftest import RECORD, Fleet, WatchProcess, run_cli, running_fleet, wait_until
from tests.faults import MisbehavingEndpoint
from tests.misbehaving import MODES

THRESHOLD = 2
HEALTH = {
    "interval_s": 0.2,
    "timeout_s": 0.5,
    "unhealthy_threshold": THRESHOLD,
    "healthy_threshold": 2,
    "jitter": 0.0,
    "startup_grace_s": 0,
    "hold_down_s": 1.0,
    "max_hold_down_s": 8.0,
}
FAULTS = [mode for mode in MODES if mode != "ok"]


def fall_recorded(state: Path, expected: HealthState) -> bool:
    """Whether the state file records aws falling to ``expected``."""
    if not state.exists():
        return False
    with open_state(state) as store:
        return any(f.new is expected for f in store.recent_flips(cloud="aws", limit=None))


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, models: dict[str, TrainResult], moto_server
) -> Iterator[tuple[Fleet, MisbehavingEndpoint]]:
    root = tmp_path_factory.mktemp("misbehaving-fleet")
    with running_fleet(root, models, moto_server) as fleet:
        bad = MisbehavingEndpoint(fleet.endpoints["aws"].url, log_path=root / "misbehaving.log").start()
        fleet.fronts["aws"] = bad.url
        try:
            yield fleet, bad
        finally:
            bad.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", FAULTS)
def test_a_misbehaving_cloud_loses_its_traffic_within_the_bound_and_the_others_keep_serving(
    front: tuple[Fleet, MisbehavingEndpoint], tmp_path: Path, mode: str
) -> None:
    fleet, bad = front
    bad.mode("ok")
    zone = fleet.new_zone()
    state = tmp_path / "state.db"
    config = fleet.config(
        health=HEALTH,
        routing__route53={"hosted_zone_id": zone, "record_name": RECORD, "endpoint_url": fleet.moto.endpoint},
        state={"path": str(state)},
    )
    expected_state = HealthState.DEGRADED if mode == "wrong_version" else HealthState.UNHEALTHY
    watch = WatchProcess(config)
    try:
        wait_until(lambda: fleet.route53_weights(zone).get("aws") == 100, what="aws carrying the traffic")
        bad.mode(mode)
        faulted_at = time.time()  # every probe that starts from now on meets the fault
        wait_until(lambda: fleet.route53_weights(zone).get("aws") == 0, timeout=30, what=f"aws at 0 ({mode})")
        # The router may take aws to 0 on its p95 latency (over the SLO) a round or two before the
        # machine has counted enough failures to record the fall: wait for the fall as well.
        wait_until(lambda: fall_recorded(state, expected_state), timeout=30, what=f"the fall of aws ({mode})")
    finally:
        bad.mode("ok")
        code = watch.stop()
    assert code == 0, watch.stderr
    assert "Traceback" not in watch.stderr

    weights = fleet.route53_weights(zone)
    assert sum(weights.values()) == 100
    assert weights["aws"] == 0

    with open_state(state) as store:
        flips = store.recent_flips(cloud="aws", limit=None)
        falls = [f for f in flips if f.new is expected_state]
    assert falls, f"the fall of aws is recorded ({mode}): {flips}"
    reason = falls[0].reason
    assert MODES[mode][1] in reason, reason
    assert len(reason) <= MAX_REASON + 60, "the flip's reason is short (the probe's, with a prefix)"
    assert "\n" not in reason

    # Rounds are told apart by when their probe of aws started (ordering, not durations): the
    # weight must be 0 by the THRESHOLD-th round that probed after the fault began (sooner if the
    # round in flight already saw it).
    reports = [
        r
        for r in watch.reports()
        if datetime.fromisoformat(r["clouds"]["aws"]["probes"][0]["at"]).timestamp() >= faulted_at
    ]
    moved = next(i for i, r in enumerate(reports) if r["weights"] and r["weights"]["aws"] == 0)
    assert moved <= THRESHOLD - 1, (
        f"weight 0 decided in round {moved + 1} after the fault (bound: {THRESHOLD})"
    )
    last = reports[-1]["clouds"]
    assert (last["gcp"]["state"], last["azure"]["state"]) == ("healthy", "healthy"), "the others keep serving"
    for report in reports:
        for cloud in ("gcp", "azure"):
            assert all(p["verdict"] == "ok" for p in report["clouds"][cloud]["probes"]), (
                f"{cloud} never failed a probe while aws misbehaved"
            )


def test_what_an_endpoint_says_never_breaks_the_tables_an_operator_reads(
    front: tuple[Fleet, MisbehavingEndpoint], tmp_path: Path
) -> None:
    """An endpoint naming its version in markup and terminal escapes fails its probe; and a state
    that already holds such a version (written before the check) is shown, not interpreted."""
    fleet, bad = front
    config = fleet.config(
        health=HEALTH,
        routing={"backend": "file", "file": {"path": str(tmp_path / "r.json")}},
        state={"path": str(tmp_path / "state.db")},
    )
    bad.mode("hostile_version")
    try:
        once = run_cli("health", "--once", "--apply", "--config", str(config))
    finally:
        bad.mode("ok")
    assert once.returncode == 1, once.stderr  # aws down, the others healthy
    assert "internal error" not in once.stderr
    assert "\x1b" not in once.stdout

    with open_state(tmp_path / "state.db") as store:
        machines = store.load_machines()
        assert "names no version" in machines["aws"]["machine"]["last_reason"]
        assert machines["aws"]["last_probe"]["served_version"] is None
        machines["gcp"]["last_probe"]["served_version"] = "[/bold]\x1b[2J"
        store.save_machines({"gcp": machines["gcp"]})
    status = run_cli("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "[/bold]" in status.stdout
    assert "\x1b" not in status.stdout
