"""No request stalls the endpoint or makes it answer 5xx: hostile bodies, huge features, slow clients.

Decoding rules are fuzzed directly (hypothesis, sizes around the fast path's 16 KiB threshold);
the rest runs against real `orchestrator serve` processes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainResult
from serving.inputs import MAX_ROWS, InputError, decode_predict_request
from serving.v2_inputs import decode_v2_request

WIDTH = 64
ZERO_ROW = "[" + ", ".join(["0"] * WIDTH) + "]"


@pytest.fixture(scope="module")
def fast_timeouts(digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """An endpoint with 1 s header and body timeouts, docs on, the default 32 MiB body limit."""
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    ep = start_endpoint(
        str(digits_model.path),
        log_path=log,
        extra_args=["--header-timeout", "1", "--body-timeout", "1", "--docs"],
    )
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


def padded(first_row: str, total_bytes: int) -> bytes:
    """``{"instances": [first_row, 0-rows...]}`` of about ``total_bytes``."""
    rows = max(0, (total_bytes - len(first_row)) // (len(ZERO_ROW) + 2))
    return ('{"instances": [' + ", ".join([first_row] + [ZERO_ROW] * rows) + "]}").encode()


def post(url: str, body: bytes, path: str = "/v1/predict") -> httpx.Response:
    return httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=60)


# --- the fast path's failures fall back to the exact path -----------------------------------------

BIG_INT = "[" + ", ".join(["1" * 20] + ["0"] * (WIDTH - 1)) + "]"
NESTED = '{"instances": ' + "[" * 1100 + "]" * 1100 + "}"


# Up to ~5,000 rows of 64 zeros: under MAX_ROWS, so the row limit's 413 never interferes.
@pytest.mark.parametrize("size", [100, 16 * 1024 - 1, 16 * 1024, 64 * 1024, 1_000_000])
@pytest.mark.parametrize(
    ("case", "make", "statuses"),
    [
        ("20-digit integer", lambda n: padded(BIG_INT, n), {200, 422}),
        ("nesting 1,100 deep", lambda n: (NESTED + " " * max(0, n - len(NESTED))).encode(), {400, 422}),
        ("1e400", lambda n: padded(BIG_INT.replace("1" * 20, "1e400"), n), {422}),
        ("NaN literal", lambda n: padded(BIG_INT.replace("1" * 20, "NaN"), n), {400}),
        ("string", lambda n: padded(BIG_INT.replace("1" * 20, '"x"'), n), {422}),
    ],
)
def test_odd_content_answers_the_same_4xx_or_200_at_any_size(
    case: str, make, statuses: set[int], size: int
) -> None:
    assert decode_status(make(size)) in statuses, f"{case} at {size} bytes"


def decode_status(body: bytes, width: int = WIDTH, decode=decode_predict_request) -> int:
    """The status the endpoint would answer for ``body``: 200, or the InputError's (only those)."""
    try:
        decode(body, width)
    except InputError as exc:
        return exc.status
    return 200


@pytest.mark.parametrize(
    ("case", "make", "statuses"),
    [
        ("20-digit integer", lambda n: padded(BIG_INT, n), {200, 422}),
        ("nesting 1,100 deep", lambda n: (NESTED + " " * max(0, n - len(NESTED))).encode(), {400, 422}),
    ],
)
def test_the_server_never_answers_5xx_for_the_fast_paths_failures(
    fast_timeouts: Endpoint, case: str, make, statuses: set[int]
) -> None:
    for size in (1000, 16 * 1024, 200_000):
        response = post(fast_timeouts.url, make(size))
        assert response.status_code in statuses, f"{case} at {size}: {response.text[:200]}"
        assert "error" in response.json() or response.status_code == 200


