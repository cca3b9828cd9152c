"""Open Inference Protocol (KServe V2) REST: the same model under the standard paths, so existing
KServe and Triton clients (``tritonclient.http``, the KServe SDK) work unchanged, with their
defaults.

- ``GET  /v2``                                                   server metadata
- ``GET  /v2/health/live``, ``/v2/health/ready``                 server liveness and readiness
- ``GET  /v2/models/{name}[/versions/{version}]``                model metadata (inputs, outputs)
- ``GET  /v2/models/{name}[/versions/{version}]/ready``          model readiness
- ``POST /v2/models/{name}[/versions/{version}]/infer``          inference, JSON or with the binary
                                                                 tensor data extension (both ways)

Inputs and outputs: :mod:`serving.v2_inputs`; tensors and the binary extension:
:mod:`serving.tensors`. The unversioned model routes also accept ``?version=``. A name or version
this endpoint does not serve is 404 naming what it serves; while no model is loaded the model routes
answer 503. Every error is ``{"error": message}`` (``application/json``).
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import __version__
from serving.inputs import InputError, shown
from serving.model import Predictor
from serving.runtime import (
    ASGIEndpoint,
    Runtime,
    decode_body,
    error_response,
    is_canary,
    json_response,
    read_body,
)
from serving.tensors import BINARY_HEADER, encode_bytes, encode_response
from serving.v2_inputs import (
    INPUT_NAME,
    decode_v2_columns_request,
    decode_v2_request,
    requested_outputs,
)

__all__ = ["SERVER_NAME", "add_v2_routes", "infer_response", "model_metadata"]

SERVER_NAME = "ml-orchestrator"
# The protocol extensions this server implements, as Triton names them in server metadata.
EXTENSIONS = ["binary_tensor_data"]


def model_metadata(model: Predictor) -> dict[str, Any]:
    """The V2 model metadata: one FP64 ``input`` [rows, features] for a ``matrix`` model (any
    numeric datatype is accepted), one per column for a ``columns`` model (BYTES for a categorical
    column, FP64 for a numeric one, [rows, 1]); outputs ``label`` and ``probabilities``."""
    if model.columns_layout:
        inputs = [
            {"name": c.name, "datatype": "FP64" if c.kind == "numeric" else "BYTES", "shape": [-1, 1]}
            for c in model.manifest.features.columns
        ]
    else:
        inputs = [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, model.n_features]}]
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)]},
        ],
        "parameters": {"classes": model.manifest.classes, "features": model.manifest.features.names},
    }


@functools.lru_cache(maxsize=8)  # the model served, and the one before it during a reload
def _class_bytes(classes: tuple[str, ...]) -> tuple[bytes, ...]:
    """Each class name as one element of a binary BYTES tensor (length prefix, UTF-8)."""
    return tuple(encode_bytes([c.encode()]) for c in classes)


def infer_response(
    model: Predictor,
    request_id: str | None,
    outputs: Any,
    labels: np.ndarray[Any, Any],
    probabilities: np.ndarray[Any, Any],
) -> Response:
    """The infer response: the requested ``outputs`` in order, each JSON or binary as asked; the
    body is binary (``application/octet-stream`` with ``Inference-Header-Content-Length``) only
    when some output is."""
    head: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        head["id"] = request_id
    encoded: list[tuple[dict[str, Any], Any, bytes | None]] = []
    for output in outputs:
        if output.name == "label":
            meta = {"name": "label", "datatype": "BYTES", "shape": [len(labels)]}
            if output.binary:
                table = _class_bytes(tuple(model.manifest.classes))
                encoded.append((meta, None, b"".join([table[i] for i in labels.tolist()])))
            else:
                encoded.append((meta, model.classes[labels].tolist(), None))
        elif output.classification:
            encoded.append(_classified(model, probabilities, output.classification, output.binary))
        else:
            meta = {"name": "probabilities", "datatype": "FP64", "shape": list(probabilities.shape)}
            if output.binary:
                encoded.append((meta, None, np.ascontiguousarray(probabilities, dtype="<f8").tobytes()))
            else:
                encoded.append((meta, probabilities.ravel(), None))
    body, header_length = encode_response(head, encoded)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


def _classified(
    model: Predictor, probabilities: np.ndarray[Any, Any], k: int, binary: bool
) -> tuple[dict[str, Any], Any, bytes | None]:
    """The ``probabilities`` output classified (Triton's classification extension, as its
    ``class_count``): per row, the ``k`` most probable classes (at most all of them), most probable
    first (ties by class order), each ``"probability:index:label"`` with the probability printed as
    C++'s ``std::to_string`` prints it (six decimals, what Triton sends); BYTES ``[rows, k]``."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    classes = model.manifest.classes
    rows = zip(top.tolist(), probabilities.tolist(), strict=True)
    values = [f"{p_row[i]:f}:{i}:{classes[i]}" for row, p_row in rows for i in row]
    meta = {"name": "probabilities", "datatype": "BYTES", "shape": [len(probabilities), k]}
    if binary:
        return meta, None, encode_bytes([v.encode() for v in values])
    return meta, values, None


