"""During an incident: operators are never kept waiting by probes, and a routing backend that fails
stops neither the others nor the round.

- With `health --watch --apply` running and one endpoint frozen (every probe of it waits the full
  timeout, longer than the state's busy timeout), `failover`, `status`, `route --apply` and
  `failback` all complete: no round holds the state's write lock while it probes.
- With Route 53 unreachable, `health --once --apply` still writes the routing file, keeps the
  round's health state, names the stale backend on stderr and exits 4; the next round, with Route
  53 back, brings it up to date.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from orchestrator.control.config import load_config
from orchestrator.control.reports import RoundReport
from orchestrator.control.routing.backends.file import FileBackend
from orchestrator.control.routing.backends.route53 import Route53Backend
from orchestrator.control.store import BUSY_TIMEOUT, open_state
from orchestrator.control.types import HealthState
from orchestrator.control.wiring import open_plane
from orchestrator.core.storage import RetryPolicy
from tests.control.conftest import Fleet, WatchProcess, run_cli, wait_until
from tests.faults import DelayProxy

FROZEN_TIMEOUT_S = 8.0  # > BUSY_TIMEOUT: a round holding the lock while it probed would lock operators out


@pytest.mark.slow
def test_operator_commands_complete_while_a_frozen_endpoint_stalls_every_round(fleet: Fleet) -> None:
    assert FROZEN_TIMEOUT_S > BUSY_TIMEOUT
    config = str(
        fleet.config(
            health={
                "interval_s": 0.25, "timeout_s": FROZEN_TIMEOUT_S, "unhealthy_threshold": 2,
                "healthy_threshold": 2, "jitter": 0.0, "startup_grace_s": 0, "hold_down_s": 1.0,
            }
        )
    )  # fmt: skip
    assert run_cli("health", "--once", "--apply", "--config", config).returncode == 0
    frozen = fleet.endpoints["gcp"].process
    watch = WatchProcess(config)
    took: dict[str, float] = {}

    def timed(name: str, *args: str) -> dict:
        started = time.monotonic()
        result = run_cli(*args, "--config", config, "--json")
        took[name] = time.monotonic() - started
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "locked" not in result.stderr
        document: dict = json.loads(result.stdout)
        return document

    try:
        wait_until(lambda: len(watch.reports()) >= 2, what="the watch running")
        frozen.signal(signal.SIGSTOP)
        time.sleep(0.5)  # the next round is now waiting on gcp's frozen probe
        # The write lock is free while the round probes: another connection takes it at once.
        for _ in range(5):
            raw = sqlite3.connect(fleet.root / "state.db", timeout=2.0, isolation_level=None)
            try:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("ROLLBACK")
            finally:
                raw.close()
            time.sleep(0.3)

        drained = timed("failover", "failover", "--from", "azure", "--reason", "incident drill")
        assert drained["changed"] is True
        assert fleet.route53_weights()["azure"] == 0
        status = timed("status", "status")
        assert status["clouds"]["azure"]["state"] == "drained"
        assert status["backends"][0]["in_sync"] is True
        routed = timed("route", "route", "--apply")
        assert routed["weights"]["azure"] == 0
        back = timed("failback", "failback", "--to", "azure")
        assert back["flips"][0]["new"] == "healthy"
        assert watch.alive(), "the watch goes on"
    finally:
        frozen.signal(signal.SIGCONT)
        code = watch.stop()
    assert code == 0, watch.stderr
    print("operator commands during the incident (s):", {k: round(v, 2) for k, v in took.items()})


@pytest.mark.slow
def test_a_route53_outage_leaves_the_file_applied_and_the_rounds_health_state_kept(
    fleet: Fleet, tmp_path: Path
) -> None:
    moto_port = int(fleet.moto.endpoint.rsplit(":", 1)[1])
    api = DelayProxy(moto_port).start()  # Route 53's API, as the orchestrator reaches it
    routing = tmp_path / "routing.json"
    config = str(
        fleet.config(
            routing={
                "backend": ["route53", "file"],
                "route53": {"hosted_zone_id": fleet.zone_id, "record_name": "model.example.com.",
                            "endpoint_url": api.url},
                "file": {"path": str(routing)},
            }
        )
    )  # fmt: skip
    try:
        first = run_cli("health", "--once", "--apply", "--config", config)
        assert first.returncode == 0, first.stderr
        assert fleet.route53_weights()["aws"] == 100

        api.stop()  # Route 53 refuses connections from now on
        fleet.endpoints["aws"].process.signal(signal.SIGKILL)
        during = run_cli("health", "--once", "--apply", "--config", config)
        assert during.returncode == 4, during.stdout + during.stderr
        errors = during.stderr.strip().splitlines()
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"error: routing backend stale: route53 zone {fleet.zone_id}")
        assert "cannot connect" in errors[0]
        assert "Traceback" not in during.stderr
        table = json.loads(routing.read_text())
        assert table["weights"]["aws"] == 0, "the file backend was still applied"
        assert sum(table["weights"].values()) == 100
        assert fleet.route53_weights()["aws"] == 100, "Route 53 could not be changed"
        with open_state(fleet.root / "state.db") as state:
            assert state.recent_flips(cloud="aws")[0].new is HealthState.UNHEALTHY, (
                "the round's state was kept"
            )
            recorded = state.backends()
        assert [s.ok for s in recorded.values() if s.kind == "route53"] == [False]

        status = run_cli("status", "--config", config, "--json")
        assert status.returncode == 4
        route53 = next(b for b in json.loads(status.stdout)["backends"] if b["kind"] == "route53")
        assert route53["in_effect"] is None
        assert "cannot connect" in route53["error"]
        assert route53["last_reconciled"]["ok"] is False

        api = DelayProxy(moto_port, port=api.port).start()  # Route 53 is back
        after = run_cli("health", "--once", "--apply", "--config", config)
        assert after.returncode == 1, after.stderr  # aws is down: degraded but serving
        assert fleet.route53_weights()["aws"] == 0, "the next round brought Route 53 up to date"
        assert fleet.route53_weights() == json.loads(routing.read_text())["weights"]
    finally:
        api.stop()


@pytest.mark.slow
def test_a_route53_api_that_never_answers_delays_neither_the_rounds_nor_the_file(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Route 53 black-holed (connections accepted, nothing ever answered; each call waits out its
    timeout): the watch's rounds keep their pace and the routing file follows every decision at
    once; Route 53 is reported stale while its write is still pending."""
    moto_port = int(fleet.moto.endpoint.rsplit(":", 1)[1])
    api = DelayProxy(moto_port, delay_s=3600).start()
    routing = tmp_path / "routing.json"
    config = load_config(
        fleet.config(
            health={"interval_s": 0.25, "timeout_s": 0.5, "unhealthy_threshold": 2, "healthy_threshold": 2,
                    "jitter": 0.0, "startup_grace_s": 0, "hold_down_s": 1.0},
            routing={"backend": "file", "file": {"path": str(routing)}},
        )
    )  # fmt: skip
    slow = Route53Backend(
        hosted_zone_id=fleet.zone_id,
        record_name="model.example.com.",
        endpoint_url=api.url,
        read_timeout=120.0,  # every call outlasts the test: the rounds must not wait for it
        retry=RetryPolicy(attempts=1, timeout=120.0),
    )
    plane = open_plane(config, store=open_state(config.state.path), backends=[slow, FileBackend(routing)])
    reports: list[RoundReport] = []
    started = time.monotonic()

    def on_round(report: RoundReport) -> None:
        reports.append(report)
        if len(reports) == 3:
            fleet.endpoints["aws"].process.signal(signal.SIGKILL)

    try:
        plane.watch(
            apply=True,
            stop=lambda: len(reports) >= 8 or time.monotonic() - started > 60,
            on_round=on_round,
            on_error=pytest.fail,
        )
    finally:
        plane.close()
        api.stop()
    assert len(reports) == 8, "the rounds went on while Route 53 did not answer"
    killed = reports[3:]
    down = next(i for i, r in enumerate(killed) if r.weights and r.weights.get("aws") == 0)
    assert down <= 2, "aws left the decision within unhealthy_threshold rounds of its death"
    files = [next(b for b in r.backends if b.kind == "file") for r in killed[down:]]
    assert files[0].ok
    assert files[0].in_effect is not None
    assert files[0].in_effect["aws"] == 0
    assert json.loads(routing.read_text())["weights"]["aws"] == 0
    stale = [b for r in reports for b in r.backends if b.kind == "route53"]
    assert stale, "Route 53 was reported in every round that reconciled"
    assert all(b.pending and not b.ok and "no answer yet" in (b.error or "") for b in stale)


@pytest.mark.emulator
def test_a_state_bucket_that_never_answers_fails_a_command_in_seconds(tmp_path: Path, moto_server) -> None:
    """The state lives in S3 and S3 stops answering (the region the operator is failing away
    from): a command says so within seconds instead of holding the operator for the storage
    layer's one-minute read timeout."""
    moto_port = int(moto_server.endpoint.rsplit(":", 1)[1])
    bucket = moto_server.create_bucket()
    hole = DelayProxy(moto_port, delay_s=3600).start()
    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        json.dumps(
            {
                "model": {"name": "iris"},
                "clouds": {c: {"endpoint": f"http://{c}.invalid"} for c in ("aws", "gcp", "azure")},
                "state": {"path": f"s3://{bucket}/prod", "settings": {**moto_server.settings,
                                                                     "endpoint_url": hole.url}},
                "routing": {"file": {"path": str(tmp_path / "routing.json")}},
            }
        )
    )  # fmt: skip
    try:
        result = run_cli("failover", "--from", "aws", "--config", str(config), timeout=30)
    finally:
        hole.stop()
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"s3://{bucket}/prod/orchestrator/state.json" in lines[0]
