"""Conformance with the real clients, each with its defaults: Triton's ``tritonclient.http`` (in the
test environment) and the KServe SDK's ``InferenceRESTClient`` (its own packages, tests/peer_env.py,
driven as a subprocess: tests/serving/kserve_client.py), against a real endpoint process.

Both send binary tensors by default (the binary tensor data extension); tritonclient also asks for
binary outputs by default. Inputs FP32, FP64 and INT64, 1 and 1,000 rows; the answers must equal
the artifact's own ONNX model run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from orchestrator.demo.processes import Endpoint
from orchestrator.training.pipeline import TrainResult
from tests.peer_env import KSERVE_CLIENT, layered
from tests.serving.test_endpoint import reference

ROWS = load_digits().data  # integers 0..16: exact in every datatype below
DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


@pytest.fixture(scope="module")
def triton(endpoint: Endpoint) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(
        url=f"127.0.0.1:{endpoint.port}", connection_timeout=30.0, network_timeout=30.0
    )
    yield client
    client.close()


def test_tritonclient_health_and_readiness(triton, digits_model: TrainResult) -> None:
    name, version = digits_model.manifest.name, digits_model.manifest.version
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(name)
    assert triton.is_model_ready(name, version)
    assert not triton.is_model_ready("nope")
    assert not triton.is_model_ready(name, "v0")


def test_tritonclient_metadata(triton, digits_model: TrainResult) -> None:
    name, version = digits_model.manifest.name, digits_model.manifest.version
    server = triton.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    for meta in (triton.get_model_metadata(name), triton.get_model_metadata(name, version)):
        assert meta["name"] == name
        assert meta["versions"] == [version]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 64]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata("nope")
    assert caught.value.status() == "404"
    assert "unknown model 'nope'" in caught.value.message()


def check(result, digits_model: TrainResult, rows: np.ndarray, outputs=("label", "probabilities")) -> None:
    labels, probabilities = reference(digits_model, rows.astype(np.float64))
    got = result.get_response()
    assert [o["name"] for o in got["outputs"]] == list(outputs)
    if "label" in outputs:
        assert [v.decode() for v in result.as_numpy("label").tolist()] == labels
    if "probabilities" in outputs:
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-12)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@pytest.mark.parametrize("n", [1, 1000])
def test_tritonclient_infer_with_its_defaults(
    triton, digits_model: TrainResult, datatype: str, n: int
) -> None:
    x = ROWS[:n].astype(DATATYPES[datatype])
    tensor = httpclient.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)  # binary, the default
    result = triton.infer(digits_model.manifest.name, [tensor])  # binary outputs, the default
    check(result, digits_model, x)
    assert result.get_response()["outputs"][1]["parameters"]["binary_data_size"] == n * 10 * 8


def test_tritonclient_json_both_ways_with_a_version_id_and_one_output(
    triton, digits_model: TrainResult
) -> None:
    x = ROWS[:5]
    tensor = httpclient.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = triton.infer(
        digits_model.manifest.name,
        [tensor],
        model_version=digits_model.manifest.version,
        request_id="req-1",
        outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)],
    )
    check(result, digits_model, x, outputs=("probabilities",))
    response = result.get_response()
    assert response["id"] == "req-1"
    assert "data" in response["outputs"][0]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests_and_responses(
    triton, digits_model: TrainResult, algorithm: str
) -> None:
    # Content-Encoding on the request body (Inference-Header-Content-Length counts the
    # uncompressed bytes); the response compressed or not, as the client asks.
    x = ROWS[:50].astype(np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = triton.infer(
        digits_model.manifest.name,
        [tensor],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    check(result, digits_model, x)


def test_tritonclient_aio_with_its_defaults_and_gzip(endpoint: Endpoint, digits_model: TrainResult) -> None:
    import asyncio

    import tritonclient.http.aio as aioclient

    x = ROWS[:7].astype(np.float64)

    async def run() -> list:
        client = aioclient.InferenceServerClient(f"127.0.0.1:{endpoint.port}")
        try:
            assert await client.is_model_ready(digits_model.manifest.name, digits_model.manifest.version)
            results = []
            for compression in (None, "gzip"):
                tensor = aioclient.InferInput("input", list(x.shape), "FP64")
                tensor.set_data_from_numpy(x)
                results.append(
                    await client.infer(
                        digits_model.manifest.name, [tensor], request_compression_algorithm=compression
                    )
                )
            return results
        finally:
            await client.close()

    for result in asyncio.run(run()):
        check(result, digits_model, x)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_class_count_gets_the_top_classes(
    triton, digits_model: TrainResult, binary: bool
) -> None:
    # Triton's classification extension: "value:index:label" strings, the k most probable first.
    x = ROWS[:4]
    tensor = httpclient.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    requested = httpclient.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    result = triton.infer(digits_model.manifest.name, [tensor], outputs=[requested])
    _, probabilities = reference(digits_model, x)
    classes = digits_model.manifest.classes
    got = result.as_numpy("probabilities")
    assert got.shape == (4, 3)
    for row, expected in zip(got.tolist(), np.asarray(probabilities), strict=True):
        top = np.argsort(-expected, kind="stable")[:3]
        assert [v.decode() if isinstance(v, bytes) else v for v in row] == [
            f"{expected[i]:f}:{i}:{classes[i]}" for i in top
        ]


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda: httpclient.InferInput("input", [1, 3], "FP64"), "422", "expects 64"),
        (lambda: httpclient.InferInput("nope", [1, 64], "FP64"), "422", "unknown input 'nope'"),
    ],
)
def test_tritonclient_sees_the_protocols_errors(
    triton, digits_model: TrainResult, make, status, message
) -> None:
    tensor = make()
    tensor.set_data_from_numpy(np.zeros(tensor.shape(), dtype=np.float64))
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(digits_model.manifest.name, [tensor])
    assert caught.value.status() == status
    assert message in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("nope", [tensor])
    assert caught.value.status() == "404"


# --- the KServe SDK ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kserve_answers(endpoint: Endpoint, digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory):
    packages = layered("kserve-client", KSERVE_CLIENT)
    rows = tmp_path_factory.mktemp("kserve") / "rows.npy"
    np.save(rows, ROWS[:1000])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(Path.cwd())])}
    script = Path(__file__).with_name("kserve_client.py")
    done = subprocess.run(
        [sys.executable, str(script), endpoint.url, digits_model.manifest.name, str(rows)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kserve_sdk_health(kserve_answers) -> None:
    assert kserve_answers["server_ready"] is True
    assert kserve_answers["server_live"] is True
    assert kserve_answers["model_ready"] is True
    assert kserve_answers["unknown_model_ready"] is False


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@pytest.mark.parametrize("n", [1, 1000])
def test_kserve_sdk_infer_with_its_defaults(kserve_answers, digits_model: TrainResult, datatype, n) -> None:
    answer = kserve_answers[f"binary {datatype} {n}"]
    labels, probabilities = reference(digits_model, ROWS[:n])
    assert answer["model_name"] == digits_model.manifest.name
    assert answer["id"] == f"k-{datatype}-{n}"
    assert answer["outputs"]["label"]["data"] == labels
    np.testing.assert_allclose(answer["outputs"]["probabilities"]["data"], probabilities, rtol=0, atol=1e-12)


def test_kserve_sdk_json_and_binary_outputs(kserve_answers, digits_model: TrainResult) -> None:
    labels, probabilities = reference(digits_model, ROWS[:3])
    as_json = kserve_answers["json FP64 3"]
    assert as_json["outputs"]["label"]["data"] == labels
    np.testing.assert_allclose(as_json["outputs"]["probabilities"]["data"], probabilities, rtol=0, atol=1e-12)
    assert list(kserve_answers["binary label only"]["outputs"]) == ["label"]
    assert kserve_answers["binary label only"]["outputs"]["label"]["data"] == labels


def test_kserve_sdk_sees_the_servers_message(kserve_answers) -> None:
    assert "expects 64" in kserve_answers["wrong width"]
    assert "422" in kserve_answers["wrong width"]