def _query_version(scope: Any) -> str | None:
    """``?version=`` on the unversioned routes (accepted since the first V2 routes)."""
    query = scope.get("query_string", b"")
    if not query:
        return None
    values = parse_qs(query.decode("latin-1")).get("version")
    return values[0] if values else None


def add_v2_routes(app: FastAPI, rt: Runtime) -> None:
    """Add the Open Inference Protocol routes to ``app``.

    The handlers read ``name`` and ``version`` from the request rather than declaring them as
    arguments: for a declared argument FastAPI imports ``pydantic.v1`` (to refuse v1 models) and
    builds a validator, ~15 ms of the container's cold start for strings that need no validation.
    The routes are documented in :mod:`serving.openapi`.
    """

    def v2_model(name: str, version: str | None = None) -> Predictor:
        model = rt.model()
        if name != model.name:
            raise InputError(f"unknown model {shown(name)}; this endpoint serves {model.name!r}", 404)
        if version is not None and version != model.version:
            raise InputError(
                f"model {shown(name)} has no version {shown(version)}; serving {model.version!r}", 404
            )
        return model

    def path_model(request: Request) -> Predictor:
        params = request.path_params
        return v2_model(params["name"], params.get("version", _query_version(request.scope)))

    @app.get("/v2")
    async def v2_server() -> Response:
        return json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        ready = rt.holder.current is not None
        return json_response({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_metadata(request: Request) -> Response:
        return json_response(model_metadata(path_model(request)))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(request: Request) -> Response:
        model = path_model(request)  # 404 for a model or version not served, 503 while loading
        return json_response({"name": model.name, "ready": True})

    async def infer(scope: Any, receive: Any, send: Any) -> None:
        # A bare ASGI endpoint, like /v1/predict: the hot path skips FastAPI's per-request machinery.
        try:
            chunks = await read_body(scope, receive)
            params = scope["path_params"]
            model = v2_model(params["name"], params.get("version", _query_version(scope)))
            header = next((value for key, value in scope["headers"] if key == BINARY_HEADER), None)
            x: Any
            if model.columns_layout:
                columns = model.manifest.features.columns
                x, request = await decode_body(_columns_decoder(header), chunks, columns)
            else:
                x, request = await decode_body(_matrix_decoder(header), chunks, model.n_features)
            labels, probabilities = await rt.predict(model, x, monitored=not is_canary(scope))
            response = infer_response(model, request.id, requested_outputs(request), labels, probabilities)
        except InputError as exc:
            response = error_response(str(exc), exc.status)
        await response(scope, receive, send)

    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        app.router.routes.append(Route(path, ASGIEndpoint(path, infer), methods=["POST"]))


def _matrix_decoder(header: bytes | None) -> Any:
    if header is None:
        return decode_v2_request
    return lambda body, width: decode_v2_request(body, width, header)


def _columns_decoder(header: bytes | None) -> Any:
    if header is None:
        return decode_v2_columns_request
    return lambda body, columns: decode_v2_columns_request(body, columns, header)
