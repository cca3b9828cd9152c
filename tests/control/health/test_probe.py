"""What one probe concludes from what an endpoint answers (httpx MockTransport: no sockets).

Every answer is a verdict: the cases below are the kinds of wrong answer an endpoint (or whatever
sits in front of it) can give, each of which must be a failed probe with a short reason, never an
exception. Real servers misbehaving on the wire (trickled bodies, resets, hangs) are in
tests/control/test_misbehaving.py.
"""

from __future__ import annotations

import asyncio
import gzip

import httpx
import orjson
import pytest

from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.probe import (
    MAX_BODY_BYTES,
    MAX_REASON,
    Expectation,
    ProbeResult,
    probe,
    probe_many,
)

EXPECT = Expectation(
    version="v2",
    instances=[[1.0, 2.0]],
    labels=["setosa"],
    probabilities=[[0.9, 0.1]],
    latency_slo_ms=250,
)
GOOD_ANSWER = {"predictions": ["setosa"], "probabilities": [[0.9, 0.1]]}


def endpoint(
    *,
    ready=200,
    version: object = "v2",
    labels=("setosa",),
    proba=((0.9, 0.1),),
    predict_status=200,
    delay=0.0,
    predict: httpx.Response | None = None,
    model: httpx.Response | None = None,
    readyz: httpx.Response | None = None,
):
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return readyz or httpx.Response(
                ready, json={"ready": ready == 200, "reason": "model refused: model.onnx sha256"}
            )
        if request.url.path == "/v1/model":
            return model or httpx.Response(200, json={"version": version})
        if request.url.path == "/v1/predict":
            if delay:
                await asyncio.sleep(delay)
            return predict or httpx.Response(
                predict_status, json={"predictions": list(labels), "probabilities": [list(p) for p in proba]}
            )
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def run(client: httpx.AsyncClient, expect: Expectation = EXPECT, *, at: float = 1000.0, timeout: float = 1):
    async def go() -> ProbeResult:
        async with client:
            return await probe(client, "aws", "http://aws.test", expect, timeout_s=timeout, clock=lambda: at)

    return asyncio.run(go())


def test_a_correct_endpoint_is_ok_and_every_request_is_timed() -> None:
    result = run(endpoint())
    assert result.verdict is Verdict.OK
    assert result.served_version == "v2"
    assert set(result.latency_ms) == {"readyz", "model", "predict"}
    assert result.at == 1000.0


def test_not_ready_is_a_failure_startup_grace_may_excuse() -> None:
    result = run(endpoint(ready=503))
    assert result.verdict is Verdict.FAIL
    assert result.not_ready
    assert "model.onnx" in result.reason


def test_the_wrong_version_is_degraded() -> None:
    result = run(endpoint(version="v1"))
    assert result.verdict is Verdict.DEGRADED
    assert result.reason == "serves version v1, expected v2"


V1 = Expectation("v1", [[1.0, 2.0]], ["versicolor"], [[0.2, 0.8]], 250)
ROLLING = Expectation(
    "v2", EXPECT.instances, EXPECT.labels, EXPECT.probabilities, 250, previous=V1, rollout_until=1001.0
)


def test_during_a_rollout_the_previous_version_passes_its_own_canary() -> None:
    result = run(endpoint(version="v1", labels=("versicolor",), proba=((0.2, 0.8),)), ROLLING)
    assert result.verdict is Verdict.OK
    assert result.reason == "rolling out: still serves v1, next v2"
    assert run(endpoint(version="v2"), ROLLING).reason == "ok"


def test_the_previous_version_must_still_answer_right_and_only_until_the_grace_ends() -> None:
    wrong = run(endpoint(version="v1", labels=("setosa",), proba=((0.2, 0.8),)), ROLLING)
    assert wrong.verdict is Verdict.FAIL, "v1 checked against v1's canary, not v2's"
    late = run(endpoint(version="v1", labels=("versicolor",), proba=((0.2, 0.8),)), ROLLING, at=1001.0)
    assert late.verdict is Verdict.DEGRADED
    assert run(endpoint(version="v0"), ROLLING).verdict is Verdict.DEGRADED


def test_any_version_is_fine_when_none_is_expected() -> None:
    expect = Expectation(None, EXPECT.instances, EXPECT.labels, EXPECT.probabilities, 250)
    assert run(endpoint(version="v9"), expect).verdict is Verdict.OK


def _json(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers={"content-type": "application/json"})


