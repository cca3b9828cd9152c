"""The control-plane commands as an operator and a scheduler run them: exit codes, messages, JSON."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.control.conftest import Fleet


def run(*args: str, user: str = "carol") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_USER": user}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_health_once_exit_codes_follow_the_fleet(fleet: Fleet) -> None:
    config = str(fleet.config())
    ok = run("health", "--once", "--apply", "--config", config, "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["applied"] is True
    assert {c["state"] for c in doc["clouds"].values()} == {"healthy"}
    assert fleet.route53_weights() == doc["weights"]

    fleet.endpoints["gcp"].process.signal(signal.SIGKILL)
    degraded = run("health", "--once", "--apply", "--config", config)
    assert degraded.returncode == 1
    assert "gcp" in degraded.stdout
    assert "unhealthy" in degraded.stdout

    for cloud in ("aws", "azure"):
        fleet.endpoints[cloud].process.signal(signal.SIGKILL)
    none = run("health", "--once", "--apply", "--config", config)
    assert none.returncode == 2
    assert "PANIC" in none.stderr
    assert "last applied weights stay" in none.stderr


def test_failover_and_failback_from_the_command_line(fleet: Fleet) -> None:
    config = str(fleet.config())
    run("health", "--once", "--apply", "--config", config)
    dry = run("failover", "--from", "aws", "--dry-run", "--config", config, "--json")
    assert json.loads(dry.stdout)["applied"] is False
    assert fleet.route53_weights()["aws"] == 100, "a dry run changes nothing"

    drained = run("failover", "--from", "aws", "--reason", "kernel upgrade", "--config", config, "--json")
    assert drained.returncode == 0, drained.stderr
    doc = json.loads(drained.stdout)
    assert doc["changed"] is True
    assert doc["flips"][0]["actor"] == "carol"
    assert doc["flips"][0]["reason"] == "kernel upgrade"
    assert fleet.route53_weights()["aws"] == 0
    assert "already drained" in run("failover", "--from", "aws", "--config", config).stdout

    run("failover", "--from", "gcp", "--config", config)
    refused = run("failover", "--from", "azure", "--config", config)
    assert refused.returncode == 1
    assert "last cloud in rotation" in refused.stderr
    assert "--force" in refused.stderr

    unknown = run("failover", "--from", "ibm", "--config", config)
    assert unknown.returncode == 2, "a usage error (the README's exit codes)"
    assert "unknown cloud 'ibm'" in unknown.stderr
    assert run("failover", "--from", "aws", "--to", "ibm", "--config", config).returncode == 2

    back = run("failback", "--to", "aws", "--config", config, "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["flips"][0]["new"] == "healthy"
    assert fleet.route53_weights()["aws"] > 0

    status = json.loads(run("status", "--config", config, "--json").stdout)
    assert status["clouds"]["gcp"]["state"] == "drained"
    assert [f["new"] for f in status["flips"][:2]] == ["healthy", "drained"]


def test_route_explains_its_decision(fleet: Fleet) -> None:
    config = str(fleet.config())
    run("health", "--once", "--config", config)
    text = run("route", "--config", config)
    assert text.returncode == 0, text.stderr
    for word in ("aws", "gcp", "azure", "cost / M req", "expected cost"):
        assert word in text.stdout
    doc = json.loads(run("route", "--apply", "--config", config, "--json").stdout)
    assert doc["applied"] is True
    assert sum(doc["weights"].values()) == 100
    assert set(doc["clouds"]) == {"aws", "gcp", "azure"}  # keyed by cloud, as every --json output


def test_config_check_prints_the_effective_configuration(fleet: Fleet, tmp_path: Path) -> None:
    ok = run("config", "check", "--config", str(fleet.config()), "--json")
    assert ok.returncode == 0, ok.stderr
    effective = json.loads(ok.stdout)
    assert effective["health"]["unhealthy_threshold"] == 2
    assert effective["routing"]["traffic"]["requests_per_s"] == 50.0, "defaults are filled in"

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model: {name: iris}\nclouds:\n  aws: {endpoint: ftp://x, min_weight: 60, max_weight: 40}\n"
    )
    result = run("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert "clouds.aws.endpoint" in result.stderr


def test_a_scheduled_run_overlapping_a_running_one_exits_75_without_piling_up(fleet: Fleet) -> None:
    """A slow round on a one-minute schedule: the next run finds the lease held and leaves at once."""
    slow = str(fleet.config(health__healthy_threshold=8, health__interval_s=1.0))  # 8 samples, ~1 s apart
    first = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "health", "--once", "--apply", "--config", slow],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        db = fleet.root / "state.db"
        deadline = time.monotonic() + 20
        while not _lease_held(db):
            assert time.monotonic() < deadline, "the first run took the lease"
            time.sleep(0.05)
        second = run("health", "--once", "--apply", "--config", slow)
        assert second.returncode == 75, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "holds the health-job lease" in lines[0]
        assert "try again later" in lines[0]
        watch = run("health", "--watch", "--config", slow)
        assert watch.returncode == 75, "a watch does not start beside a running job either"
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    quick = str(fleet.config())  # the same state, two samples: the lease is what is under test
    again = run("health", "--once", "--config", quick)
    assert again.returncode == 0, "released at the end of the run"


def _lease_held(db: Path) -> bool:
    if not db.exists():
        return False
    raw = sqlite3.connect(db)
    try:
        rows = raw.execute("SELECT expires_at FROM leases WHERE name = 'health-job'").fetchall()
    except sqlite3.OperationalError:
        return False
    finally:
        raw.close()
    return bool(rows) and rows[0][0] > time.time()
