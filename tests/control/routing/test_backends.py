"""The routing backends against real things: Route 53 on a moto server (read back with boto3
directly, and through a recording proxy to count the change batches), and the file backend on
disk with a reader racing the writer."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.control.routing.backends import AppliedRouting, RoutingBackend, open_backend
from orchestrator.control.routing.backends.file import FileBackend
from orchestrator.control.routing.backends.route53 import DEFAULT_TTL, Route53Backend, translate_error
from orchestrator.control.routing.dnsname import route53_name
from orchestrator.core.errors import ConfigError, NotFound, PermissionDenied, StorageError, TransientError
from orchestrator.demo.emulators import HOST, MotoServer, start_moto

TARGETS = {
    "aws": "https://abc123.us-east-1.awsapprunner.example",
    "gcp": "https://model-xyz-uc.a.run.example:443/v1",  # port and path cannot go into DNS
    "azure": "http://model.azurecontainerapps.example:8080",
}
HOSTS = {
    "aws": "abc123.us-east-1.awsapprunner.example",
    "gcp": "model-xyz-uc.a.run.example",
    "azure": "model.azurecontainerapps.example",
}


def route53_client(endpoint: str) -> Any:
    """A boto3 client independent of the code under test."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "route53",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )


def create_zone(client: Any) -> tuple[str, str]:
    name = f"t-{uuid.uuid4().hex[:12]}.example.com."
    zone = client.create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)
    return zone["HostedZone"]["Id"].removeprefix("/hostedzone/"), name


def our_records(client: Any, zone_id: str, record_name: str) -> dict[str, dict[str, Any]]:
    """Every weighted record of ``record_name``, by SetIdentifier, straight from the server."""
    records = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r for r in records if r["Name"] == record_name and "SetIdentifier" in r}


@pytest.fixture
def r53(moto_server: MotoServer) -> Iterator[Any]:
    client = route53_client(moto_server.endpoint)
    yield client
    client.close()


@pytest.fixture
def zone(r53: Any) -> tuple[str, str]:
    return create_zone(r53)


@pytest.fixture
def settings(moto_server: MotoServer, zone: tuple[str, str]) -> dict[str, str]:
    zone_id, zone_name = zone
    return {**moto_server.settings, "hosted_zone_id": zone_id, "record_name": f"model.{zone_name}"}


@pytest.fixture
def backend(settings: dict[str, str]) -> Iterator[RoutingBackend]:
    opened = open_backend("route53", settings)
    yield opened
    opened.close()


# --- a recording proxy -----------------------------------------------------------------------


