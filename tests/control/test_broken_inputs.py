"""Every command over a corpus of broken inputs: one line on stderr, the documented exit code, no
traceback, and never a secret in the output.

Three corpora, each run through real `orchestrator` processes:

- configurations (exit 2, naming the file and the key): non-finite numbers, values past the bounds
  that keep a round short, the model/version grammar, URLs (no host, a bad port, credentials),
  bucket URIs and their settings, a secret setting, Route 53 names and zone ids, the state location,
  prices, weights, unknown keys and clouds; and the file itself: missing, a directory, not UTF-8,
  binary, over the size cap, invalid YAML, duplicate keys, an alias bomb, not a mapping. Each case
  is checked by `config check` and by one other command in turn, so every command meets several.
- state documents (exit 1, naming the state's location and the key): SQLite rows and object-store
  (S3 on moto) documents holding what no orchestrator writes, and files that are no state at all,
  through every command that reads the state.
- stack outputs for `config from-stacks` (exit 2, naming the file and the output): masked secrets,
  secrets shown with --show-secrets, wrong types, files that are not outputs.

Plus the usage errors the README lists (exit 2): unknown clouds, missing files, bad options.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from orchestrator.control.store import DOCUMENT_SCHEMA_VERSION, open_state
from orchestrator.core.storage import open_storage
from orchestrator.demo.emulators import MotoServer, closed_port
from tests.control.conftest import run_cli, run_clis

SECRET = "s3cr3t-VALUE-4242"  # planted wherever a secret could be; must never be printed

COMMANDS: list[list[str]] = [
    ["health", "--once"],
    ["health", "--once", "--apply"],
    ["health", "--watch", "--apply"],
    ["route"],
    ["route", "--apply"],
    ["status"],
    ["failover", "--from", "aws"],
    ["failback", "--to", "aws"],
    ["sync", "--model", "artifacts/none"],
    ["verify"],
    ["config", "check"],
]
STATE_COMMANDS = COMMANDS[:8]


def base(tmp_path: Path) -> dict[str, Any]:
    """A valid configuration: endpoints that refuse connections (nothing gets that far), local buckets."""
    bucket = tmp_path / "bucket"
    bucket.mkdir(exist_ok=True)
    return {
        "model": {"name": "iris"},
        "clouds": {
            c: {"endpoint": f"http://127.0.0.1:{closed_port()}", "storage": f"file://{bucket}"}
            for c in ("aws", "gcp", "azure")
        },
        "health": {"timeout_s": 0.5, "interval_s": 0.5},
        "state": {"path": str(tmp_path / "state.db")},
        "routing": {"file": {"path": str(tmp_path / "routing.json")}},
    }


def check(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-2000:]
    assert SECRET not in output
    assert result.returncode == code, output[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- configurations --------------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for one in edits:
            one(config)

    return edit


# (id, an edit of the valid configuration or the file's raw bytes, what the message must name)
CONFIGS: list[tuple[str, Callable[[dict[str, Any]], None] | bytes | None, str]] = [
    ("inf-traffic", _set("routing.traffic.requests_per_s", float("inf")), "routing.traffic.requests_per_s"),
    ("nan-timeout", _set("health.timeout_s", float("nan")), "health.timeout_s"),
    ("huge-number", _set("health.interval_s", 1e308), "health.interval_s"),
    ("threshold-1e6", _set("health.healthy_threshold", 1_000_000), "health.healthy_threshold"),
    ("negative-timeout", _set("health.timeout_s", -1), "health.timeout_s"),
    ("window-1e6", _set("health.latency_window", 10**6), "health.latency_window"),
    ("jitter-2", _set("health.jitter", 2), "health.jitter"),
    ("version-traversal", _set("model.version", "../../x"), "model.version"),
    ("name-upper", _set("model.name", "Iris/../x"), "model.name"),
    ("endpoint-no-host", _set("clouds.aws.endpoint", "http://"), "clouds.aws.endpoint"),
    ("endpoint-port", _set("clouds.aws.endpoint", "http://x:99999"), "clouds.aws.endpoint"),
    ("endpoint-ftp", _set("clouds.aws.endpoint", "ftp://x"), "clouds.aws.endpoint"),
    ("endpoint-credentials", _set("clouds.aws.endpoint", f"https://admin:{SECRET}@x.example"), "credentials"),
    ("endpoint-query", _set("clouds.aws.endpoint", "https://x.example/?token=1"), "clouds.aws.endpoint"),
    ("bucket-bad", _set("clouds.aws.storage", "s3://B@d"), "clouds.aws.storage"),
    ("storage-setting-unknown", _set("clouds.aws.storage_settings", {"regoin": "x"}), "regoin"),
    ("storage-setting-secret", _set("clouds.azure.storage_settings", {"connection_string": SECRET}), "azure"),
    ("storage-setting-inf", _set("clouds.aws.storage_settings", {"read_timeout": "inf"}), "read_timeout"),
    ("capacity-negative", _set("clouds.gcp.capacity_rps", -1), "clouds.gcp.capacity_rps"),
    (
        "weights-crossed",
        _both(_set("clouds.gcp.min_weight", 90), _set("clouds.gcp.max_weight", 10)),
        "min_weight",
    ),
    ("price-field", _set("clouds.aws.price", {"vcpu_hour_usd": 1}), "clouds.aws.price.vcpu_hour_usd"),
    ("cloud-unknown", _set("clouds.ibm", {"endpoint": "http://x"}), "clouds.ibm"),
    ("key-unknown", _set("helth", {}), "helth"),
    ("route53-missing", _set("routing.backend", "route53"), "routing"),
    ("route53-name", _set("routing.route53", {"hosted_zone_id": "Z1", "record_name": "a..b"}), "record_name"),
    (
        "route53-zone",
        _set("routing.route53", {"hosted_zone_id": "../z", "record_name": "m.x."}),
        "hosted_zone_id",
    ),
    (
        "route53-ttl",
        _set("routing.route53", {"hosted_zone_id": "Z1", "record_name": "m.x.", "ttl": 10**9}),
        "ttl",
    ),
    ("state-scheme", _set("state.path", "ftp://x/state.json"), "state.path"),
    (
        "setting-url-credentials",
        _both(
            _set("clouds.aws.storage", "s3://models"),
            _set("clouds.aws.storage_settings", {"endpoint_url": f"https://u:{SECRET}@s3.example"}),
        ),
        "clouds.aws.storage_settings",
    ),
    (
        "state-setting-url-credentials",
        _both(
            _set("state.path", "s3://ops/prod"),
            _set("state.settings", {"endpoint_url": f"https://u:{SECRET}@s3.example"}),
        ),
        "state.settings",
    ),
    ("setting-newline", _set("clouds.aws.storage_settings", {"page_size": "10\n"}), "storage_settings"),
    ("region-control", _set("clouds.aws.region", "us-east-1\x1b[2J"), "clouds.aws.region"),
    ("interval-tiny", _set("health.interval_s", 1e-9), "health.interval_s"),
    ("timeout-tiny", _set("health.timeout_s", 1e-9), "health.timeout_s"),
    ("routing-file-directory", _set("routing.file.path", "/"), "routing.file.path"),
    ("routing-file-empty", _set("routing.file.path", ""), "routing.file.path"),
    ("state-secret", _set("state.settings", {"account_key": SECRET}), "state.settings"),
    ("not-utf8", b"model: {name: iris}\nclouds: {aws: {endpoint: 'http://x\xff\xfe'}}\n", "not UTF-8"),
    ("binary", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "binary"),
    ("too-large", b"# " + b"x" * (1024 * 1024 + 10), "larger than"),
    ("invalid-yaml", b"model: {name: iris\nclouds: [", "not valid YAML"),
    (
        "invalid-yaml-secret",
        b"clouds: {azure: {storage_settings: {connection_string: " + SECRET.encode() + b" }",
        "line 1",
    ),
    (
        "duplicate-key",
        b"model: {name: iris}\nmodel: {name: wine}\nclouds: {aws: {}}\n",
        "duplicate key 'model'",
    ),
    (
        "alias-bomb",
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "aliases",
    ),
    ("a-list", b"- model\n- clouds\n", "mapping"),
    ("empty", b"", "mapping"),
    ("missing", None, "not found"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("index", "case"), list(enumerate(CONFIGS)), ids=[c[0] for c in CONFIGS])
def test_a_broken_configuration_is_refused_by_every_command_in_one_line(
    tmp_path: Path, index: int, case: tuple[str, Callable[[dict[str, Any]], None] | bytes | None, str]
) -> None:
    _, broken, names = case
    path = tmp_path / "orchestrator.yaml"
    if callable(broken):
        config = base(tmp_path)
        broken(config)
        path.write_text(yaml.safe_dump(config))
    elif isinstance(broken, bytes):
        path.write_bytes(broken)
    commands = [["config", "check"], COMMANDS[index % len(COMMANDS)]]
    for result in run_clis([[*command, "--config", str(path)] for command in commands], timeout=60):
        check(result, 2, str(path), names)


def test_a_configuration_that_is_a_directory_is_named(tmp_path: Path) -> None:
    check(run_cli("config", "check", "--config", str(tmp_path)), 2, str(tmp_path), "cannot read")


def test_orchestrator_state_is_checked_like_state_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(base(tmp_path)))
    monkeypatch.setenv("ORCHESTRATOR_STATE", "ftp://x/state.json")
    check(run_cli("status", "--config", str(path)), 2, "$ORCHESTRATOR_STATE")


# --- state documents -------------------------------------------------------------------------


def _sqlite(sql: str) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        open_state(db).close()
        with sqlite3.connect(db) as raw:
            raw.execute(sql)
        raw.close()

    return corrupt


def _machine(**fields: object) -> str:
    machine = {"state": "healthy", "fails": 0, "oks": 3, "goods": 3, "probed": True, **fields}
    return json.dumps({"machine": machine, "latencies_ms": [], "last_probe": None})


MACHINES = "INSERT INTO health_machines VALUES"
SQLITE_STATES: list[tuple[str, Callable[[Path], None], str]] = [
    ("bogus-state", _sqlite(f"{MACHINES} ('aws', '{_machine(state='bogus')}', 1)"), "machines.aws"),
    ("negative-counter", _sqlite(f"{MACHINES} ('gcp', '{_machine(fails=-3)}', 1)"), "machines.gcp"),
    ("nan-time", _sqlite(f"{MACHINES} ('aws', '{_machine(hold_until='soon')}', 1)"), "hold_until"),
    ("latency-text", _sqlite(f"""{MACHINES} ('aws', '{{"latencies_ms": ["fast"]}}', 1)"""), "latencies_ms"),
    ("not-json", _sqlite(f"{MACHINES} ('azure', '{{oops', 1)"), "machines.azure"),
    (
        "weights-text",
        _sqlite("""INSERT INTO desired_weights (at, weights, reason) VALUES (1, '{"aws": "all"}', '')"""),
        "desired_weights",
    ),
    ("override-cloud", _sqlite("INSERT INTO overrides VALUES ('ibm', 1, 'r', 'a', 1)"), "overrides.ibm"),
    ("lease-epoch", _sqlite("INSERT INTO leases VALUES ('health-job', 'h', 1, 2, 1)"), "leases"),
    ("not-a-database", lambda db: db.write_bytes(b"SQLite format 2\x00" + b"\x00" * 200), "state"),
    (
        "newer-schema",
        _sqlite("INSERT INTO schema_version VALUES (99, 0, 'f')"),
        "newer than this orchestrator",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("index", "case"), list(enumerate(SQLITE_STATES)), ids=[c[0] for c in SQLITE_STATES])
def test_a_corrupt_sqlite_state_is_refused_naming_the_file_and_key(
    tmp_path: Path, index: int, case: tuple[str, Callable[[Path], None], str]
) -> None:
    _, corrupt, key = case
    config = base(tmp_path)
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    db = Path(config["state"]["path"])
    corrupt(db)
    if key == "leases":  # a lease row that parses: break it where only the orchestrator reads
        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE leases SET expires_at = 'never'")
        raw.close()
    commands = [
        STATE_COMMANDS[index % len(STATE_COMMANDS)],
        STATE_COMMANDS[(index + 3) % len(STATE_COMMANDS)],
    ]
    if key == "leases":  # only the health job reads its lease (each command validates what it reads)
        commands = [["health", "--once"], ["health", "--watch"]]
    for result in run_clis([[*command, "--config", str(path)] for command in commands], timeout=60):
        check(result, 1, str(db), key)


DOCUMENT = {"kind": "orchestrator-state", "schema": DOCUMENT_SCHEMA_VERSION, "version": 1, "flips": [],
            "overrides": {}, "desired_weights": [], "machines": {}, "backends": {}, "leases": {}}  # fmt: skip
MACHINE = {"machine": {"state": "healthy"}, "latencies_ms": [], "last_probe": None}
FLIP = {"cloud": "aws", "at": 1, "old": "bogus", "new": "healthy", "reason": "", "actor": "", "details": {}}
LEASE = {"holder": "h", "acquired_at": 1, "expires_at": 2, "epoch": 0}


def _document(**sections: object) -> bytes:
    return orjson.dumps({**DOCUMENT, **sections})


OBJECT_STATES: list[tuple[str, bytes, str]] = [
    (
        "bogus-state",
        _document(machines={"aws": {"state": {**MACHINE, "machine": {"state": "bogus"}}, "updated_at": 1}}),
        "machines.aws",
    ),
    ("flip-state", _document(flips=[FLIP]), "flips[0]"),
    (
        "weights-float",
        _document(desired_weights=[{"weights": {"aws": 0.5}, "at": 1, "reason": ""}]),
        "weights",
    ),
    ("lease-epoch", _document(leases={"health-job": LEASE}), "leases.health-job"),
    ("not-json", b'{"kind": "orchestrator-state", "schema": 2, "vers', "not JSON"),
    ("foreign", orjson.dumps({"kind": "terraform-state"}), "not an orchestrator state document"),
    ("future", _document(schema=99), "newer than this orchestrator"),
]


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.parametrize(("index", "case"), list(enumerate(OBJECT_STATES)), ids=[c[0] for c in OBJECT_STATES])
def test_a_corrupt_object_store_state_is_refused_naming_the_document_and_key(
    tmp_path: Path, moto_server: MotoServer, index: int, case: tuple[str, bytes, str]
) -> None:
    _, content, key = case
    bucket = moto_server.create_bucket()
    config = base(tmp_path)
    config["state"] = {"path": f"s3://{bucket}/prod/state.json", "settings": moto_server.settings}
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    storage = open_storage(f"s3://{bucket}/prod", settings=moto_server.settings)
    import hashlib

    storage.put("state.json", content, sha256=hashlib.sha256(content).hexdigest())
    storage.close()
    commands = [
        STATE_COMMANDS[index % len(STATE_COMMANDS)],
        STATE_COMMANDS[(index + 3) % len(STATE_COMMANDS)],
    ]
    for result in run_clis([[*command, "--config", str(path)] for command in commands], timeout=60):
        check(result, 1, f"s3://{bucket}/prod/state.json", key)


# --- stack outputs ---------------------------------------------------------------------------

STACK = {
    "cloud": "azure", "region": "eastus", "endpoint_url": "https://ml.eastus.azurecontainerapps.io",
    "model_uri": "az://models/models/digits/LATEST", "registry": "mlacr.azurecr.io", "image": "x@sha256:1",
    "cpu": 1, "memory": "2Gi", "min_instances": 1, "max_instances": 4, "concurrency": 50,
    "storage_settings": {"account_url": "https://ml.blob.core.windows.net"},
}  # fmt: skip
DNS = {
    "zone_id": "Z123EXAMPLE",
    "record_name": "model.example.com.",
    "ttl": 10,
    "health_check_ids": {"azure": "hc-1"},
}
STACKS: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("masked-secret", {**STACK, "storage_settings": {"account_url": "[secret]"}}, "settings.account_url"),
    ("masked-top", {**STACK, "endpoint_url": "[secret]"}, "--show-secrets"),
    ("shown-secret", {**STACK, "storage_settings": {"connection_string": SECRET}}, "storage_settings"),
    ("secret-in-url", {**STACK, "endpoint_url": f"https://u:{SECRET}@ml.example"}, "endpoint_url"),
    ("secret-bad-type", {**STACK, "storage_settings": {"account_url": 1, "sas": SECRET}}, "storage_settings"),
    ("cpu-text", {**STACK, "cpu": "lots"}, "'cpu'"),
    ("cpu-bool", {**STACK, "cpu": True}, "'cpu'"),
    ("cpu-negative", {**STACK, "cpu": -2}, "'cpu'"),
    ("memory", {**STACK, "memory": {"gi": 2}}, "'memory'"),
    ("model-uri", {**STACK, "model_uri": f"az://models/{SECRET}"}, "'model_uri'"),
    ("cloud", {**STACK, "cloud": "oracle"}, "'cloud'"),
    ("endpoint-ftp", {**STACK, "endpoint_url": f"ftp://{SECRET}.example"}, "'endpoint_url'"),
    ("region-type", {**STACK, "region": ["eastus"]}, "'region'"),
    (
        "setting-url-secret",
        {**STACK, "storage_settings": {"account_url": f"https://u:{SECRET}@ml.blob.core.windows.net"}},
        "'storage_settings'",
    ),
    (
        "setting-unknown",
        {**STACK, "storage_settings": {"account_url": "https://ml.blob.core.windows.net", "sas": SECRET}},
        "'storage_settings'",
    ),
    ("missing", {k: v for k, v in STACK.items() if k != "endpoint_url"}, "'endpoint_url' is missing"),
    ("a-list", b"[1, 2, 3]", "JSON object"),
    ("not-json", b"Current stack outputs (10):\n    OUTPUT  VALUE", "not JSON"),
    ("not-utf8", b'{"cloud": "\xff\xfe"}', "not JSON"),
    ("too-large", b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}', "larger than"),
]  # fmt: skip
DNS_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("dns-zone", {**DNS, "zone_id": f"../{SECRET}"}, "'zone_id'"),
    ("dns-name", {**DNS, "record_name": "a..b"}, "'record_name'"),
    ("dns-ttl", {**DNS, "ttl": "ten"}, "'ttl'"),
    ("dns-checks", {**DNS, "health_check_ids": [SECRET]}, "'health_check_ids'"),
    ("dns-check-id", {**DNS, "health_check_ids": {"azure": f"{SECRET}/x"}}, "'health_check_ids'"),
    ("dns-masked", {**DNS, "health_check_ids": {"azure": "[secret]"}}, "--show-secrets"),
    ("dns-check-cloud", {**DNS, "health_check_ids": {"ibm": "hc-1"}}, "'aws', 'gcp' or 'azure'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "outputs", "names"), STACKS + DNS_CASES, ids=[c[0] for c in STACKS + DNS_CASES]
)
def test_broken_stack_outputs_are_refused_naming_the_file_and_output_never_the_value(
    tmp_path: Path, name: str, outputs: dict[str, Any] | bytes, names: str
) -> None:
    files = []
    if name.startswith("dns-"):
        good = tmp_path / "azure.json"
        good.write_text(json.dumps(STACK))
        files.append(good)
    path = tmp_path / ("dns.json" if name.startswith("dns-") else "azure.json")
    path.write_bytes(outputs if isinstance(outputs, bytes) else json.dumps(outputs).encode())
    files.append(path)
    check(run_cli("config", "from-stacks", *map(str, files)), 2, str(path), names)


def test_from_stacks_names_an_output_file_it_cannot_write(tmp_path: Path) -> None:
    stack = tmp_path / "azure.json"
    stack.write_text(json.dumps(STACK))
    out = tmp_path / "no-such-dir" / "orchestrator.yaml"
    check(run_cli("config", "from-stacks", str(stack), "--out", str(out)), 2, str(out))


# --- usage errors ----------------------------------------------------------------------------

USAGE: list[tuple[list[str], str]] = [
    (["failover", "--from", "nope"], "unknown cloud 'nope'"),
    (["failover", "--from", "aws", "--to", "nope"], "unknown cloud 'nope'"),
    (["failback", "--to", "nope"], "unknown cloud 'nope'"),
    (["failover"], "Missing option '--from'"),
    (["health"], "choose one of --once"),
    (["health", "--once", "--watch"], "choose one of --once"),
    (["status", "--bogus"], "No such option"),
    (["frobnicate"], "No such command"),
    (["config", "from-stacks", "/nonexistent/aws.json"], "stack outputs file not found"),
    (["verify", "--clouds", "aws,ibm"], "ibm"),
    (["failover", "--from", "aws", "--to", "aws"], "--to aws"),
    (["failover", "--from", "aws", "--reason", "x" * 2000], "--reason"),
    (["failover", "--from", "aws", "--reason", "drill\x1b[2J"], "--reason"),
]


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[" ".join(a)[:50] for a, _ in USAGE])
def test_usage_errors_exit_2_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(base(tmp_path)))
    extra = (
        ["--config", str(path)] if args[0] not in ("frobnicate", "config") and "--bogus" not in args else []
    )
    check(run_cli(*args, *extra), 2, message)
