"""A fleet of three real endpoints on loopback ports (aws, gcp, azure) and Route 53 on moto.

Each "cloud" has a bucket (a local directory: the health checks read LATEST and the canary from it)
and an `orchestrator serve` process. The gcp endpoint is reached through a latency proxy so a test
can make it slow; ``Fleet.fronts`` puts something else (a misbehaving endpoint) in front of a
cloud. Configurations use short intervals so faults are detected within a second or two.
``fleet`` is one fleet per test; :func:`running_fleet` builds one for a module's fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from orchestrator.control.config import Config, load_config
from orchestrator.control.plane import ControlPlane
from orchestrator.control.store import StateStore
from orchestrator.control.wiring import open_plane
from orchestrator.core.storage import open_storage
from orchestrator.demo.emulators import MotoServer
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.faults import DelayProxy

CLOUDS = ("aws", "gcp", "azure")
RECORD = "model.example.com."


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainResult]:
    out = tmp_path_factory.mktemp("fleet-models")
    return {
        "v1": train(TrainOptions(dataset="iris", out=out / "v1")),
        "v2": train(TrainOptions(dataset="iris", seed=1, out=out / "v2")),
    }


@dataclass
class Fleet:
    root: Path
    models: dict[str, TrainResult]
    moto: MotoServer
    zone_id: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    proxy: DelayProxy | None = None
    planes: list[ControlPlane] = field(default_factory=list)
    fronts: dict[str, str] = field(default_factory=dict)  # cloud -> URL of what stands in front of it

    def url(self, cloud: str) -> str:
        if cloud in self.fronts:
            return self.fronts[cloud]
        if cloud == "gcp" and self.proxy is not None:
            return self.proxy.url
        return self.endpoints[cloud].url

    def new_zone(self) -> str:
        """A fresh hosted zone (example.com.) on moto, for a test that must not see another's records."""
        route53 = boto3.client("route53", endpoint_url=self.moto.endpoint, region_name="us-east-1")
        zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)
        return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]

    def start(self, cloud: str, version: str = "v1") -> Endpoint:
        old = self.endpoints.get(cloud)
        if old is not None:
            old.stop()  # reap it (it may have been killed by the test), then reuse its port
        endpoint = start_endpoint(
            str(self.models[version].path),
            port=old.port if old else None,
            name=cloud,
            log_path=self.root / f"{cloud}.log",
        )
        self.endpoints[cloud] = endpoint
        return endpoint

    def publish(self, version: str) -> None:
        """Sync ``version`` to every cloud's bucket (LATEST moves)."""
        for cloud in CLOUDS:
            bucket = open_storage(f"file://{self.root / 'buckets' / cloud}")
            assert sync_artifact(self.models[version].path, [Target(cloud, bucket)])[0].ok

    def config(self, **overrides: object) -> Path:
        data: dict = {
            "model": {"name": "iris"},
            "clouds": {
                cloud: {
                    "endpoint": self.url(cloud),
                    "storage": f"file://{self.root / 'buckets' / cloud}",
                    "capacity_rps": 100,
                }
                for cloud in CLOUDS
            },
            "health": {
                "interval_s": 0.25,
                "timeout_s": 0.5,
                "unhealthy_threshold": 2,
                "healthy_threshold": 2,
                "jitter": 0.0,
                "startup_grace_s": 0,
                "hold_down_s": 1.0,
                "max_hold_down_s": 8.0,
            },
            "routing": {
                "backend": "route53",
                "route53": {
                    "hosted_zone_id": self.zone_id,
                    "record_name": RECORD,
                    "endpoint_url": self.moto.endpoint,
                },
                "latency_slo_ms": 250,
            },
            "state": {"path": str(self.root / "state.db")},
        }
        for key, value in overrides.items():
            section, _, name = key.partition("__")
            if name:
                data[section][name] = value
            else:
                data[section] = value
        path = self.root / f"orchestrator-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def plane(self, config: Path | None = None) -> ControlPlane:
        cfg: Config = load_config(config or self.config())
        plane = open_plane(cfg, store=StateStore.open(Path(cfg.state.path)))
        self.planes.append(plane)
        return plane

    def route53_weights(self, zone_id: str | None = None) -> dict[str, int]:
        client = boto3.client("route53", endpoint_url=self.moto.endpoint, region_name="us-east-1")
        records = client.list_resource_record_sets(HostedZoneId=zone_id or self.zone_id)["ResourceRecordSets"]
        return {r["SetIdentifier"]: r["Weight"] for r in records if r.get("SetIdentifier")}

    def stop(self) -> None:
        for plane in self.planes:
            plane.close()
        for endpoint in self.endpoints.values():
            endpoint.stop()
        if self.proxy is not None:
            self.proxy.stop()


@contextlib.contextmanager
def running_fleet(root: Path, models: dict[str, TrainResult], moto_server: MotoServer) -> Iterator[Fleet]:
    """Three endpoints serving v1 from their buckets under ``root``, ready; stopped at the end."""
    fleet = Fleet(root=root, models=models, moto=moto_server, zone_id="")
    fleet.zone_id = fleet.new_zone()
    for cloud in CLOUDS:
        (root / "buckets" / cloud).mkdir(parents=True)
    fleet.publish("v1")
    try:
        for cloud in CLOUDS:
            fleet.start(cloud)
        fleet.proxy = DelayProxy(fleet.endpoints["gcp"].port).start()
        for endpoint in fleet.endpoints.values():
            endpoint.wait_ready()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def fleet(tmp_path: Path, models: dict[str, TrainResult], moto_server: MotoServer) -> Iterator[Fleet]:
    with running_fleet(tmp_path, models, moto_server) as running:
        yield running


class WatchProcess:
    """``orchestrator health --watch --apply --json`` as a real process; its round reports are
    decoded from stdout as they arrive (:meth:`reports`). :meth:`stop` sends SIGINT (Ctrl-C)."""

    def __init__(self, config: Path, *, user: str = "watch", env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "health",
                "--watch",
                "--apply",
                "--json",
                "--config",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ORCHESTRATOR_USER": user, **(env or {})},
            start_new_session=True,
        )
        self._reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.popen.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.popen.stdout:
            buffer += line
            while buffer.strip():
                try:
                    document, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break  # not a whole document yet
                buffer = buffer.lstrip()[end:]
                with self._lock:
                    self._reports.append(document)

    def reports(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._reports)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            code = self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(20)
        self._reader.join(10)
        assert self.popen.stderr is not None
        self.stderr = self.popen.stderr.read()
        self.popen.stderr.close()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return code


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic()


def run_clis(
    commands: list[list[str]], *, user: str = "carol", timeout: float = 120
) -> list[subprocess.CompletedProcess[str]]:
    """Several orchestrator commands, each a new process as in :func:`run_cli`, run at the same
    time (for corpora of independent cases: the processes' start-up is most of their cost)."""
    env = {**os.environ, "ORCHESTRATOR_USER": user}
    started = [
        (
            command,
            subprocess.Popen(
                [sys.executable, "-m", "orchestrator", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for command in commands
    ]
    results = []
    try:
        for command, process in started:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def run_cli(*args: str, user: str = "carol", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """An orchestrator command as an operator runs it: a new process."""
    env = {**os.environ, "ORCHESTRATOR_USER": user}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )
