"""The Open Inference Protocol (KServe V2) REST surface and KServe V1, as raw HTTP against a real
endpoint process: every route a client probes, with and without version; errors in the protocol's
``{"error": ...}`` shape on every route, unknown routes and methods included; binary tensors both ways
whatever the Content-Type; requested outputs; KServe V1 predict equal to /v1/predict.
"""

from __future__ import annotations

import gzip
import json
import struct

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from orchestrator.demo.processes import Endpoint
from orchestrator.training.pipeline import TrainResult
from tests.serving.test_endpoint import reference
from tests.serving.test_tensors import NUMPY  # the protocol's table, written out once for the tests

ROWS = load_digits().data


@pytest.fixture(scope="module")
def client(endpoint: Endpoint) -> httpx.Client:
    with httpx.Client(base_url=endpoint.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def names(digits_model: TrainResult) -> dict[str, str]:
    return {"name": digits_model.manifest.name, "version": digits_model.manifest.version}


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert fragment in body["error"]


def binary_request(x: np.ndarray, datatype: str, **extra: object) -> tuple[bytes, dict[str, str]]:
    raw = x.astype(NUMPY[datatype]).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            **extra,
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def split(response: httpx.Response) -> tuple[dict, bytes]:
    """(JSON header, binary tail) of an infer response, as clients split it."""
    length = response.headers.get("inference-header-content-length")
    if length is None:
        return response.json(), b""
    return json.loads(response.content[: int(length)]), response.content[int(length) :]


def decode_bytes(tail: bytes) -> list[str]:
    out, offset = [], 0
    while offset < len(tail):
        (n,) = struct.unpack_from("<I", tail, offset)
        out.append(tail[offset + 4 : offset + 4 + n].decode())
        offset += 4 + n
    return out


# --- every route a client probes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/health/live", {"live": True}),
        ("/v2/health/ready", {"ready": True}),
        ("/v2/models/{name}/ready", {"name": "{name}", "ready": True}),
        ("/v2/models/{name}/versions/{version}/ready", {"name": "{name}", "ready": True}),
        ("/v2/models/{name}/ready?version={version}", {"name": "{name}", "ready": True}),
        ("/v1/models/{name}", {"name": "{name}", "ready": True}),
    ],
)
def test_health_and_readiness_routes(client, names, path: str, expected: dict) -> None:
    response = client.get(path.format(**names))
    assert response.status_code == 200
    assert response.json() == {k: v.format(**names) if isinstance(v, str) else v for k, v in expected.items()}