_token = st.sampled_from(
    ["0", "1.5", "-2e3", "1" * 20, "1e400", "NaN", "Infinity", "null", "true", '"s"', "[]", "[1]", "{}"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    odd=_token,
    column=st.integers(0, 3),
    rows=st.integers(1, 400),
    width=st.integers(1, 4),
    prefix=st.sampled_from(["", '"note": "[,,,]", ']),
)
def test_fuzz_decoding_only_ever_returns_a_matrix_or_a_4xx(
    odd: str, column: int, rows: int, width: int, prefix: str
) -> None:
    """Around the fast path's 16 KiB threshold (rows of 4 zeros are ~14 bytes: 400 rows ~ 5.6 kB; the
    padding below spans 0 to ~40 kB), with one odd token anywhere in the first row."""
    row = ["0"] * width
    row[column % width] = odd
    filler = "[" + ", ".join(["0.25"] * width) + "]"
    body = (
        "{" + prefix + '"instances": [[' + ", ".join(row) + "], " + ", ".join([filler] * rows * 3) + "]}"
    ).encode()
    status = decode_status(body, width)
    assert status == 200 or 400 <= status < 500
    if status == 200:
        x = decode_predict_request(body, width)
        assert x.shape == (rows * 3 + 1, width)
        assert np.isfinite(x).all()
    v2 = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP64", "data": [0] * width}]}
    )
    status = decode_status(v2.replace("[0", "[" + odd, 1).encode(), width, decode_v2_request)
    assert status == 200 or 400 <= status < 500


def test_a_body_with_more_values_than_any_valid_request_is_refused_unread() -> None:
    too_many = ("{" + '"instances": [[' + ", ".join(["0"] * (MAX_ROWS * 4 + 10_000)) + "]]}").encode()
    with pytest.raises(InputError, match="more values than") as caught:
        decode_predict_request(too_many, 2)
    assert caught.value.status == 413
    with pytest.raises(InputError, match="more values than"):
        decode_v2_request(too_many.replace(b"instances", b"inputs"), 2)


# --- outputs that are not finite --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "bad"),
    [
        ([[1e308] * WIDTH], [0]),
        ([[0.0] * WIDTH, [-1e308] * WIDTH], [1]),
        ([[1.7e308, -1.7e308] * (WIDTH // 2)], [0]),
        ([[0.0] * WIDTH, [1e308] * WIDTH, [0.5] * WIDTH, [-1e308] * WIDTH], [1, 3]),
    ],
)
def test_rows_whose_outputs_are_not_finite_are_refused_by_number(
    fast_timeouts: Endpoint, rows: list[list[float]], bad: list[int]
) -> None:
    for path, body in (
        ("/v1/predict", {"instances": rows}),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "input", "shape": [len(rows), WIDTH], "datatype": "FP64", "data": rows}]},
        ),
    ):
        response = httpx.post(fast_timeouts.url + path, json=body, timeout=10)
        assert response.status_code == 422, response.text
        message = response.json()["error"]
        assert message.startswith(f"row {', '.join(map(str, bad))}:"), message
        assert "not finite" in message


