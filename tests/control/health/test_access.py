"""The probes reach each cloud as a client does: the public name as Host and TLS server name at
the cloud's entry, the certificate verified for the public name, and the API token.

A local TLS server stands in for an ingress that routes by Host (421 for any other name, as the
AWS listener and Container Apps do) with a certificate for the public name only (trustme's CA);
a real endpoint process checks the token."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from orchestrator.control.config import load_config
from orchestrator.control.health.access import TOKEN_TTL_S, ProbeAccess
from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.prober import Prober
from orchestrator.core.errors import ConfigError
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainOptions, TrainResult, train

PUBLIC = "model.example.test"
TOKEN = "probe-token-0123456789abcdefghijklmnopqrstuvw"
CANARY = {"instances": [[1.0, 2.0]], "labels": ["a"], "probabilities": [[0.75, 0.25]]}


@dataclass
class Ingress:
    """A TLS server answering the probe's three routes for ``serves`` (by Host), 421 otherwise."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)  # host, sni, authorization per request

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _ingress(ca: trustme.CA, names: tuple[str, ...], serves: str) -> Iterator[Ingress]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    sni: list[str | None] = [None]

    def remember(_sock: Any, name: str | None, _ctx: Any) -> None:
        sni[0] = name

    context.sni_callback = remember
    ingress: Ingress

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            ingress.seen.append(
                {
                    "host": self.headers.get("Host"),
                    "sni": sni[0],
                    "authorization": self.headers.get("Authorization"),
                }
            )
            if self.headers.get("Content-Length"):
                self.rfile.read(int(self.headers["Content-Length"]))
            if host != serves:
                self._send(421, {"error": "misdirected"})
            elif self.path == "/readyz":
                self._send(200, {"ready": True})
            elif self.path == "/v1/model":
                self._send(200, {"version": "v1", "canary": CANARY})
            elif self.path == "/v1/predict":
                self._send(200, {"predictions": ["a"], "probabilities": [[0.75, 0.25]]})
            else:
                self._send(404, {"error": "no route"})

        do_GET = do_POST = _answer

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ingress = Ingress(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ingress
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ingress(ca: trustme.CA) -> Iterator[Ingress]:
    """An ingress for the public name, with a certificate for the public name only."""
    yield from _ingress(ca, (PUBLIC,), serves=PUBLIC)


@pytest.fixture
def own_name_ingress(ca: trustme.CA) -> Iterator[Ingress]:
    """An ingress whose certificate covers its own name (localhost) and the public name, routing
    only the public name: the case of an entry that answers its platform name but not ours."""
    yield from _ingress(ca, ("localhost", PUBLIC), serves=PUBLIC)


def _prober(tmp_path: Path, ca: trustme.CA, url: str, **sections: object) -> Prober:
    data = {"model": {"name": "m"}, "clouds": {"aws": {"endpoint": url}}, **sections}
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(data))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return Prober(load_config(path), buckets=dict, transport=httpx.AsyncHTTPTransport(verify=context))


def test_the_public_name_is_sent_as_host_and_sni_and_its_certificate_passes(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress
) -> None:
    with _prober(tmp_path, ca, ingress.url, endpoint={"public_name": PUBLIC}) as prober:
        result = prober.probe()["aws"]
    assert result.verdict is Verdict.OK, result.reason
    assert len(ingress.seen) == 4  # the probe's three requests, and the round's drift read
    for request in ingress.seen:
        assert request["host"] == f"{PUBLIC}:{ingress.port}"
        assert request["sni"] == PUBLIC
        assert request["authorization"] is None


def test_a_name_the_certificate_does_not_carry_fails_the_probe(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress
) -> None:
    with _prober(tmp_path, ca, ingress.url, endpoint={"public_name": "other.example.test"}) as prober:
        result = prober.probe()["aws"]
    assert result.verdict is Verdict.FAIL
    assert "certificate" in result.reason.lower() or "hostname" in result.reason.lower(), result.reason
    assert ingress.seen == []  # refused at the handshake: no request was sent


