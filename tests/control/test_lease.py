"""The health job's lease and its loop against what the machine and the operator do to them: the
wall clock jumping, the process being terminated, the state being deleted under it.

Endpoints here refuse connections (every probe fails at once): what is under test is the loop, the
lease and the state, not the probes.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.control.config import load_config
from orchestrator.control.reports import RoundReport
from orchestrator.control.store import HEALTH_JOB_LEASE, MAX_LEASE_S, open_state
from orchestrator.control.wiring import open_plane
from orchestrator.demo.emulators import MotoServer, closed_port
from tests.control.conftest import run_cli


def write_config(tmp_path: Path, **sections: object) -> Path:
    config = {
        "model": {"name": "iris"},
        "clouds": {c: {"endpoint": f"http://127.0.0.1:{closed_port()}"} for c in ("aws", "gcp", "azure")},
        "health": {"interval_s": 0.5, "timeout_s": 0.5, "jitter": 0.1, "unhealthy_threshold": 2},
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"file": {"path": str(tmp_path / "routing.json")}},
        **sections,
    }
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_watch_waits_one_interval_whatever_the_wall_clock_does(tmp_path: Path) -> None:
    """The wall clock steps back an hour at every reading (an NTP step, a VM restored from a
    snapshot): the wait between rounds is still at most one interval, never an hour."""
    config = load_config(write_config(tmp_path))
    wall = itertools.count(1_800_000_000.0, -3600.0)
    sleeps: list[float] = []
    rounds = iter(range(3))
    plane = open_plane(
        config,
        store=open_state(config.state.path),
        clock=lambda: next(wall),
        sleep=sleeps.append,
    )
    with plane:
        plane.watch(apply=True, stop=lambda: next(rounds, None) is None, on_round=lambda _: None)
    h = config.health
    assert len(sleeps) == 3
    assert max(sleeps) <= h.interval_s * (1 + h.jitter)


@pytest.mark.emulator
def test_the_watch_goes_on_when_its_state_document_is_deleted(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    """An operator deletes the object-store state while the watch runs: the watch takes its lease
    again in the fresh document and goes on deciding, rather than exit as if another job held it."""
    bucket = moto_server.create_bucket()
    config = load_config(
        write_config(tmp_path, state={"path": f"s3://{bucket}/prod", "settings": moto_server.settings})
    )
    rounds: list[RoundReport] = []

    def on_round(report: RoundReport) -> None:
        rounds.append(report)
        if len(rounds) == 1:
            moto_server.client.delete_object(Bucket=bucket, Key="prod/orchestrator/state.json")

    plane = open_plane(config, store=open_state(config.state.path, settings=config.state.settings))
    with plane:
        plane.watch(apply=False, stop=lambda: len(rounds) >= 3, on_round=on_round, on_error=pytest.fail)
        lease = plane.store.lease(HEALTH_JOB_LEASE)
    assert len(rounds) == 3
    assert lease is not None
    assert lease.holder == plane.holder
    assert not lease.live(time.time()), "released at the end"


def test_the_longest_lease_the_configuration_allows_is_within_the_bound(tmp_path: Path) -> None:
    h = {
        "interval_s": 300,
        "timeout_s": 10,
        "jitter": 0.5,
        "unhealthy_threshold": 10,
        "healthy_threshold": 10,
    }
    config = load_config(write_config(tmp_path, health=h))
    with open_plane(config, store=open_state(config.state.path)) as plane:
        longest = max(plane.lease_ttl(10), plane.lease_ttl(1, watch=True))
    assert longest <= MAX_LEASE_S


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_watch_terminated_by_a_signal_releases_its_lease(tmp_path: Path, sig: signal.Signals) -> None:
    """A container stop (SIGTERM) or a closed terminal (SIGHUP) ends the watch like Ctrl-C: the
    lease is released, so the next run starts at once instead of waiting for it to expire."""
    config = write_config(tmp_path)
    watch = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "health", "--watch", "--json", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        watch.stdout.readline()  # its first round is out: it holds the lease
        watch.send_signal(sig)
        _, stderr = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    after = run_cli("health", "--once", "--config", str(config))
    assert after.returncode == 2, after.stderr  # every endpoint refuses: no healthy cloud, not 75