def _raw(body: bytes, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


HTML = b"<html><body><h1>Welcome to nginx!</h1></body></html>"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # wrong answers to the canary
        ({"labels": ("virginica",)}, "canary labels"),
        ({"proba": ((0.9 + 2e-6, 0.1),)}, "differ from the manifest's by"),
        ({"proba": ((0.9,),)}, "wrong shape"),
        ({"predict_status": 500}, "answered 500"),
        # wrong types, nulls, non-finite numbers
        ({"predict": _json({"predictions": ["setosa"], "probabilities": [[None, None]]})}, "not all numbers"),
        (
            {"predict": _json({"predictions": ["setosa"], "probabilities": None})},
            "missing or of the wrong shape",
        ),
        (
            {"predict": _json({"predictions": ["setosa"], "probabilities": [["0.9", "0.1"]]})},
            "not all numbers",
        ),
        (
            {"predict": _json({"predictions": ["setosa"], "probabilities": [[True, False]]})},
            "not all numbers",
        ),
        (
            {"predict": _raw(b'{"predictions": ["setosa"], "probabilities": [[NaN, 0.1]]}')},
            "not a JSON object",
        ),
        (
            {"predict": _raw(b'{"predictions": ["setosa"], "probabilities": [[1e999, 0.1]]}')},
            "not a JSON object",
        ),
        ({"predict": _json({"predictions": ["setosa"], "probabilities": [0.9, 0.1]})}, "wrong shape"),
        ({"predict": _json({"predictions": ["setosa"], "probabilities": {"a": 1}})}, "wrong shape"),
        ({"predict": _json({"predictions": [0], "probabilities": [[0.9, 0.1]]})}, "not 1 labels (strings)"),
        ({"predict": _json({"predictions": "setosa", "probabilities": [[0.9, 0.1]]})}, "not 1 labels"),
        ({"predict": _json({"predictions": None})}, "not 1 labels"),
        ({"predict": _json([GOOD_ANSWER])}, "not a JSON object"),
        ({"predict": _json("ok")}, "not a JSON object"),
        # not JSON at all, or not the contract's shape
        ({"predict": _raw(HTML, **{"content-type": "text/html"})}, "not a JSON object"),
        ({"predict": _raw(b"")}, "not a JSON object"),
        ({"predict": _raw(b"[" * 100_000 + b"]" * 100_000)}, "not a JSON object"),
        ({"predict": _raw(b'{"predictions": [' + b"1" * 5000 + b"]}")}, "not a JSON object"),
        ({"model": _raw(HTML, **{"content-type": "text/html"})}, "/v1/model answer is not a JSON object"),
        ({"model": _json({"version": 2})}, "/v1/model names no version"),
        ({"model": _json({"version": None})}, "/v1/model names no version"),
        ({"model": _json({"version": "x" * 1000})}, "/v1/model names no version"),
        # a version is stored and shown to operators: only the model version grammar is one
        ({"model": _json({"version": "[/bold]"})}, "/v1/model names no version"),
        ({"model": _json({"version": "v2\x1b]0;pwned\x07"})}, "/v1/model names no version"),
        ({"model": _json({"version": "V2"})}, "/v1/model names no version"),
        ({"model": _json({"version": "../v2"})}, "/v1/model names no version"),
        ({"model": _json({"version": "v2"}, status=404)}, "/v1/model answered 404"),
        ({"readyz": _json({"ready": False})}, "not ready: true"),
        ({"readyz": _json([], status=503)}, "not ready: no reason given"),
        ({"readyz": _raw(b"", status=302, location="http://elsewhere/")}, "/readyz answered 302"),
        ({"readyz": _raw(b"", status=204)}, "/readyz answered 204"),
        ({"readyz": _raw(HTML), "model": _raw(HTML)}, "/v1/model answer is not a JSON object"),
        # too large, or compressed (which could expand without bound)
        ({"model": _raw(b" " * (MAX_BODY_BYTES + 1))}, "/v1/model answer is over 1024 KiB"),
        (
            {"model": _raw(gzip.compress(b" " * 10_000_000), **{"content-encoding": "gzip"})},
            "content-encoding gzip",
        ),
    ],
)
def test_a_wrong_answer_is_a_failure_with_a_short_reason(kwargs: dict, message: str) -> None:
    result = run(endpoint(**kwargs))
    assert result.verdict is Verdict.FAIL
    assert message in result.reason
    assert len(result.reason) <= MAX_REASON
    assert "\n" not in result.reason


def test_a_reason_quoting_the_endpoint_is_one_short_printable_line() -> None:
    reason = "model\nrefused:\x1b[31m " + "x" * 10_000
    result = run(endpoint(readyz=_json({"ready": False, "reason": reason}, status=503)))
    assert result.verdict is Verdict.FAIL
    assert len(result.reason) <= MAX_REASON
    assert result.reason.isprintable()


def test_within_tolerance_is_right() -> None:
    assert run(endpoint(proba=((0.9 + 5e-7, 0.1),))).verdict is Verdict.OK


