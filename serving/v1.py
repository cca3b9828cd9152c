"""The endpoint's own v1 routes, and KServe's V1 protocol on the same model.

- ``POST /v1/predict``                 ``{"instances": [[...]]}`` (rows of numbers; for a ``columns``
                                       model, objects keyed by column: ``[{"age": 41, "region": "EU"}]``)
                                       → the model's name and version, its classes, one label
                                       (``predictions``) and one row of probabilities per instance
- ``GET  /v1/model``                   the manifest's public part (version, metrics, canary), its
                                       source and when it was loaded
- ``GET  /v1/model/drift``             the drift window against the manifest's reference profile
                                       (:mod:`serving.drift`; 404 when monitoring is off)
- ``POST /v1/models/{name}:predict``   KServe V1 predict: ``{"instances": [...]}`` or
                                       ``{"inputs": [...]}`` (the same rows), the same answer as
                                       ``/v1/predict`` (``predictions`` holds the labels, as KServe's
                                       scikit-learn server's ``predict``; ``probabilities`` what its
                                       ``predict_proba`` would give)
- ``GET  /v1/models/{name}``           KServe V1 model readiness: ``{"name", "ready": true}``; 404 for
                                       a model this endpoint does not serve, 503 while loading
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route

from serving.columns import decode_columns_request
from serving.inputs import InputError, decode_predict_request, shown
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

__all__ = ["add_v1_routes"]


class _V1Keys(msgspec.Struct):
    # The two spellings of the rows, left undecoded (the model's decoder checks them).
    instances: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    inputs: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_keys_decoder = msgspec.json.Decoder(_V1Keys)


def _as_instances(body: bytes) -> bytes:
    """A KServe V1 body with its rows under ``inputs`` rewritten as ``{"instances": rows}``; any
    other body unchanged (the decoder then words what is wrong with it). 422 if both are given."""
    if b'"inputs"' not in body:
        return body
    try:
        keys = _keys_decoder.decode(body)
    except Exception:  # not JSON, not an object, nested too deep: the decoder says which
        return body
    if keys.instances and keys.inputs:
        raise InputError('give the rows as "instances" or as "inputs", not both')
    if keys.inputs:
        return b'{"instances":' + bytes(keys.inputs) + b"}"
    return body


def _decode_rows(body: bytes, model: Predictor) -> Any:
    if model.columns_layout:
        return decode_columns_request(body, model.manifest.features.columns)
    return decode_predict_request(body, model.n_features)


def _decode_kserve_rows(body: bytes, model: Predictor) -> Any:
    rows = _as_instances(body)
    if rows is body:
        return _decode_rows(body, model)
    try:
        return _decode_rows(rows, model)
    except InputError as exc:  # the client sent "inputs": its refusal names "inputs"
        raise InputError(str(exc).replace("instances", "inputs"), exc.status) from None


def add_v1_routes(app: FastAPI, rt: Runtime) -> None:
    """Add ``/v1/model``, ``/v1/predict`` and KServe V1's ``/v1/models/{name}[:predict]`` to ``app``."""

    @app.get("/v1/model")
    async def model_info() -> Response:
        model = rt.model()
        return json_response(
            {**model.manifest.public(), "source": model.source, "loaded_at": model.loaded_at}
        )

    @app.get("/v1/model/drift")
    async def model_drift() -> Response:
        model = rt.model()
        monitor = rt.drift(model)
        if monitor is None:
            raise InputError("drift monitoring is off (DRIFT_WINDOW_ROWS=0)", 404)
        return json_response(monitor.report())

    def named_model(name: str) -> Predictor:
        model = rt.model()
        if name != model.name:
            raise InputError(f"unknown model {shown(name)}; this endpoint serves {model.name!r}", 404)
        return model

    @app.get("/v1/models/{name}")
    async def kserve_model_ready(request: Request) -> Response:
        model = named_model(request.path_params["name"])
        return json_response({"name": model.name, "ready": True})

    async def answer(model: Predictor, x: Any, scope: Any) -> Response:
        labels, probabilities = await rt.predict(model, x, monitored=not is_canary(scope))
        return Response(
            orjson.dumps(
                {
                    "model": model.name,
                    "version": model.version,
                    "classes": model.manifest.classes,
                    "predictions": model.classes[labels].tolist(),
                    "probabilities": probabilities,
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
            media_type="application/json",
        )

    async def predict(scope: Any, receive: Any, send: Any) -> None:
        # The hot path, as a bare ASGI endpoint: FastAPI's per-request dependency and response
        # machinery costs more than the prediction itself (measured: ~25 us of ~150 us).
        try:
            chunks = await read_body(scope, receive)
            model = rt.model()
            response = await answer(model, await decode_body(_decode_rows, chunks, model), scope)
        except InputError as exc:
            response = error_response(str(exc), exc.status)
        await response(scope, receive, send)

    async def kserve_predict(scope: Any, receive: Any, send: Any) -> None:
        try:
            chunks = await read_body(scope, receive)
            model = named_model(scope["path_params"]["name"])
            response = await answer(model, await decode_body(_decode_kserve_rows, chunks, model), scope)
        except InputError as exc:
            response = error_response(str(exc), exc.status)
        await response(scope, receive, send)

    # Starlette calls a plain function with a Request; an object with __call__ is called as ASGI.
    app.router.routes.append(Route("/v1/predict", ASGIEndpoint("/v1/predict", predict), methods=["POST"]))
    # Before /v1/models/{name}, which would also match ".../digits:predict" (a PUT there is a 405
    # naming POST, not GET).
    path = "/v1/models/{name}:predict"
    ready = next(i for i, r in enumerate(app.router.routes) if getattr(r, "path", "") == "/v1/models/{name}")
    app.router.routes.insert(ready, Route(path, ASGIEndpoint(path, kserve_predict), methods=["POST"]))
