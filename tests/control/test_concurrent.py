"""Two operators fail over at the same time, on every kind of state store: afterwards the state and
every routing backend agree, and no backend ever received a decision that was not committed.

aws is drained; then `failover --from gcp` and `failover --from azure` start together (separate
control planes and stores, as separate processes would have). Exactly one may win: the other finds
itself the last cloud in rotation and is refused. With SQLite the second waits for the first's
short transaction; with an object store (S3 on moto, Azure on Azurite) the loser's conditional
write fails and its step is re-run on the winner's state. Backends are written only after a
commit, so the loser never applies anything: every Route 53 change batch (seen through a recording
proxy) carries a decision from the state's committed history.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from pathlib import Path

import boto3
import orjson
import pytest
import yaml

from orchestrator.control.config import Config, load_config
from orchestrator.control.health.machine import Machine
from orchestrator.control.health.record import CloudRecord
from orchestrator.control.plane import ControlPlane
from orchestrator.control.reports import FailoverRefused
from orchestrator.control.routing.backends.file import FileBackend
from orchestrator.control.store import ObjectStoreStateStore, SQLiteStateStore, StateStore, open_state
from orchestrator.control.types import HealthState
from orchestrator.control.wiring import open_plane
from orchestrator.demo.emulators import Azurite, MotoServer
from tests.control.routing.test_backends import RecordingProxy

REPETITIONS = 6
RECORD = "model.example.com."


def desired_history(store: StateStore) -> list[dict[str, int]]:
    """Every decision ever committed, read from the store's own storage."""
    if isinstance(store, SQLiteStateStore):
        raw = sqlite3.connect(store.path)
        try:
            return [
                orjson.loads(w) for (w,) in raw.execute("SELECT weights FROM desired_weights ORDER BY id")
            ]
        finally:
            raw.close()
    assert isinstance(store, ObjectStoreStateStore)
    document = orjson.loads(store.storage.get(store.key))
    return [entry["weights"] for entry in document["desired_weights"]]


def batch_weights(body: bytes) -> dict[str, int]:
    """The decision a change batch carries, from its Comment ("orchestrator: aws=0 gcp=100 ...")."""
    comment = re.search(rb"<Comment>orchestrator: ([^;<]*)", body)
    assert comment is not None, body[:300]
    return {k: int(v) for k, v in (pair.split("=") for pair in comment.group(1).decode().split())}


def write_config(
    path: Path, zone: str, route53: str, routing: Path, location: str, settings: dict[str, str]
) -> Config:
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                # Never probed: failover decides from the recorded state.
                "clouds": {c: {"endpoint": f"http://{c}.invalid"} for c in ("aws", "gcp", "azure")},
                "routing": {
                    "backend": ["route53", "file"],
                    "route53": {
                        "hosted_zone_id": zone.rsplit("/", 1)[-1],
                        "record_name": RECORD,
                        "endpoint_url": route53,
                    },
                    "file": {"path": str(routing)},
                },
                "state": {"path": location, "settings": settings},
            }
        )
    )
    return load_config(path)


def plane(config: Config) -> ControlPlane:
    """A control plane with its own store, as another process would have."""
    return open_plane(config, store=open_state(config.state.path, settings=config.state.settings or None))


def race(config: Config) -> tuple[list[str], dict[str, str]]:
    """`failover --from gcp` and `failover --from azure` at once: (who won, who was refused and why)."""
    start = threading.Barrier(2, timeout=30)
    won: list[str] = []
    refused: dict[str, str] = {}
    errors: list[BaseException] = []

    def operator(cloud: str) -> None:
        with plane(config) as mine:
            start.wait()
            try:
                mine.failover(cloud, to=None, reason="race", actor=cloud, dry_run=False, force=False)
                won.append(cloud)
            except FailoverRefused as exc:
                refused[cloud] = str(exc)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=operator, args=(c,)) for c in ("gcp", "azure")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return won, refused


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "s3", "azure"])
def test_two_concurrent_failovers_leave_the_state_and_every_backend_agreeing(
    kind: str,
    tmp_path: Path,
    moto_server: MotoServer,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = RecordingProxy(moto_server.endpoint)
    route53 = boto3.client("route53", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)["HostedZone"][
        "Id"
    ]
    state_settings: dict[str, str] = {}
    if kind == "s3":
        bucket = moto_server.create_bucket()
        state_settings = dict(moto_server.settings)
    elif kind == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        bucket = azurite.create_bucket()
        for name, value in azurite.env.items():  # the connection string: from the environment, never the file
            monkeypatch.setenv(name, value)
    outcomes: list[str] = []
    try:
        for rep in range(REPETITIONS):
            location = {
                "sqlite": str(tmp_path / f"rep{rep}" / "state.db"),
                "s3": f"s3://{bucket}/rep{rep}/state.json" if kind == "s3" else "",
                "azure": f"az://{bucket}/rep{rep}/state.json" if kind == "azure" else "",
            }[kind]
            routing = tmp_path / f"rep{rep}" / "routing.json"
            batches_before = len(proxy.changes())
            config = write_config(
                tmp_path / f"rep{rep}.yaml", zone, proxy.endpoint, routing, location, state_settings
            )
            with plane(config) as setup:
                healthy = CloudRecord(
                    Machine(state=HealthState.HEALTHY, first_seen=0.0, probed=True)
                ).to_dict()
                setup.store.save_machines(dict.fromkeys(("aws", "gcp", "azure"), healthy))
                setup.failover("aws", to=None, reason="first", actor="ops", dry_run=False, force=False)

            won, refused = race(config)
            assert len(won) == 1, (won, refused)
            assert len(refused) == 1
            assert all("last cloud in rotation" in reason for reason in refused.values())
            winner, survivor = won[0], next(iter(refused))
            outcomes.append(winner)

            with open_state(config.state.path, settings=config.state.settings or None) as state:
                assert state.drained() == {"aws", winner}
                desired = state.desired()
                assert desired is not None
                assert desired.weights == {"aws": 0, winner: 0, survivor: 100}
                history = desired_history(state)
                statuses = state.backends()
            in_route53 = {r["SetIdentifier"]: r["Weight"] for r in route53.list_resource_record_sets(
                HostedZoneId=zone)["ResourceRecordSets"] if r.get("SetIdentifier")}  # fmt: skip
            assert in_route53 == desired.weights
            assert FileBackend(routing).current() == desired.weights
            assert all(status.ok for status in statuses.values())
            for body in proxy.changes()[batches_before:]:
                assert batch_weights(body) in history, "a backend only ever gets committed decisions"
    finally:
        proxy.close()
    print(f"{kind}: winners {outcomes}")


def test_desired_history_reads_what_was_committed(tmp_path: Path) -> None:
    with open_state(tmp_path / "s.db") as state:
        state.save_desired({"aws": 100}, "a")
        state.save_desired({"aws": 0, "gcp": 100}, "b")
        assert desired_history(state) == [{"aws": 100}, {"aws": 0, "gcp": 100}]