class RecordingProxy:
    """Forwards HTTP to an upstream server and records (method, path, body) of every request:
    what the code under test really sent, seen from outside it."""

    def __init__(self, upstream: str) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path, body))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream_conn = http.client.HTTPConnection(target.hostname or HOST, target.port, timeout=10)
                try:
                    upstream_conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream_conn.getresponse()
                    data = response.read()
                finally:
                    upstream_conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        # A short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    def changes(self) -> list[bytes]:
        """Bodies of ChangeResourceRecordSets requests (POST .../hostedzone/ID/rrset)."""
        return [body for method, path, body in self.requests if method == "POST" and "/rrset" in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(moto_server.endpoint)
    yield recording
    recording.close()


# --- route53 on moto -------------------------------------------------------------------------


@pytest.mark.emulator
def test_apply_writes_one_weighted_cname_per_cloud(
    backend: RoutingBackend, r53: Any, settings: dict[str, str]
) -> None:
    before = time.time()
    applied = backend.apply({"aws": 60, "gcp": 40, "azure": 0}, TARGETS, reason="cheapest within SLO")

    assert isinstance(applied, AppliedRouting)
    assert applied.backend == "route53"
    assert applied.weights == {"aws": 60, "gcp": 40, "azure": 0}
    assert applied.targets == HOSTS
    assert applied.change_id
    assert applied.at >= before
    assert settings["hosted_zone_id"] in applied.location

    records = our_records(r53, settings["hosted_zone_id"], settings["record_name"])
    assert set(records) == {"aws", "gcp", "azure"}
    for cloud, record in records.items():
        assert record["Type"] == "CNAME"
        assert record["TTL"] == DEFAULT_TTL
        assert record["Weight"] == applied.weights[cloud]
        assert record["ResourceRecords"] == [{"Value": HOSTS[cloud]}]
        assert "HealthCheckId" not in record
    assert backend.current() == {"aws": 60, "gcp": 40, "azure": 0}


@pytest.mark.emulator
def test_reapplying_upserts_in_place_and_keeps_weight_zero_records(
    backend: RoutingBackend, r53: Any, settings: dict[str, str]
) -> None:
    backend.apply({"aws": 50, "gcp": 50, "azure": 0}, TARGETS)
    backend.apply({"aws": 0, "gcp": 100, "azure": 0}, TARGETS, reason="aws unhealthy")
    backend.apply({"aws": 0, "gcp": 100, "azure": 0}, TARGETS, reason="aws unhealthy")  # idempotent

    records = r53.list_resource_record_sets(HostedZoneId=settings["hosted_zone_id"])["ResourceRecordSets"]
    ours = [r for r in records if r["Name"] == settings["record_name"]]
    assert sorted(r["SetIdentifier"] for r in ours) == ["aws", "azure", "gcp"]  # no duplicates
    assert {r["SetIdentifier"]: r["Weight"] for r in ours} == {"aws": 0, "gcp": 100, "azure": 0}
    assert backend.current() == {"aws": 0, "gcp": 100, "azure": 0}


@pytest.mark.emulator
def test_one_change_batch_per_apply_with_a_comment(proxy: RecordingProxy, settings: dict[str, str]) -> None:
    with open_backend("route53", {**settings, "endpoint_url": proxy.endpoint}) as backend:
        backend.apply({"aws": 70, "gcp": 30, "azure": 0}, TARGETS, reason="azure unhealthy")
        assert len(proxy.changes()) == 1
        body = proxy.changes()[0].decode()
        assert body.count("<Change>") == 3
        assert body.count("<Action>UPSERT</Action>") == 3
        assert "<Comment>orchestrator: aws=70 gcp=30 azure=0; azure unhealthy</Comment>" in body

        backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)
        assert len(proxy.changes()) == 2
        assert proxy.changes()[1].decode().count("<Change>") == 2, "azure's weight did not change"
        backend.current()
        backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)
        assert len(proxy.changes()) == 2  # reading changes nothing, and neither does the same decision


@pytest.mark.emulator
def test_health_check_ids_are_attached(r53: Any, settings: dict[str, str]) -> None:
    check = r53.create_health_check(
        CallerReference=uuid.uuid4().hex,
        HealthCheckConfig={
            "Type": "HTTPS",
            "FullyQualifiedDomainName": HOSTS["aws"],
            "ResourcePath": "/readyz",
        },
    )["HealthCheck"]["Id"]
    with open_backend("route53", {**settings, "health_check_ids": f"aws={check}", "ttl": "30"}) as backend:
        backend.apply({"aws": 1, "gcp": 1, "azure": 1}, TARGETS)
    records = our_records(r53, settings["hosted_zone_id"], settings["record_name"])
    assert records["aws"]["HealthCheckId"] == check
    assert "HealthCheckId" not in records["gcp"]
    assert {r["TTL"] for r in records.values()} == {30}


