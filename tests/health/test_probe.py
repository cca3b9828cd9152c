"""What one probe concludes from what an endpoint answers (httpx MockTransport: no sockets)."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.health.probe import Expectation, probe
from orchestrator.health.state import Verdict

EXPECT = Expectation(
    version="v2",
    instances=[[1.0, 2.0]],
    labels=["setosa"],
    probabilities=[[0.9, 0.1]],
    latency_slo_ms=250,
)


def endpoint(
    *, ready=200, version="v2", labels=("setosa",), proba=((0.9, 0.1),), predict_status=200, delay=0.0
):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(
                ready, json={"ready": ready == 200, "reason": "model refused: model.onnx sha256"}
            )
        if request.url.path == "/v1/model":
            return httpx.Response(200, json={"version": version})
        if request.url.path == "/v1/predict":
            if delay:
                import time

                time.sleep(delay)
            return httpx.Response(
                predict_status, json={"predictions": list(labels), "probabilities": [list(p) for p in proba]}
            )
        return httpx.Response(404)

    return httpx.Client(transport=httpx.MockTransport(handler))


def run(client: httpx.Client, expect: Expectation = EXPECT):
    return probe(client, "aws", "http://aws.test", expect, timeout_s=1, clock=lambda: 1000.0)


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
    late = probe(
        endpoint(version="v1", labels=("versicolor",), proba=((0.2, 0.8),)),
        "aws", "http://aws.test", ROLLING, timeout_s=1, clock=lambda: 1001.0,
    )  # fmt: skip
    assert late.verdict is Verdict.DEGRADED
    assert run(endpoint(version="v0"), ROLLING).verdict is Verdict.DEGRADED


def test_any_version_is_fine_when_none_is_expected() -> None:
    expect = Expectation(None, EXPECT.instances, EXPECT.labels, EXPECT.probabilities, 250)
    assert run(endpoint(version="v9"), expect).verdict is Verdict.OK


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": ("virginica",)}, "canary labels"),
        ({"proba": ((0.9 + 2e-6, 0.1),)}, "differ from the manifest's by"),
        ({"proba": ((0.9,),)}, "wrong shape"),
        ({"predict_status": 500}, "answered 500"),
    ],
)
def test_a_wrong_answer_is_a_failure(kwargs: dict, message: str) -> None:
    result = run(endpoint(**kwargs))
    assert result.verdict is Verdict.FAIL
    assert message in result.reason


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

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    down = run(httpx.Client(transport=httpx.MockTransport(refuse)))
    assert down.verdict is Verdict.FAIL
    assert "unreachable" in down.reason
    assert not down.not_ready
    frozen = run(httpx.Client(transport=httpx.MockTransport(hang)))
    assert frozen.verdict is Verdict.FAIL
    assert "timed out after 1 s" in frozen.reason
