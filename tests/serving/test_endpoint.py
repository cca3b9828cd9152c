"""The endpoint as a client sees it: a real `orchestrator serve` process on a loopback port."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from orchestrator.demo.processes import Endpoint
from orchestrator.training.pipeline import TrainResult
from tests.serving.conftest import StartEndpoint

ROWS = load_digits().data


@pytest.fixture(scope="module")
def client(endpoint: Endpoint) -> httpx.Client:
    with httpx.Client(base_url=endpoint.url, timeout=10) as c:
        yield c


def reference(model: TrainResult, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
    """What the artifact's own ONNX model says, computed in this process."""
    session = ort.InferenceSession(str(model.path / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows})
    return [model.manifest.classes[i] for i in labels], probabilities


def test_predictions_equal_the_models(client: httpx.Client, digits_model: TrainResult) -> None:
    rows = ROWS[:50]
    response = client.post("/v1/predict", json={"instances": rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    labels, probabilities = reference(digits_model, rows)
    assert body["model"] == digits_model.manifest.name
    assert body["version"] == digits_model.manifest.version
    assert body["classes"] == digits_model.manifest.classes
    assert body["predictions"] == labels
    np.testing.assert_allclose(body["probabilities"], probabilities, rtol=0, atol=1e-12)


def test_concurrent_one_row_requests_each_get_their_own_answer(
    endpoint: Endpoint, digits_model: TrainResult
) -> None:
    """Concurrent small requests are batched into one model call; each must still get its own rows."""
    import asyncio

    rows = ROWS[:40]
    labels, probabilities = reference(digits_model, rows)

    async def fire() -> list[dict]:
        async with httpx.AsyncClient(base_url=endpoint.url, timeout=10) as c:
            responses = await asyncio.gather(
                *(c.post("/v1/predict", json={"instances": [row.tolist()]}) for row in rows)
            )
        return [r.json() for r in responses]

    bodies = asyncio.run(fire())
    assert [b["predictions"][0] for b in bodies] == labels
    for body, expected in zip(bodies, probabilities, strict=True):
        np.testing.assert_allclose(body["probabilities"][0], expected, rtol=0, atol=1e-12)


def test_canary_rows_reproduce_the_manifest(client: httpx.Client, digits_model: TrainResult) -> None:
    canary = digits_model.manifest.canary
    body = client.post("/v1/predict", json={"instances": canary.instances}).json()
    assert body["predictions"] == canary.labels
    np.testing.assert_allclose(body["probabilities"], canary.probabilities, rtol=0, atol=1e-6)


def test_health_and_model_metadata(client: httpx.Client, digits_model: TrainResult) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["version"] == digits_model.manifest.version
    info = client.get("/v1/model").json()
    assert info["version"] == digits_model.manifest.version
    assert info["features"]["count"] == 64
    assert info["metrics"]["f1_macro"] == digits_model.manifest.metrics["f1_macro"]
    assert "test_indices" not in info["split"], "per-row split details are not part of the public metadata"


def test_v2_protocol_shapes(client: httpx.Client, digits_model: TrainResult) -> None:
    name, version = digits_model.manifest.name, digits_model.manifest.version
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name
    assert meta["versions"] == [version]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 64]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]

    rows = ROWS[:3]
    labels, probabilities = reference(digits_model, rows)
    for data in (rows.ravel().tolist(), rows.tolist()):  # flat and nested data are both valid V2
        response = client.post(
            f"/v2/models/{name}/infer",
            json={
                "id": "req-1",
                "inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "data": data}],
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_name"] == name
        assert body["model_version"] == version
        assert body["id"] == "req-1"
        label, proba = body["outputs"]
        assert label == {"name": "label", "datatype": "BYTES", "shape": [3], "data": labels}
        assert proba["name"] == "probabilities"
        assert proba["shape"] == [3, 10]
        assert proba["datatype"] == "FP64"
        np.testing.assert_allclose(np.reshape(proba["data"], (3, 10)), probabilities, atol=1e-12)

    versioned = client.post(
        f"/v2/models/{name}/versions/{version}/infer",
        json={"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": rows[0].tolist()}]},
    )
    assert versioned.status_code == 200


BAD_V1 = [
    # (description, raw body, expected status, text the message must contain)
    ("wrong feature count", json.dumps({"instances": [[1.0, 2.0]]}), 422, "expects 64"),
    ("ragged rows", json.dumps({"instances": [[0.0] * 64, [0.0] * 63]}), 422, "row 1 has 63 features"),
    ("strings", json.dumps({"instances": [["a"] * 64]}), 422, "got `str`"),
    ("null value", json.dumps({"instances": [[None] + [0.0] * 63]}), 422, "got `null`"),
    ("boolean", json.dumps({"instances": [[True] + [0.0] * 63]}), 422, "got `bool`"),
    ("NaN literal", '{"instances": [[NaN' + ", 0" * 63 + "]]}", 400, "not valid JSON"),
    ("infinity by overflow", '{"instances": [[1e400' + ", 0" * 63 + "]]}", 422, "out of range"),
    ("empty list", json.dumps({"instances": []}), 422, "empty"),
    ("missing field", json.dumps({"rows": [[0.0] * 64]}), 422, "instances"),
    ("not an object", json.dumps([[0.0] * 64]), 422, "object"),
    ("broken JSON", '{"instances": [[1, 2', 400, "not valid JSON"),
    ("empty body", "", 400, "empty"),
    ("too many rows", json.dumps({"instances": [[0]] * 10_001}), 413, "at most 10000"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_V1, ids=[c[0] for c in BAD_V1])
def test_bad_input_is_a_4xx_with_a_message(
    client: httpx.Client, case: str, body: str, status: int, message: str
) -> None:
    response = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, f"{case}: {response.text}"
    assert message in response.json()["error"], response.text


def test_oversized_body_is_refused_before_it_is_read(client: httpx.Client) -> None:
    big = json.dumps({"instances": [[0.5] * 64] * 9000})  # ~2 MB against the fixture's 1 MiB limit
    response = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while streaming too
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536].encode()

    streamed = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