@pytest.mark.emulator
def test_current_reads_only_our_records(backend: RoutingBackend, r53: Any, settings: dict[str, str]) -> None:
    assert backend.current() == {}
    zone_id, name = settings["hosted_zone_id"], settings["record_name"]

    def upsert(record: dict[str, Any]) -> None:
        r53.change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
        )

    backend.apply({"aws": 10, "gcp": 20, "azure": 30}, TARGETS)
    # Somebody else's records: another name before and after ours, and a hand-made member of
    # our group that is not a cloud of ours.
    upsert({"Name": f"a.{name}", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]})
    upsert({"Name": f"zz-{name}", "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "x.example"}]})
    upsert({"Name": name, "Type": "CNAME", "SetIdentifier": "onprem", "Weight": 5, "TTL": DEFAULT_TTL,
            "ResourceRecords": [{"Value": "onprem.example"}]})  # fmt: skip
    assert backend.current() == {"aws": 10, "gcp": 20, "azure": 30}


@pytest.mark.emulator
def test_record_name_is_normalised(moto_server: MotoServer, zone: tuple[str, str], r53: Any) -> None:
    zone_id, zone_name = zone
    settings = {**moto_server.settings, "hosted_zone_id": f"/hostedzone/{zone_id}",
                "record_name": f"Model.{zone_name.rstrip('.').upper()}"}  # fmt: skip
    with open_backend("route53", settings) as backend:
        backend.apply({"aws": 1, "gcp": 0, "azure": 0}, TARGETS)
        assert backend.current() == {"aws": 1, "gcp": 0, "azure": 0}
    assert set(our_records(r53, zone_id, f"model.{zone_name}")) == {"aws", "gcp", "azure"}


@pytest.mark.emulator
def test_a_missing_zone_is_not_found_naming_it(moto_server: MotoServer, proxy: RecordingProxy) -> None:
    settings = {
        "endpoint_url": proxy.endpoint,
        "hosted_zone_id": "ZNOSUCHZONE42",
        "record_name": "m.example.com.",
    }
    with open_backend("route53", settings) as backend:
        with pytest.raises(NotFound, match="hosted zone ZNOSUCHZONE42 does not exist"):
            backend.apply({"aws": 1}, TARGETS)
        with pytest.raises(NotFound, match="ZNOSUCHZONE42"):
            backend.current()
    assert len(proxy.requests) == 2  # an answer, not an accident: never retried


@pytest.mark.emulator
def test_a_name_outside_the_zone_is_a_config_error(moto_server: MotoServer, zone: tuple[str, str]) -> None:
    settings = {**moto_server.settings, "hosted_zone_id": zone[0], "record_name": "model.elsewhere.org."}
    with (
        open_backend("route53", settings) as backend,
        pytest.raises(ConfigError, match=r"refused the change \(InvalidChangeBatch\).*model.elsewhere.org"),
    ):
        backend.apply({"aws": 1}, TARGETS)


def test_bad_weights_are_refused_before_any_request(tmp_path: Path) -> None:
    # endpoint_url points nowhere: a request would fail differently.
    backend = open_backend(
        "route53",
        {"endpoint_url": "http://127.0.0.1:9", "hosted_zone_id": "Z1", "record_name": "m.example.com."},
    )
    file_backend = open_backend("file", {"path": str(tmp_path / "routing.json")})
    for each in (backend, file_backend):
        with pytest.raises(ValueError, match="all-zero"):
            each.apply({"aws": 0, "gcp": 0}, TARGETS)
        with pytest.raises(ValueError, match=r"0\.\.255"):
            each.apply({"aws": 256}, TARGETS)
        with pytest.raises(ValueError, match=r"0\.\.255"):
            each.apply({"aws": True}, TARGETS)
        with pytest.raises(ValueError, match="unknown cloud"):
            each.apply({"oracle": 1}, TARGETS)
        with pytest.raises(ValueError, match="no weights"):
            each.apply({}, TARGETS)
        with pytest.raises(ConfigError, match="gcp has a weight but no endpoint"):
            each.apply({"aws": 1, "gcp": 1}, {"aws": TARGETS["aws"]})
    with pytest.raises(ConfigError, match="has no host name"):
        backend.apply({"aws": 1}, {"aws": "https://:443/"})
    backend.close()
    assert not (tmp_path / "routing.json").exists()


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("dns", {}, "unknown routing backend 'dns'"),
        ("route53", {"hosted_zone_id": "Z1"}, "record_name required"),
        (
            "route53",
            {"hosted_zone_id": "Z1", "record_name": "m.x.", "zone": "Z2"},
            r"unknown setting\(s\) zone",
        ),
        (
            "route53",
            {"hosted_zone_id": "Z1", "record_name": "m.x.", "ttl": "ten"},
            "ttl='ten' is not an integer",
        ),
        ("route53", {"hosted_zone_id": "Z1", "record_name": "m.x.", "ttl": "-1"}, "must be in 0.."),
        (
            "route53",
            {"hosted_zone_id": "Z1", "record_name": "m.x.", "health_check_ids": "aws"},
            "not CLOUD=ID",
        ),
        (
            "route53",
            {"hosted_zone_id": "Z1", "record_name": "m.x.", "health_check_ids": "ibm=1"},
            "not CLOUD=ID",
        ),
        ("route53", {"hosted_zone_id": "Z1", "record_name": "m.x.", "endpoint_url": "localhost"}, "http://"),
        ("route53", {"hosted_zone_id": "Z1", "record_name": "m.x.", "read_timeout": "0"}, "must be positive"),
        ("file", {}, "path required"),
        ("file", {"path": "x", "mode": "0644"}, "unknown setting"),
    ],
)
def test_settings_are_checked(kind: str, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_backend(kind, settings)


def test_health_check_ids_parse() -> None:
    backend = open_backend(
        "route53", {"hosted_zone_id": "Z1", "record_name": "m.x", "health_check_ids": " aws = a-1 , gcp=g-2,"}
    )
    assert isinstance(backend, Route53Backend)
    assert backend.health_check_ids == {"aws": "a-1", "gcp": "g-2"}
    assert backend.record_name == "m.x."
    backend.close()


@pytest.mark.emulator
def test_endpoint_down_is_a_transient_error_quickly(tmp_path: Path) -> None:
    server = start_moto(tmp_path)
    try:
        zone_id, zone_name = create_zone(client := route53_client(server.endpoint))
        client.close()
        settings = {**server.settings, "hosted_zone_id": zone_id, "record_name": f"model.{zone_name}"}
        with open_backend("route53", settings) as backend:
            backend.apply({"aws": 1}, TARGETS)
            server.kill()
            started = time.monotonic()
            with pytest.raises(TransientError, match=f"cannot connect to {server.endpoint}") as info:
                backend.apply({"aws": 2}, TARGETS)
            assert time.monotonic() - started < 3  # three attempts, short waits
            assert "gave up after 3 attempts" in str(info.value)
            with pytest.raises(TransientError):
                backend.current()
    finally:
        server.stop()


@pytest.mark.emulator
def test_frozen_endpoint_times_out_as_a_transient_error(tmp_path: Path) -> None:
    server = start_moto(tmp_path)
    assert server.process is not None
    try:
        zone_id, zone_name = create_zone(client := route53_client(server.endpoint))
        client.close()
        settings = {**server.settings, "hosted_zone_id": zone_id, "record_name": f"model.{zone_name}",
                    "connect_timeout": "0.5", "read_timeout": "0.5"}  # fmt: skip
        with open_backend("route53", settings) as backend:
            backend.current()  # the client is connected before the freeze
            os.kill(server.process.pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(TransientError):
                backend.apply({"aws": 1}, TARGETS)
            # Three attempts of at most 0.5 s each plus waits: never botocore's 60 s default.
            assert time.monotonic() - started < 4
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "ChangeResourceRecordSets",
    )
    return error


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "Throttling", TransientError),
        (400, "PriorRequestNotComplete", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (500, "InternalFailure", TransientError),
        (403, "AccessDenied", PermissionDenied),
        (403, "InvalidClientTokenId", PermissionDenied),
        (404, "NoSuchHostedZone", NotFound),
        (400, "InvalidChangeBatch", ConfigError),
        (404, "NoSuchHealthCheck", ConfigError),
        (400, "SomethingNew", StorageError),
    ],
)
def test_error_translation(status: int, code: str, expected: type[Exception]) -> None:
    error = translate_error(_client_error(status, code), zone_id="Z9", target="route53 zone Z9", endpoint="e")
    assert type(error) is expected
    assert code in str(error) or "Z9" in str(error)


