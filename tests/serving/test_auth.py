"""Bearer tokens at the endpoint, against a real ``python -m serving`` process with API_TOKEN and
API_TOKEN_PREVIOUS set: which routes need a token, which tokens pass, what a refusal looks like,
and that no token reaches the log."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainResult
from serving.settings import api_tokens, parse

CURRENT = "current-token-0123456789abcdefghijklmnopqrstuv"
PREVIOUS = "previous-token-9876543210ZYXWVUTSRQPONMLKJIHGF"
WRONG = "wrong-token-0123456789abcdefghijklmnopqrstuvwx"
ROW = {"instances": [[0.0] * 64]}


@pytest.fixture(scope="module")
def secured(digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """An endpoint requiring CURRENT or PREVIOUS (a rotation in progress)."""
    log = tmp_path_factory.mktemp("auth-logs") / "serve.log"
    ep = start_endpoint(
        str(digits_model.path), log_path=log, env={"API_TOKEN": CURRENT, "API_TOKEN_PREVIOUS": PREVIOUS}
    )
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


def _predict(ep: Endpoint, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{ep.url}/v1/predict", json=ROW, headers=headers, timeout=10)


def _raw(ep: Endpoint, authorization: bytes) -> tuple[int, bytes]:
    """(status, response head and body) of a GET /v1/model whose Authorization header is exactly
    ``authorization`` (bytes httpx would refuse or normalise)."""
    with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + authorization
            + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _assert_refused(response: httpx.Response, *, presented: bool) -> None:
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert ('error="invalid_token"' in challenge) is presented
    assert set(response.json()) == {"error"}


def test_without_a_token_predictions_and_metadata_are_refused(secured: Endpoint) -> None:
    _assert_refused(_predict(secured), presented=False)
    for path in ("/v1/model", "/v2", "/v2/models/digits", "/metrics", "/v2/models/digits/ready", "/nope"):
        _assert_refused(httpx.get(f"{secured.url}{path}", timeout=10), presented=False)
    response = httpx.post(f"{secured.url}/v2/models/digits/infer", json={"inputs": []}, timeout=10)
    _assert_refused(response, presented=False)


def test_the_platform_probes_stay_open(secured: Endpoint) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(f"{secured.url}{path}", timeout=10).status_code == 200, path


@pytest.mark.parametrize("token", [CURRENT, PREVIOUS], ids=["current", "previous"])
def test_the_current_and_the_previous_token_are_accepted(secured: Endpoint, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    response = _predict(secured, headers)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1
    assert httpx.get(f"{secured.url}/v1/model", headers=headers, timeout=10).status_code == 200
    assert httpx.get(f"{secured.url}/metrics", headers=headers, timeout=10).status_code == 200


def test_the_scheme_is_case_insensitive(secured: Endpoint) -> None:
    assert _predict(secured, {"Authorization": f"bearer {CURRENT}"}).status_code == 200
    assert _predict(secured, {"Authorization": f"BEARER   {CURRENT}"}).status_code == 200  # 1*SP


@pytest.mark.parametrize("trailing", [b" ", b"\t", b" \t "], ids=["space", "tab", "mixed"])
def test_whitespace_after_the_token_is_not_part_of_it(secured: Endpoint, trailing: bytes) -> None:
    # RFC 9110 section 5.5: whitespace around a field value is not part of the value; sent raw,
    # since the parser may or may not trim it before the application sees it.
    status, _ = _raw(secured, b"Bearer " + CURRENT.encode() + trailing)
    assert status == 200


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {WRONG}",
        f"Bearer {CURRENT}x",
        f"Bearer {CURRENT[:-1]}",
        f"Bearer {CURRENT.upper()}",
        "Bearer x",
    ],
    ids=["wrong", "longer", "shorter", "case", "short"],
)
def test_a_wrong_token_is_refused(secured: Endpoint, authorization: str) -> None:
    _assert_refused(_predict(secured, {"Authorization": authorization}), presented=True)


@pytest.mark.parametrize(
    "authorization",
    [
        b"Basic " + CURRENT.encode(),
        b"Basic dXNlcjpwYXNz",
        b"Bearer",
        b"Bearer ",
        b"",
        CURRENT.encode(),
        b"Bearer " + CURRENT.encode() + b" extra",
        b"Bearer\t" + CURRENT.encode(),
        b"Token " + CURRENT.encode(),
        b"Bearer " + CURRENT.encode() + "é".encode(),
        "Bearer jeton-ünïcode-0123456789abcdefghijklmnop".encode(),
    ],
    ids=[
        "basic-token",
        "basic",
        "scheme-only",
        "scheme-space",
        "empty",
        "no-scheme",
        "extra-word",
        "tab",
        "other-scheme",
        "unicode-suffix",
        "unicode",
    ],
)
def test_malformed_credentials_are_refused_with_401(secured: Endpoint, authorization: bytes) -> None:
    status, data = _raw(secured, authorization)
    assert status == 401
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"www-authenticate: Bearer realm=" in head.lower().replace(b"bearer realm", b"Bearer realm")
    assert body.startswith(b'{"error":')


def test_control_bytes_in_the_header_are_refused_by_the_parser_before_any_route(secured: Endpoint) -> None:
    # httptools refuses a header value holding DEL or NUL (400): not a 5xx, never a 200.
    for authorization in (b"Bearer " + CURRENT.encode() + b"\x7f", b"Bearer \x00" + CURRENT.encode()):
        status, data = _raw(secured, authorization)
        assert status == 400, data[:200]
        assert CURRENT.encode() not in data


def test_two_authorization_headers_are_refused(secured: Endpoint) -> None:
    headers = [("Authorization", f"Bearer {CURRENT}"), ("Authorization", f"Bearer {WRONG}")]
    response = httpx.post(f"{secured.url}/v1/predict", json=ROW, headers=headers, timeout=10)
    _assert_refused(response, presented=True)


def test_a_refused_request_with_a_body_closes_its_connection(secured: Endpoint) -> None:
    response = _predict(secured, {"Authorization": f"Bearer {WRONG}"})
    assert response.status_code == 401
    assert response.headers.get("connection") == "close"


def test_no_token_reaches_the_log(secured: Endpoint) -> None:
    _predict(secured, {"Authorization": f"Bearer {CURRENT}"})
    _predict(secured, {"Authorization": f"Bearer {WRONG}"})
    log = secured.process.tail(10_000)
    assert log, "the endpoint's log is empty"
    for token in (CURRENT, PREVIOUS, WRONG):
        assert token not in log
    assert "bearer token required" in log


def test_without_a_token_the_endpoint_is_open_and_says_so(endpoint: Endpoint) -> None:
    assert _predict(endpoint).status_code == 200
    assert httpx.get(f"{endpoint.url}/v1/model", timeout=10).status_code == 200
    assert "predictions are not authenticated" in endpoint.process.tail(10_000)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"API_TOKEN": "short"}, "API_TOKEN must be at least 32"),
        ({"API_TOKEN": CURRENT + " x"}, "API_TOKEN must be at least 32"),
        ({"API_TOKEN": CURRENT, "API_TOKEN_PREVIOUS": "é" * 40}, "API_TOKEN_PREVIOUS must be at least 32"),
        ({"API_TOKEN_PREVIOUS": PREVIOUS}, "API_TOKEN_PREVIOUS is set without API_TOKEN"),
        ({"API_TOKEN": CURRENT, "API_TOKEN_PREVIOUS": CURRENT}, "must differ"),
    ],
)
def test_unusable_tokens_are_refused_at_start_without_quoting_them(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse(["--model", "x"], environ)
    assert CURRENT not in str(caught.value)
    assert PREVIOUS not in str(caught.value)


def test_tokens_come_from_the_environment_only() -> None:
    assert api_tokens({}) == ()
    assert api_tokens({"API_TOKEN": "", "API_TOKEN_PREVIOUS": ""}) == ()
    assert api_tokens({"API_TOKEN": CURRENT, "API_TOKEN_PREVIOUS": PREVIOUS}) == (CURRENT, PREVIOUS)
    settings = parse(["--model", "x"], {"API_TOKEN": CURRENT})
    assert settings.api_tokens == (CURRENT,)
    assert CURRENT not in repr(settings)
    with pytest.raises(Exception, match="unrecognized"):
        parse(["--model", "x", "--api-token", CURRENT], {})


def test_a_bad_token_exits_2_naming_the_variable(digits_model: TrainResult, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "serving", "--model", str(digits_model.path)],
        env={"PATH": "/usr/bin:/bin", "API_TOKEN": "too-short"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "API_TOKEN" in result.stderr
    assert "too-short" not in result.stderr


def _raw_path(ep: Endpoint, method: bytes, path: bytes) -> int:
    """The status of ``METHOD PATH`` sent as is, without credentials."""
    with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
        sock.sendall(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (b"GET", b"/readyz/../v1/model"),
        (b"GET", b"//v1/model"),
        (b"GET", b"/v1/model/"),
        (b"GET", b"/v1%2Fmodel"),
        (b"GET", b"/healthz/../metrics"),
        (b"GET", b"/READYZ"),
        (b"HEAD", b"/v1/model"),
        (b"OPTIONS", b"/v1/predict"),
        (b"GET", b"/docs"),
        (b"GET", b"/openapi.json"),
    ],
)
def test_no_path_or_method_trick_reaches_a_closed_route(
    secured: Endpoint, method: bytes, path: bytes
) -> None:
    assert _raw_path(secured, method, path) == 401


def test_a_compressed_body_is_inflated_only_after_the_token_is_checked(secured: Endpoint) -> None:
    # A client without a token makes the endpoint inflate nothing: its body, not even valid gzip,
    # is answered 401 (inflating first would have answered 400), and a valid one too.
    for body in (b"not gzip at all", gzip.compress(json.dumps(ROW).encode())):
        response = httpx.post(
            f"{secured.url}/v1/predict", content=body, headers={"Content-Encoding": "gzip"}, timeout=10
        )
        _assert_refused(response, presented=False)
    response = httpx.post(
        f"{secured.url}/v1/predict",
        content=gzip.compress(json.dumps(ROW).encode()),
        headers={"Content-Encoding": "gzip", "Authorization": f"Bearer {CURRENT}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