BAD_V2 = [
    ("unknown model", "/v2/models/nope/infer", {"inputs": []}, 404, "unknown model"),
    ("unknown version", "/v2/models/{name}/versions/v0/infer", {"inputs": []}, 404, "no version"),
    ("no inputs", "/v2/models/{name}/infer", {"inputs": []}, 422, "exactly one tensor"),
    (
        "bad datatype",
        "/v2/models/{name}/infer",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "BYTES", "data": ["a"] * 64}]},
        422,
        "datatype",
    ),
    (
        "shape mismatch",
        "/v2/models/{name}/infer",
        {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0.0] * 64}]},
        422,
        "needs 128",
    ),
    (
        "wrong width",
        "/v2/models/{name}/infer",
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.0] * 3}]},
        422,
        "expects 64",
    ),
]


@pytest.mark.parametrize(("case", "path", "payload", "status", "message"), BAD_V2, ids=[c[0] for c in BAD_V2])
def test_bad_v2_requests(
    client: httpx.Client,
    digits_model: TrainResult,
    case: str,
    path: str,
    payload: dict,
    status: int,
    message: str,
) -> None:
    response = client.post(path.format(name=digits_model.manifest.name), json=payload)
    assert response.status_code == status, f"{case}: {response.text}"
    assert message in response.json()["error"]


def test_unknown_model_metadata_is_404(client: httpx.Client) -> None:
    assert client.get("/v2/models/nope").status_code == 404


def test_prometheus_metrics(client: httpx.Client, digits_model: TrainResult) -> None:
    client.post("/v1/predict", json={"instances": ROWS[:5].tolist()})
    client.post("/v1/predict", json={"instances": [[1.0]]})
    text = client.get("/metrics").text
    name, version = digits_model.manifest.name, digits_model.manifest.version
    assert 'mlorch_http_requests_total{endpoint="/v1/predict",method="POST",status="200"}' in text
    assert 'mlorch_http_requests_total{endpoint="/v1/predict",method="POST",status="422"}' in text
    assert (
        'mlorch_http_request_duration_seconds_bucket{endpoint="/v1/predict",le="0.005",method="POST",status="200"}'
        in text
    )
    assert (
        'mlorch_http_request_duration_seconds_count{endpoint="/v1/predict",method="POST",status="422"}'
        in text
    )
    assert f'mlorch_model_info{{model="{name}",version="{version}"}} 1.0' in text
    assert 'mlorch_model_predictions_total{class_="0",model="' in text
    assert "mlorch_model_ready 1.0" in text
    # Model time and queue time apart (both counted once per request here: no concurrency).
    assert re.search(r"^mlorch_model_inference_duration_seconds_count [1-9]", text, re.M)
    assert re.search(r"^mlorch_model_queue_duration_seconds_count [1-9]", text, re.M)
    # The process's own metrics, under their standard names; every other metric under one prefix.
    for standard in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info{"):
        assert standard in text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    ours = {n for n in names if not n.startswith(("process_", "python_"))}
    assert ours
    assert all(n.startswith("mlorch_") for n in ours), sorted(ours)
    client.get("/no/such/path")
    assert 'endpoint="unmatched"' in client.get("/metrics").text, "unknown paths share one label"


def test_one_json_log_line_per_request_without_payloads(client: httpx.Client, endpoint: Endpoint) -> None:
    marker = 1234.5678  # a feature value that must never reach the log
    client.post("/v1/predict", json={"instances": [[marker] * 64]})
    time.sleep(0.2)
    assert endpoint.process.log_path is not None
    log = endpoint.process.log_path.read_text()
    assert str(marker) not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    last = [r for r in requests if r["path"] == "/v1/predict"][-1]
    assert last["status"] == 200
    assert last["method"] == "POST"
    assert last["latency_ms"] > 0


def test_tampered_artifact_is_never_ready(serve_artifact: StartEndpoint, artifact_copy: Path) -> None:
    model_file = artifact_copy / "model.onnx"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))

    ep = serve_artifact(artifact_copy)
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=ep.url, timeout=2) as c:
        while True:
            try:
                ready = c.get("/readyz")
                if ready.json()["reason"] != "model is loading":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "endpoint never settled"
            time.sleep(0.1)
        assert ready.status_code == 503
        assert "model.onnx" in ready.json()["reason"]
        assert "sha256" in ready.json()["reason"]
        assert c.get("/healthz").status_code == 200, "liveness is not readiness"
        predict = c.post("/v1/predict", json={"instances": [[0.0] * 64]})
        assert predict.status_code == 503
        assert "not ready" in predict.json()["error"]
        assert c.get("/v2/health/ready").status_code == 503
        # Counted once by reason, not again at every retry of the same unchanged content.
        assert 'mlorch_model_load_failures_total{reason="artifact"} 1.0' in c.get("/metrics").text