def test_connection_errors_are_transient() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    down = translate_error(
        EndpointConnectionError(endpoint_url="http://x"), zone_id="Z", target="t", endpoint="e"
    )
    assert isinstance(down, TransientError)
    creds = translate_error(NoCredentialsError(), zone_id="Z", target="t", endpoint="e")
    assert isinstance(creds, PermissionDenied)
    assert translate_error(KeyError("x"), zone_id="Z", target="t", endpoint="e") is None


# --- file ------------------------------------------------------------------------------------


def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "routing.json"  # parents are created
    backend = open_backend("file", {"path": str(path)})
    assert backend.current() == {}  # no file yet
    first = backend.apply({"aws": 70, "gcp": 30, "azure": 0}, TARGETS, reason="cost")
    assert first.change_id == "1"
    assert first.targets == TARGETS  # full URLs: a proxy needs ports and paths
    assert backend.current() == {"aws": 70, "gcp": 30, "azure": 0}

    table = json.loads(path.read_text())
    assert table["version"] == 1
    assert table["reason"] == "cost"
    assert table["weights"] == {"aws": 70, "gcp": 30, "azure": 0}
    assert table["targets"] == TARGETS
    assert abs(datetime.fromisoformat(table["updated_at"]).timestamp() - first.at) < 1e-3

    # A partial decision keeps the other clouds' entries; the version moves on.
    second = backend.apply({"azure": 5}, {"azure": "http://azure.example:9"})
    assert second.change_id == "2"
    assert backend.current() == {"aws": 70, "gcp": 30, "azure": 5}
    assert json.loads(path.read_text())["targets"]["azure"] == "http://azure.example:9"
    assert sorted(p.name for p in path.parent.iterdir()) == [".routing.json.lock", "routing.json"]