def test_slow_is_degraded() -> None:
    expect = Expectation("v2", EXPECT.instances, EXPECT.labels, EXPECT.probabilities, latency_slo_ms=5)
    result = run(endpoint(delay=0.02), expect)
    assert result.verdict is Verdict.DEGRADED
    assert "over the 5 ms SLO" in result.reason


def test_unreachable_and_timeouts_are_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(200)

    down = run(httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    assert down.verdict is Verdict.FAIL
    assert "unreachable (/readyz): ConnectError" in down.reason
    assert not down.not_ready
    cut = run(httpx.AsyncClient(transport=httpx.MockTransport(reset)))
    assert "RemoteProtocolError" in cut.reason
    frozen = run(httpx.AsyncClient(transport=httpx.MockTransport(hang)), timeout=0.2)
    assert frozen.verdict is Verdict.FAIL
    assert frozen.reason == "timed out after 0.2 s (waiting for /readyz)"


def test_anything_unexpected_is_a_failure_naming_its_type() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise KeyError("a bug in whatever answered")

    result = run(httpx.AsyncClient(transport=httpx.MockTransport(broken)))
    assert result.verdict is Verdict.FAIL
    assert result.reason.startswith("probe error (/readyz): KeyError")


def test_one_deadline_covers_the_whole_probe_not_each_request() -> None:
    """Each request alone is under the deadline; together they are over it."""

    async def slowish(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.15)
        if request.url.path == "/readyz":
            return _json({"ready": True})
        if request.url.path == "/v1/model":
            return _json({"version": "v2"})
        return _json(GOOD_ANSWER)

    result = run(httpx.AsyncClient(transport=httpx.MockTransport(slowish)), timeout=0.35)
    assert result.verdict is Verdict.FAIL
    assert result.reason == "timed out after 0.35 s (waiting for /v1/predict)"


def test_clouds_are_probed_at_once_and_one_hanging_does_not_hold_the_others() -> None:
    # Every /readyz waits until all three have arrived: probed one after the other, they never would.
    all_three = asyncio.Barrier(3)

    async def fleet(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            await all_three.wait()
            if request.url.host == "hung.test":
                await asyncio.sleep(60)
            return _json({"ready": True})
        if request.url.path == "/v1/model":
            return _json({"version": "v2"})
        return _json(GOOD_ANSWER)

    async def go() -> dict[str, ProbeResult]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fleet)) as client:
            endpoints = {"aws": "http://hung.test", "gcp": "http://gcp.test", "azure": "http://azure.test"}
            return await probe_many(client, endpoints, EXPECT, timeout_s=0.5)

    results = asyncio.run(go())
    assert results["aws"].verdict is Verdict.FAIL
    assert "timed out" in results["aws"].reason
    assert results["gcp"].verdict is Verdict.OK
    assert results["azure"].verdict is Verdict.OK


NO_CANARY = Expectation(None, (), (), (), 250)
OWN = {"instances": [[1.0, 2.0]], "labels": ["setosa"], "probabilities": [[0.9, 0.1]]}


@pytest.mark.parametrize(
    ("canary", "verdict", "message"),
    [
        (OWN, Verdict.OK, "ok"),
        (None, Verdict.FAIL, "/v1/model reports none"),
        ({**OWN, "labels": [1]}, Verdict.FAIL, "not rows of numbers and labels"),
        ({**OWN, "instances": [[None, 2.0]]}, Verdict.FAIL, "not rows of numbers and labels"),
        # A columns model's canary: objects keyed by column (numbers, text, null for missing).
        ({**OWN, "instances": [{"age": 41, "region": "EU", "plan": None}]}, Verdict.OK, "ok"),
        ({**OWN, "instances": [{"age": [41]}]}, Verdict.FAIL, "not rows of numbers and labels"),
        ({**OWN, "instances": [{"age": True}]}, Verdict.FAIL, "not rows of numbers and labels"),
        ({**OWN, "instances": [{}]}, Verdict.FAIL, "not rows of numbers and labels"),
        (
            {"instances": [{"age": 1}, [1.0, 2.0]], "labels": ["a", "b"], "probabilities": [[1.0], [1.0]]},
            Verdict.FAIL,
            "not rows of numbers and labels",
        ),
        ({**OWN, "probabilities": []}, Verdict.FAIL, "wrong shape"),
        ({**OWN, "labels": ["versicolor"]}, Verdict.FAIL, "canary labels"),
    ],
)
def test_without_a_known_canary_an_endpoint_replays_its_own(
    canary: object, verdict: Verdict, message: str
) -> None:
    info = {"version": "v7"} if canary is None else {"version": "v7", "canary": canary}
    result = run(endpoint(model=_json(info)), NO_CANARY)
    assert result.verdict is verdict
    assert message in result.reason
    assert result.served_version == "v7"