def test_server_metadata_lists_the_binary_extension(client) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "ml-orchestrator"
    assert meta["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize(
    "path",
    ["/v2/models/{name}", "/v2/models/{name}/versions/{version}", "/v2/models/{name}?version={version}"],
)
def test_model_metadata_with_and_without_version(client, names, path: str) -> None:
    meta = client.get(path.format(**names)).json()
    assert meta["name"] == names["name"]
    assert meta["versions"] == [names["version"]]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 64]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 10]},
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/{name}/infer?version={version}",
    ],
)
def test_infer_with_and_without_version(client, names, digits_model: TrainResult, path: str) -> None:
    x = ROWS[:2]
    body = {
        "id": "r",
        "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP64", "data": x.tolist()}],
    }
    response = client.post(path.format(**names), json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    got = response.json()
    assert got["model_name"] == names["name"]
    assert got["model_version"] == names["version"]
    assert got["id"] == "r"
    assert got["outputs"][0]["data"] == reference(digits_model, x)[0]


# --- errors in the protocol's shape, everywhere -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "fragment"),
    [
        ("GET", "/v2/models/nope", "unknown model 'nope'"),
        ("GET", "/v2/models/nope/ready", "unknown model 'nope'"),
        ("GET", "/v2/models/nope/versions/{version}/ready", "unknown model 'nope'"),
        ("GET", "/v2/models/{name}/versions/v0/ready", "has no version 'v0'"),
        ("GET", "/v2/models/{name}/ready?version=v0", "has no version 'v0'"),
        ("GET", "/v2/models/{name}/versions/v0", "has no version 'v0'"),
        ("POST", "/v2/models/nope/infer", "unknown model 'nope'"),
        ("POST", "/v2/models/{name}/versions/v0/infer", "has no version 'v0'"),
        ("GET", "/v1/models/nope", "unknown model 'nope'"),
        ("POST", "/v1/models/nope:predict", "unknown model 'nope'"),
    ],
)
def test_an_unknown_model_or_version_is_404_not_503(
    client, names, method: str, path: str, fragment: str
) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
    response = client.request(method, path.format(**names), json=body if method == "POST" else None)
    assert_error(response, 404, fragment)


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/nope", 404, None),
        ("GET", "/v2/nope", 404, None),
        ("POST", "/v1/models", 404, None),
        ("GET", "/v2/models/{name}/infer", 405, "POST"),
        ("GET", "/v1/predict", 405, "POST"),
        ("PUT", "/v1/models/{name}:predict", 405, "POST"),
        ("DELETE", "/v2/models/{name}", 405, "GET"),
        ("POST", "/v2", 405, "GET"),
        ("POST", "/healthz", 405, "GET"),
    ],
)
def test_unknown_routes_and_methods_answer_in_the_protocols_shape(
    client, names, method, path, status, allow
) -> None:
    response = client.request(method, path.format(**names))
    assert_error(response, status, path.format(**names) if status == 404 else method)
    if allow:
        assert allow in response.headers["allow"]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"datatype": "UINT8", "data": [-5] + [0] * 63}, "Expected `int` >= 0 - at `inputs[0].data[0]`"),
        ({"name": "nope"}, "unknown input 'nope'"),
        ({"data": [[0] * 32, [0] * 32], "shape": [2, 32]}, "the model expects 64 features"),
        (
            {"data": [[0] * 64, [0] * 63 + [True]], "shape": [2, 64]},
            "got `bool` - at `inputs[0].data[1][63]`",
        ),
        ({"data": [[0] * 64, [0] * 63], "shape": [2, 64]}, "inputs[0].data[1] has 63 elements"),
        ({"datatype": "FP16", "data": [70000] + [0] * 63}, "largest finite value is 65504"),
    ],
)
def test_strict_tensors_over_http(client, names, tensor: dict, fragment: str) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64, **tensor}]}
    assert_error(client.post("/v2/models/{name}/infer".format(**names), json=body), 422, fragment)