def test_a_routing_file_that_is_a_symlink_is_written_where_it_points(tmp_path: Path) -> None:
    """A proxy reads its weights from its own directory; the routing file is a link to it. The
    table is written at the link's target (the link stays), or the proxy would never see one;
    a link to nowhere yet is created at its target, and a loop of links is a clear error."""
    proxy = tmp_path / "proxy" / "weights.json"
    proxy.parent.mkdir()
    proxy.write_text("{}")
    link = tmp_path / "routing.json"
    link.symlink_to(proxy)
    backend = FileBackend(link)
    backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)
    assert link.is_symlink()
    assert json.loads(proxy.read_text())["weights"] == {"aws": 100, "gcp": 0, "azure": 0}
    assert backend.compare({"aws": 100, "gcp": 0, "azure": 0}, TARGETS).in_sync

    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "proxy" / "later.json")
    FileBackend(dangling).apply({"aws": 1}, TARGETS)
    assert dangling.is_symlink()
    assert json.loads((tmp_path / "proxy" / "later.json").read_text())["weights"] == {"aws": 1}

    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(StorageError, match="routing table"):
        FileBackend(loop).apply({"aws": 1}, TARGETS)
    assert "unreadable" in FileBackend(loop).compare({"aws": 1}, TARGETS).differences[0]


def test_file_current_refuses_a_corrupt_table_and_apply_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text('{"weights": {"aws": "lots"}}')
    backend = FileBackend(path)
    with pytest.raises(StorageError, match="not a routing table") as info:
        backend.current()
    assert info.value.uri == str(path)
    path.write_text('{"version": 3, "weig')
    with pytest.raises(StorageError, match="invalid JSON"):
        backend.current()
    backend.apply({"aws": 1}, TARGETS)
    assert backend.read()["version"] == 1
    assert backend.current() == {"aws": 1}


def _read_in_a_loop(path: str, ready: Any, stop: Any, results: Any) -> None:
    """A proxy's view: parse the table over and over, in another process, until told to stop."""
    reads, problems, last = 0, [], 0
    ready.set()
    while not stop.is_set():
        try:
            table = json.loads(Path(path).read_bytes())
        except ValueError as exc:
            problems.append(f"unparseable: {exc}")
            continue
        if sum(table["weights"].values()) != 100:
            problems.append(f"inconsistent: {table['weights']}")
        if table["version"] < last:
            problems.append(f"went back from version {last} to {table['version']}")
        last = table["version"]
        reads += 1
    results.put((reads, problems[:5]))