def test_large_but_finite_features_give_finite_probabilities(fast_timeouts: Endpoint) -> None:
    rows = [[1e200] * WIDTH, [-1e200, 1e200] * (WIDTH // 2), [1e30] * WIDTH]
    response = httpx.post(fast_timeouts.url + "/v1/predict", json={"instances": rows}, timeout=10)
    assert response.status_code == 200, response.text
    probabilities = np.asarray(response.json()["probabilities"], dtype=np.float64)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)


# --- slow clients -----------------------------------------------------------------------------------


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_headers_that_never_finish_get_408_and_the_connection_closed(fast_timeouts: Endpoint) -> None:
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
        answer = read_all(sock)  # returns when the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request headers did not arrive" in answer
    assert httpx.get(fast_timeouts.url + "/healthz").status_code == 200, "the server itself is fine"


def test_an_idle_connection_is_closed(fast_timeouts: Endpoint) -> None:
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_a_body_that_never_finishes_gets_408(fast_timeouts: Endpoint) -> None:
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + b'{"instances": [[0'
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"did not arrive within 1 s" in answer


def test_a_kept_alive_connection_still_serves_requests_in_time(fast_timeouts: Endpoint) -> None:
    with httpx.Client(base_url=fast_timeouts.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.3)  # pauses between requests stay under the keep-alive and header timeouts


# --- memory ---------------------------------------------------------------------------------------


def test_a_30_mib_body_does_not_become_a_gigabyte(fast_timeouts: Endpoint) -> None:
    """The issue's example: 30 MiB of small numbers took the process from 130 MB to about 1 GB."""
    process = psutil.Process(fast_timeouts.process.pid)
    before = process.memory_info().rss
    values = 15 * 1024 * 1024
    body = ('{"instances": [[' + "0," * (values - 1) + "0]]}").encode()
    response = post(fast_timeouts.url, body)
    assert response.status_code == 413
    assert "more values than" in response.json()["error"]
    ragged = padded("[" + ", ".join(["0"] * (WIDTH + 1)) + "]", 30 * 1024 * 1024)  # plain-shaped, one bad row
    assert post(fast_timeouts.url, ragged).status_code in (413, 422)
    grown = process.memory_info().rss - before
    # The bodies themselves (30 MiB each, a copy or two while read and joined) and simdjson's tape:
    # a small multiple of the body, far from the ~900 MB of Python objects it used to become.
    assert grown < 400 * 1024 * 1024, f"resident memory grew by {grown / 2**20:.0f} MiB"


# --- what the endpoint shows -------------------------------------------------------------------------


def test_docs_are_off_by_default_and_on_with_the_flag(endpoint: Endpoint, fast_timeouts: Endpoint) -> None:
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(endpoint.url + path).status_code == 404
        assert httpx.get(fast_timeouts.url + path).status_code == 200


def test_docs_from_the_environment(digits_model: TrainResult, tmp_path: Path) -> None:
    import sys

    from orchestrator.demo.processes import ManagedProcess, free_port, wait_http

    port = free_port()
    process = ManagedProcess(
        "serve",
        [sys.executable, "-m", "serving"],
        env={"MODEL_URI": str(digits_model.path), "PORT": str(port), "SERVE_DOCS": "1"},
        log_path=tmp_path / "serve.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30, process=process)
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        process.stop()


# --- V2 fields of any JSON type, and bodies made of containers ---------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("datatype", ["FP64"]),
        ("datatype", {"a": 1}),
        ("datatype", None),
        ("datatype", 64),
        ("shape", [True, WIDTH]),
        ("shape", [1, False]),
        ("shape", {"rows": 1}),
        ("shape", "1,64"),
        ("data", {"0": 0}),
    ],
)
def test_v2_fields_of_any_json_type_answer_a_4xx_naming_the_field(
    fast_timeouts: Endpoint, field: str, value: object
) -> None:
    tensor = {"name": "input", "shape": [1, WIDTH], "datatype": "FP64", "data": [0.0] * WIDTH, field: value}
    response = httpx.post(
        f"{fast_timeouts.url}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=10
    )
    assert 400 <= response.status_code < 500, (field, value, response.status_code, response.text[:200])
    assert f"inputs[0].{field}" in response.json()["error"]


def test_error_messages_do_not_echo_megabytes(fast_timeouts: Endpoint) -> None:
    for tensor in (
        {"name": "input", "shape": [1, WIDTH], "datatype": "F" * 1_000_000, "data": [0.0] * WIDTH},
        {"name": "input", "shape": [1] * 200_000, "datatype": "FP64", "data": [0.0] * WIDTH},
    ):
        response = httpx.post(
            f"{fast_timeouts.url}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=30
        )
        assert response.status_code == 422
        assert len(response.content) < 2000, response.content[:300]
    for path in ("/v2/models/" + "m" * 50_000, "/v2/models/digits/versions/" + "v" * 50_000):
        response = httpx.get(fast_timeouts.url + path, timeout=30)
        assert response.status_code == 404
        assert len(response.content) < 2000, response.content[:300]


