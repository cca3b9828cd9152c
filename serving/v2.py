"""Open Inference Protocol (KServe V2) REST: the same model under the standard paths, so existing
KServe and Triton clients work unchanged.

- ``GET  /v2``                                            server metadata
- ``GET  /v2/health/live``, ``/v2/health/ready``          server liveness and readiness
- ``GET  /v2/models/{name}[/versions/{version}]``         model metadata (inputs, outputs, classes)
- ``GET  /v2/models/{name}/ready``                        model readiness
- ``POST /v2/models/{name}[/versions/{version}]/infer``   inference: one FP64 input ``[rows, features]``
                                                          (a ``columns`` model: one input per column,
                                                          named by it, BYTES for text);
                                                          outputs ``label`` (BYTES) and ``probabilities``

The unversioned model routes also accept ``?version=``. A name or version this endpoint does not
serve is 404, naming what it serves.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from orchestrator import __version__
from serving.columns import decode_v2_columns_request
from serving.inputs import InputError, decode_v2_request, shown
from serving.model import Predictor
from serving.runtime import Runtime, decode_body, json_response

__all__ = ["add_v2_routes"]


def _parameters(*path: str, query_version: bool = False) -> dict[str, Any]:
    """The OpenAPI parameters of a V2 route, as FastAPI documented them when they were handler
    arguments (they are read from the request instead: see :func:`add_v2_routes`)."""
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "title": n.title()}}
        for n in path
    ]
    if query_version:
        params.append(
            {
                "name": "version",
                "in": "query",
                "required": False,
                "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Version"},
            }
        )
    return {"parameters": params}


def _inputs(model: Predictor) -> list[dict[str, Any]]:
    """The V2 inputs a client sends: one FP64 ``input`` [rows, features] for a ``matrix`` model, one
    per column (named by the column, BYTES for categorical, FP64 for numeric, [rows, 1]) for a
    ``columns`` model."""
    if not model.columns_layout:
        return [{"name": "input", "datatype": "FP64", "shape": [-1, model.n_features]}]
    return [
        {"name": c.name, "datatype": "FP64" if c.kind == "numeric" else "BYTES", "shape": [-1, 1]}
        for c in model.manifest.features.columns
    ]


def _version(request: Request) -> str | None:
    # A path segment on the versioned routes; on the others the optional `?version=` these routes
    # have always accepted.
    version: str | None = request.path_params.get("version", request.query_params.get("version"))
    return version


def add_v2_routes(app: FastAPI, rt: Runtime) -> None:
    """Add the Open Inference Protocol routes to ``app``.

    The handlers read ``name`` and ``version`` from the request rather than declaring them as
    arguments: for a declared argument FastAPI imports ``pydantic.v1`` (to refuse v1 models) and
    builds a validator, ~15 ms of the container's cold start for strings that need no validation.
    ``openapi_extra`` documents them as before.
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

    @app.get("/v2")
    async def v2_server() -> Response:
        return json_response({"name": "ml-orchestrator", "version": __version__, "extensions": []})

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        ready = rt.holder.current is not None
        return json_response({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}", openapi_extra=_parameters("name", query_version=True))
    @app.get("/v2/models/{name}/versions/{version}", openapi_extra=_parameters("name", "version"))
    async def v2_metadata(request: Request) -> Response:
        model = v2_model(request.path_params["name"], _version(request))
        return json_response(
            {
                "name": model.name,
                "versions": [model.version],
                "platform": "onnxruntime_onnx",
                "inputs": _inputs(model),
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)]},
                ],
                "parameters": {"classes": model.manifest.classes, "features": model.manifest.features.names},
            }
        )

    @app.get("/v2/models/{name}/ready", openapi_extra=_parameters("name"))
    async def v2_model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        model = rt.holder.current
        ready = model is not None and model.name == name
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    @app.post("/v2/models/{name}/infer", openapi_extra=_parameters("name", query_version=True))
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_parameters("name", "version"))
    async def v2_infer(request: Request) -> Response:
        chunks = [chunk async for chunk in request.stream()]
        model = v2_model(request.path_params["name"], _version(request))
        x: Any
        if model.columns_layout:
            columns = model.manifest.features.columns
            x, request_id = await decode_body(decode_v2_columns_request, chunks, columns)
        else:
            x, request_id = await decode_body(decode_v2_request, chunks, model.n_features)
        labels, probabilities = await rt.predict(model, x)
        body: dict[str, Any] = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": [
                {
                    "name": "label",
                    "datatype": "BYTES",
                    "shape": [len(x)],
                    "data": model.classes[labels].tolist(),
                },
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": list(probabilities.shape),
                    "data": probabilities.ravel(),
                },
            ],
        }
        if request_id is not None:
            body["id"] = request_id
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