def test_file_reader_never_sees_half_a_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    backend = FileBackend(path)
    backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)
    # Big enough (about 60 kB) that a non-atomic write would be caught mid-way.
    targets = {cloud: f"{url}/{'x' * 20_000}" for cloud, url in TARGETS.items()}
    context = multiprocessing.get_context("spawn")  # no fork of pytest's threads
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    reader = context.Process(target=_read_in_a_loop, args=(str(path), ready, stop, results))
    reader.start()
    try:
        assert ready.wait(30)
        for n in range(200):
            backend.apply({"aws": n % 101, "gcp": 100 - n % 101, "azure": 0}, targets)
    finally:
        stop.set()
        reads, problems = results.get(timeout=30)
        reader.join(30)
        results.close()
    assert problems == []
    assert reads > 10
    assert backend.read()["version"] == 201
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_concurrent_writers_get_distinct_versions(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    versions: list[str] = []
    lock = threading.Lock()

    def write(cloud: str) -> None:
        backend = FileBackend(path)  # each its own backend, as separate commands would be
        for _ in range(50):
            applied = backend.apply({cloud: 1}, TARGETS)
            with lock:
                versions.append(applied.change_id)

    threads = [threading.Thread(target=write, args=(cloud,)) for cloud in ("aws", "gcp")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(int, versions)) == list(range(1, 101))
    assert FileBackend(path).read()["version"] == 100


def test_routing_config_names_each_backend_once() -> None:
    from orchestrator.control.config import RoutingConfig

    zone = {"hosted_zone_id": "Z1", "record_name": "m.example.com."}
    assert RoutingConfig(backend=["route53", "file"], route53=zone).backends == ["route53", "file"]
    with pytest.raises(ValueError, match="names a backend twice"):
        RoutingConfig(backend=["file", "file"])
    with pytest.raises(ValueError, match=r"routing\.route53"):
        RoutingConfig(backend=["file", "route53"])


# --- the records belong to the stack; the orchestrator owns the weight ------------------------


def _stack_records(r53: Any, zone_id: str, name: str, check_ids: dict[str, str]) -> None:
    """What the dns stack creates (infra/dns.py): a weighted record per cloud, its health check,
    its TTL and target, with the weights it starts with."""
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name, "Type": "CNAME", "SetIdentifier": cloud, "Weight": 50, "TTL": 60,
                        "ResourceRecords": [{"Value": f"stack-{cloud}.example.net"}],
                        "HealthCheckId": check_ids[cloud],
                    },
                }
                for cloud in ("aws", "gcp", "azure")
            ]
        },
    )  # fmt: skip


def _health_check(r53: Any, cloud: str) -> str:
    config = {"Type": "HTTPS", "FullyQualifiedDomainName": HOSTS[cloud], "ResourcePath": "/readyz"}
    check_id: str = r53.create_health_check(CallerReference=uuid.uuid4().hex, HealthCheckConfig=config)[
        "HealthCheck"
    ]["Id"]
    return check_id


@pytest.mark.emulator
def test_apply_changes_only_the_weight_of_the_stacks_records(
    backend: RoutingBackend, r53: Any, settings: dict[str, str]
) -> None:
    zone_id, name = settings["hosted_zone_id"], settings["record_name"]
    checks = {cloud: _health_check(r53, cloud) for cloud in ("aws", "gcp", "azure")}
    _stack_records(r53, zone_id, name, checks)
    backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, reason="cheapest")
    records = our_records(r53, zone_id, name)
    kept = {
        c: (r["Weight"], r.get("HealthCheckId"), r["TTL"], r["ResourceRecords"]) for c, r in records.items()
    }
    assert kept == {
        cloud: (weight, checks[cloud], 60, [{"Value": f"stack-{cloud}.example.net"}])
        for cloud, weight in (("aws", 100), ("gcp", 0), ("azure", 0))
    }


@pytest.mark.emulator
def test_a_missing_record_is_created_from_the_configuration_with_the_groups_ttl(
    moto_server: MotoServer, r53: Any, settings: dict[str, str]
) -> None:
    zone_id, name = settings["hosted_zone_id"], settings["record_name"]
    checks = {cloud: _health_check(r53, cloud) for cloud in ("aws", "gcp", "azure")}
    _stack_records(r53, zone_id, name, checks)
    gcp = our_records(r53, zone_id, name)["gcp"]
    r53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": gcp}]}
    )
    with open_backend(
        "route53", {**settings, "health_check_ids": f"gcp={checks['gcp']}", "ttl": "5"}
    ) as backend:
        assert backend.compare({"aws": 50, "gcp": 50, "azure": 50}, TARGETS).differences == (
            "gcp: no record",
        )
        backend.apply({"aws": 50, "gcp": 50, "azure": 50}, TARGETS)
    created = our_records(r53, zone_id, name)["gcp"]
    assert (created["Weight"], created["TTL"], created["HealthCheckId"]) == (50, 60, checks["gcp"])
    assert created["ResourceRecords"] == [{"Value": HOSTS["gcp"]}]