def test_requested_outputs_are_returned_and_only_they(client, names, digits_model: TrainResult) -> None:
    x = ROWS[:3]
    tensor = {"name": "input", "shape": [3, 64], "datatype": "FP64", "data": x.ravel().tolist()}
    url = "/v2/models/{name}/infer".format(**names)
    only = client.post(url, json={"inputs": [tensor], "outputs": [{"name": "probabilities"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(
        np.reshape(only["outputs"][0]["data"], (3, 10)), reference(digits_model, x)[1], rtol=0, atol=1e-12
    )
    reversed_ = client.post(
        url, json={"inputs": [tensor], "outputs": [{"name": "probabilities"}, {"name": "label"}]}
    )
    assert [o["name"] for o in reversed_.json()["outputs"]] == ["probabilities", "label"]
    assert_error(
        client.post(url, json={"inputs": [tensor], "outputs": [{"name": "logits"}]}), 422, "'logits'"
    )


# --- binary tensors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(NUMPY))
@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
def test_binary_requests_and_responses_for_every_datatype(
    client, names, digits_model: TrainResult, datatype: str, content_type: str | None
) -> None:
    """Decided by Inference-Header-Content-Length alone: tritonclient's sync client sends no
    Content-Type, its aio client and the KServe SDK send application/octet-stream."""
    x = ROWS[:5]
    body, headers = binary_request(x, datatype, parameters={"binary_data_output": True})
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v2/models/{name}/infer".format(**names), content=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/octet-stream"
    head, tail = split(response)
    label, proba = head["outputs"]
    labels, probabilities = reference(digits_model, x)
    assert "data" not in label
    assert "data" not in proba
    assert decode_bytes(tail[: label["parameters"]["binary_data_size"]]) == labels
    got = np.frombuffer(tail[label["parameters"]["binary_data_size"] :], dtype="<f8").reshape(proba["shape"])
    assert proba["parameters"]["binary_data_size"] == 5 * 10 * 8
    np.testing.assert_allclose(got, probabilities, rtol=0, atol=1e-12)


def test_a_binary_request_gets_json_outputs_unless_it_asks(client, names, digits_model: TrainResult) -> None:
    x = ROWS[:2]
    url = "/v2/models/{name}/infer".format(**names)
    body, headers = binary_request(x, "FP64")
    plain = client.post(url, content=body, headers=headers)
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    assert plain.json()["outputs"][0]["data"] == reference(digits_model, x)[0]
    body, headers = binary_request(
        x, "FP64", outputs=[{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]
    )
    head, tail = split(client.post(url, content=body, headers=headers))
    assert head["outputs"][0]["data"] == reference(digits_model, x)[0]  # label stays JSON
    assert len(tail) == head["outputs"][1]["parameters"]["binary_data_size"] == 2 * 10 * 8


def test_a_binary_body_without_the_header_is_a_400_that_says_so(client, names) -> None:
    body, _ = binary_request(ROWS[:1], "FP64")
    response = client.post("/v2/models/{name}/infer".format(**names), content=body)
    assert_error(response, 400, "needs the Inference-Header-Content-Length header")


# --- KServe V1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_kserve_v1_predict_answers_as_v1_predict(client, names, key: str) -> None:
    rows = ROWS[:4].tolist()
    ours = client.post("/v1/predict", json={"instances": rows})
    kserve = client.post("/v1/models/{name}:predict".format(**names), json={key: rows})
    assert kserve.status_code == 200, kserve.text
    assert kserve.json() == ours.json()
    assert kserve.json()["predictions"] == ours.json()["predictions"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"instances": [[0.0] * 64], "inputs": [[0.0] * 64]}, 422, "not both"),
        ({"inputs": [[0.0] * 3]}, 422, "expects 64"),
        ({"rows": [[0.0] * 64]}, 422, "instances"),
        # Rows sent as "inputs" are named "inputs" in the refusal, not "instances".
        ({"inputs": None}, 422, "`$.inputs`"),
        ({"inputs": [[0.0] * 64, [0.0] * 63 + [True]]}, 422, "`$.inputs[1][63]`"),
        ({"inputs": [[0.0] * 64, [0.0] * 63 + ["1"]]}, 422, "`$.inputs[1][63]`"),
        ({"inputs": []}, 422, "inputs"),
    ],
)
def test_kserve_v1_errors(client, names, body: dict, status: int, fragment: str) -> None:
    assert_error(client.post("/v1/models/{name}:predict".format(**names), json=body), status, fragment)


def test_latency_is_labelled_by_route_and_status(client, names) -> None:
    client.post("/v2/models/{name}/infer".format(**names), json={"inputs": []})
    text = client.get("/metrics").text
    assert (
        'mlorch_http_request_duration_seconds_count{endpoint="/v2/models/{name}/infer",method="POST",status="422"}'
        in text
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/predict/"),
        ("GET", "/v2/health/live/"),
        ("GET", "/v2/models/{name}/ready/"),
        ("POST", "/v2/models/{name}/infer/"),
    ],
)
def test_a_trailing_slash_is_a_404_in_the_protocols_shape_not_a_redirect(client, names, method, path) -> None:
    # A redirect names this process's own scheme and host: behind a TLS-terminating load balancer
    # it would send the client to plain http.
    response = client.request(method, path.format(**names), json={})
    assert_error(response, 404, "without the trailing slash")


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/models/{name}:predict", "/v2/models/{name}/infer"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP", "identity"])
def test_request_bodies_may_be_compressed(client, names, path: str, encoding: str) -> None:
    import zlib

    if "/v2/" in path:
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
    else:
        body = {"instances": [[0] * 64]}
    raw = json.dumps(body).encode()
    sent = {"gzip": gzip.compress, "deflate": zlib.compress}.get(encoding.lower(), lambda b: b)(raw)
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    plain = client.post(path.format(**names), content=raw)
    response = client.post(path.format(**names), content=sent, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()


@pytest.mark.parametrize(
    ("encoding", "body", "status", "fragment"),
    [
        ("br", b"{}", 415, "Content-Encoding 'br' is not supported"),
        ("gzip, br", b"{}", 415, "Content-Encoding 'gzip, br' is not supported"),
        ("gzip", b"not gzip at all", 400, "is not valid gzip"),
        ("deflate", b"not deflate", 400, "is not valid deflate"),
        # 8 MiB of zeros in 8 KiB: the endpoint's limit (1 MiB) applies to what it inflates to.
        ("gzip", gzip.compress(b"0" * (8 << 20)), 413, "exceeds the limit"),
    ],
)
def test_compressed_bodies_that_cannot_be_taken_are_refused(client, encoding, body, status, fragment) -> None:
    response = client.post("/v1/predict", content=body, headers={"Content-Encoding": encoding})
    assert_error(response, status, fragment)