def test_without_the_public_name_the_entry_name_alone_is_checked(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress
) -> None:
    # 127.0.0.1 is not on the certificate: connecting to the entry by its own name fails.
    with _prober(tmp_path, ca, ingress.url) as prober:
        assert prober.probe()["aws"].verdict is Verdict.FAIL


def test_an_entry_that_serves_its_own_name_but_not_the_public_one_is_not_healthy(
    tmp_path: Path, ca: trustme.CA, own_name_ingress: Ingress
) -> None:
    url = f"https://localhost:{own_name_ingress.port}"
    with _prober(tmp_path, ca, url) as prober:  # the platform's own name: routed elsewhere
        result = prober.probe()["aws"]
    assert result.verdict is Verdict.FAIL
    assert "421" in result.reason
    with _prober(tmp_path, ca, url, endpoint={"public_name": PUBLIC}) as prober:
        assert prober.probe()["aws"].verdict is Verdict.OK


def test_the_token_is_read_from_its_reference_and_sent_with_every_request(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_TOKEN", TOKEN)
    sections = {"endpoint": {"public_name": PUBLIC}, "auth": {"token": "env://PROBE_TOKEN"}}
    with _prober(tmp_path, ca, ingress.url, **sections) as prober:
        result = prober.probe()["aws"]
        assert result.verdict is Verdict.OK, result.reason
        assert TOKEN not in repr(result)
        assert TOKEN not in str(prober.note)
    # the probe's three requests, and the round's drift read
    assert [r["authorization"] for r in ingress.seen] == [f"Bearer {TOKEN}"] * 4


def test_a_token_that_cannot_be_read_is_a_configuration_error_naming_the_key(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROBE_TOKEN", raising=False)
    with (
        _prober(tmp_path, ca, ingress.url, auth={"token": "env://PROBE_TOKEN"}) as prober,
        pytest.raises(ConfigError, match=r"auth\.token: secret env://PROBE_TOKEN"),
    ):
        prober.probe()
    assert ingress.seen == []  # no probe went out without its token


@pytest.mark.parametrize(
    "stored", [f"{TOKEN}\n", f" {TOKEN}", f"Bearer {TOKEN}", "short-token", f"{TOKEN}\u00e9"]
)
def test_a_secret_that_is_no_token_is_a_configuration_error_and_never_quoted(
    tmp_path: Path, ca: trustme.CA, ingress: Ingress, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    # A value stored with `echo` (a trailing newline), pasted with its scheme, or too short: the
    # endpoint refuses to start with it, and as a header it would make the HTTP client quote it
    # in an error that became the probe's reason (in tables, flips and the state).
    monkeypatch.setenv("PROBE_TOKEN", stored)
    with (
        _prober(tmp_path, ca, ingress.url, auth={"token": "env://PROBE_TOKEN"}) as prober,
        pytest.raises(ConfigError, match=r"auth\.token: secret env://PROBE_TOKEN") as raised,
    ):
        prober.probe()
    assert stored.strip() not in str(raised.value)
    assert "short-token" not in str(raised.value)
    assert ingress.seen == []


def test_a_re_read_secret_that_is_no_token_keeps_the_token_in_hand(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"name": "m"}, "clouds": {"aws": {}}, "auth": {"token": "env://T"}})
    )
    tokens = iter([TOKEN, f"{TOKEN[::-1]}\n"])
    clock = _Clock()
    access = ProbeAccess(load_config(path), read_token=lambda _ref: next(tokens), monotonic=clock)
    client = access.client(None, 1.0)
    access.refresh(client)
    clock.now = TOKEN_TTL_S + 1
    access.refresh(client)
    assert client.headers["Authorization"] == f"Bearer {TOKEN}"
    assert access.note is not None
    assert TOKEN[::-1] not in access.note


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_token_is_re_read_after_its_ttl_and_a_failed_re_read_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"name": "m"}, "clouds": {"aws": {}}, "auth": {"token": "env://T"}})
    )
    tokens = iter([TOKEN, ConfigError("store down"), TOKEN[::-1]])

    def read(_ref: str) -> str:
        value = next(tokens)
        if isinstance(value, Exception):
            raise value
        return value

    clock = _Clock()
    access = ProbeAccess(load_config(path), read_token=read, monotonic=clock)
    client = access.client(None, 1.0)
    access.refresh(client)
    assert client.headers["Authorization"] == f"Bearer {TOKEN}"
    clock.now = TOKEN_TTL_S - 1
    access.refresh(client)  # not yet: no read (the iterator would give the failure)
    clock.now = TOKEN_TTL_S + 1
    access.refresh(client)  # the re-read fails: the token in hand stays
    assert client.headers["Authorization"] == f"Bearer {TOKEN}"
    assert access.note is not None
    assert "store down" in access.note
    assert TOKEN not in access.note
    clock.now = 2 * TOKEN_TTL_S + 2
    access.refresh(client)
    assert client.headers["Authorization"] == f"Bearer {TOKEN[::-1]}"
    assert access.note is None


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"endpoint": {"public_name": PUBLIC}}, "must be https"),
        ({"auth": {"token": "env://T"}}, "never sent over plain HTTP"),
    ],
)
def test_plain_http_endpoints_refuse_a_public_name_and_a_token_to_another_machine(
    tmp_path: Path, sections: dict[str, Any], message: str
) -> None:
    path = tmp_path / "o.yaml"
    clouds = {"aws": {"endpoint": "http://aws.example.test"}}
    path.write_text(yaml.safe_dump({"model": {"name": "m"}, "clouds": clouds, **sections}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize(
    "name", ["127.0.0.1", "bad_name.example.com", "-a.example.com", "single", "a..b", "a.b/c", "é.example"]
)
def test_a_public_name_that_is_not_a_host_name_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "o.yaml"
    data = {"model": {"name": "m"}, "clouds": {"aws": {}}, "endpoint": {"public_name": name}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"endpoint\.public_name"):
        load_config(path)


def test_a_public_name_is_kept_in_its_canonical_form(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    data = {"model": {"name": "m"}, "clouds": {"aws": {}}, "endpoint": {"public_name": "Model.Example.COM."}}
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).endpoint.public_name == "model.example.com"


# -- against a real endpoint that requires the token ------------------------------------------


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(TrainOptions(dataset="iris", out=tmp_path_factory.mktemp("access-model")))


@pytest.fixture(scope="module")
def secured(iris: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    log = tmp_path_factory.mktemp("access-logs") / "serve.log"
    ep = start_endpoint(str(iris.path), log_path=log, env={"API_TOKEN": TOKEN})
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


def _plain_prober(tmp_path: Path, url: str, **sections: object) -> Prober:
    path = tmp_path / "orchestrator.yaml"
    data = {"model": {"name": "iris"}, "clouds": {"aws": {"endpoint": url}}, **sections}
    path.write_text(yaml.safe_dump(data))
    return Prober(load_config(path), buckets=dict)


def test_a_real_endpoint_requiring_the_token_is_healthy_only_with_it(
    tmp_path: Path, secured: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _plain_prober(tmp_path, secured.url) as prober:
        result = prober.probe()["aws"]
    assert result.verdict is Verdict.FAIL
    assert "/v1/model answered 401" in result.reason
    monkeypatch.setenv("PROBE_TOKEN", TOKEN)
    with _plain_prober(tmp_path, secured.url, auth={"token": "env://PROBE_TOKEN"}) as prober:
        result = prober.probe()["aws"]
    assert result.verdict is Verdict.OK, result.reason
    assert TOKEN not in secured.process.tail(10_000)