@pytest.mark.parametrize(
    ("configured", "returned"),
    [
        ("model.example.com", "model.example.com."),
        ("Model.EXAMPLE.com.", "model.example.com."),
        ("*.example.com", "\\052.example.com."),
        ("\\052.example.com.", "\\052.example.com."),
        ("a\\.b.example.com", "a\\056b.example.com."),
        ("we!rd_name.example.com", "we\\041rd_name.example.com."),
        ("M\\111X.example.com", "mix.example.com."),  # an escaped capital I is stored lower case
        ("bücher.example", "xn--bcher-kva.example."),
    ],
)
def test_names_are_compared_as_route53_returns_them(configured: str, returned: str) -> None:
    assert route53_name(configured) == returned
    assert route53_name(returned) == returned, "idempotent: both sides of a comparison may go through it"


@pytest.mark.parametrize(
    "name", ["", ".", "a..example.com", "a" * 64 + ".example.com", "a b.example.com", "x\\", "\\400.example"]
)
def test_names_route53_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        route53_name(name)


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("configured", "stored"),
    [("*.{zone}", "\\052.{zone}"), ("Model.{zone}", "model.{zone}"), ("we!rd.{zone}", "we\\041rd.{zone}")],
)
def test_records_are_found_under_the_name_route53_returns(
    moto_server: MotoServer, zone: tuple[str, str], r53: Any, configured: str, stored: str
) -> None:
    """moto keeps names as written, so the stack's records are written here in the form Route 53
    itself returns them; the configuration spells the name the way a person would."""
    zone_id, zone_name = zone
    name = stored.format(zone=zone_name)
    checks = {cloud: _health_check(r53, cloud) for cloud in ("aws", "gcp", "azure")}
    _stack_records(r53, zone_id, name, checks)
    settings = {
        **moto_server.settings,
        "hosted_zone_id": zone_id,
        "record_name": configured.format(zone=zone_name),
    }
    with open_backend("route53", settings) as backend:
        assert backend.current() == {"aws": 50, "gcp": 50, "azure": 50}
        backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)
    records = our_records(r53, zone_id, name)
    assert {c: r["Weight"] for c, r in records.items()} == {"aws": 100, "gcp": 0, "azure": 0}
    assert {c: r["HealthCheckId"] for c, r in records.items()} == checks, "nothing but the weight changed"
    assert len(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]) == 2 + 3, (
        "no second group was created under another spelling"
    )


# --- what a backend holds, against the decision -----------------------------------------------


def test_file_compare_reports_every_kind_of_drift(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    backend = FileBackend(path)
    decided = {"aws": 70, "gcp": 30, "azure": 0}
    assert backend.compare(decided, TARGETS).differences == ("no routing table",)
    backend.apply(decided, TARGETS)
    assert backend.compare(decided, TARGETS).in_sync
    assert backend.compare({**decided, "aws": 0, "gcp": 100}, TARGETS).differences == (
        "aws: weight 70, decided 0",
        "gcp: weight 30, decided 100",
    )
    assert backend.compare(decided, {**TARGETS, "gcp": "https://moved.example"}).differences == (
        "gcp: another target",
    )
    path.write_text('{"version": 3, "weig')
    comparison = backend.compare(decided, TARGETS)
    assert comparison.in_effect == {}
    assert comparison.differences[0].startswith("unreadable: not a routing table (invalid JSON")
    path.write_text('{"weights": {"aws": 70}}')
    assert backend.compare(decided, TARGETS).differences == (
        "aws: another target",
        "gcp: no entry",
        "gcp: another target",
        "azure: no entry",
        "azure: another target",
    )


@pytest.mark.emulator
def test_route53_compare_reads_the_records(
    backend: RoutingBackend, r53: Any, settings: dict[str, str]
) -> None:
    decided = {"aws": 70, "gcp": 30, "azure": 0}
    assert backend.compare(decided, TARGETS).differences == (
        "aws: no record",
        "gcp: no record",
        "azure: no record",
    )
    backend.apply(decided, TARGETS)
    assert backend.compare(decided, TARGETS).in_sync
    aws = our_records(r53, settings["hosted_zone_id"], settings["record_name"])["aws"]
    r53.change_resource_record_sets(
        HostedZoneId=settings["hosted_zone_id"],
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**aws, "Weight": 5}}]},
    )
    comparison = backend.compare(decided, TARGETS)
    assert comparison.in_effect == {"aws": 5, "gcp": 30, "azure": 0}
    assert comparison.differences == ("aws: weight 5, decided 70",)