NESTED_ELEMENT = "[" * 1000 + "0" + "]" * 1000


@pytest.mark.parametrize(
    ("decode", "make"),
    [
        (decode_predict_request, lambda elements: '{"instances": [' + elements + "]}"),
        (
            decode_v2_request,
            lambda elements: (
                '{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": ['
                + elements
                + "]}]}"
            ),
        ),
    ],
)
@pytest.mark.parametrize("count", [20, 2_000])
def test_bodies_of_nested_arrays_are_refused_before_they_are_parsed(decode, make, count: int) -> None:
    """Each comma-separated value may be 1,000 nested arrays (within every parser's depth limit):
    counting values alone let a 30 MiB body become ~1.5 GB of Python lists. Containers are counted
    too, and a body with more of them than any valid request needs is refused unread (413)."""
    body = make(", ".join([NESTED_ELEMENT] * count)).encode()
    with pytest.raises(InputError) as caught:
        decode(body, WIDTH)
    if count == 2_000:  # ~4 MB: more arrays than 10,000 rows could ever need
        assert caught.value.status == 413
        assert "more arrays or objects than" in str(caught.value)


def test_a_30_mib_body_of_nested_arrays_does_not_become_gigabytes(fast_timeouts: Endpoint) -> None:
    process = psutil.Process(fast_timeouts.process.pid)
    elements = ", ".join([NESTED_ELEMENT] * ((30 * 1024 * 1024) // (len(NESTED_ELEMENT) + 2)))
    before = process.memory_info().rss
    for path, body in (
        ("/v1/predict", '{"instances": [' + elements + "]}"),
        (
            "/v2/models/digits/infer",
            '{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": ['
            + elements
            + "]}]}",
        ),
    ):
        response = post(fast_timeouts.url, body.encode(), path)
        assert response.status_code == 413, response.text[:200]
    grown = process.memory_info().rss - before
    assert grown < 400 * 1024 * 1024, f"resident memory grew by {grown / 2**20:.0f} MiB"


# --- connections a client holds open -----------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",  # 405: body never read
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",  # 404
    ],
)
def test_a_body_no_route_reads_cannot_hold_the_connection(fast_timeouts: Endpoint, head: bytes) -> None:
    """A route that answers without reading the body closes the connection: a client trickling that
    body must not keep it open beyond the header and body timeouts (1 s each here)."""
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        sock.sendall(head)
        sock.settimeout(0.2)
        answer, closed = b"", False
        for _ in range(100):  # 20 s at most, one byte every 0.2 s
            try:
                sock.sendall(b"1\r\na\r\n" if b"chunked" in head else b"a")
            except OSError:  # reset: the server closed it
                closed = True
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            answer += chunk
    assert closed, f"the connection is still open after 20 s; got {answer[:120]!r}"
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404", b"HTTP/1.1 405")), answer[:200]
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"X-Big: " + b"a" * 100_000, 431),
        (b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(1000)).rstrip(b"\r\n"), 431),
        (b"X-Ok: " + b"a" * 30_000, 200),
    ],
)
def test_headers_beyond_64_kib_are_refused(fast_timeouts: Endpoint, header: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:200]
    assert httpx.get(fast_timeouts.url + "/healthz").status_code == 200


def test_bodies_read_whole_keep_the_connection_alive(fast_timeouts: Endpoint) -> None:
    """Closing is only for bodies no route read: pipelined predictions share one connection."""
    body = json.dumps({"instances": [[0.0] * WIDTH]}).encode()
    request = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with socket.create_connection(("127.0.0.1", fast_timeouts.port)) as sock:
        sock.sendall(request * 2 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 3, answer[:300]
    assert answer.lower().count(b"connection: close") == 1  # only the last, which asked for it
