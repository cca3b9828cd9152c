"""The HTTP endpoint every cloud runs: one verified model, predictions, health and metrics.

Routes:

- ``POST /v1/predict``                       ``{"instances": [[...]]}`` → labels and probabilities
- ``GET  /v1/model``                         the manifest's public part (version, metrics, canary)
- ``GET  /healthz`` / ``GET /readyz``        liveness / readiness (ready = verified model loaded)
- ``GET  /metrics``                          Prometheus
- ``/v2/...``                                Open Inference Protocol (KServe V2) REST, so existing
                                             clients work unchanged

The model is loaded in a background thread after start-up, so liveness answers at once while a large
artifact downloads; readiness turns 200 only when the artifact verified and reproduced its canary.
A reload swaps the model atomically (one attribute assignment) and a refused artifact leaves the
previous model serving. Every error a client can cause is a 4xx JSON ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from orchestrator import __version__
from serving.batching import MicroBatcher
from serving.inputs import InputError, decode_predict_request, decode_v2_request, shown
from serving.model import Predictor, invalid_rows
from serving.protocol import DEFAULT_BODY_TIMEOUT_S, BodyLimitMiddleware
from serving.reload import DEFAULT_RELOAD_TIMEOUT_S, ModelHolder, keep_loaded
from serving.source import Loader
from serving.telemetry import Metrics, TelemetryMiddleware

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

# 10,000 rows x 64 features is ~13 MB of JSON; 32 MiB leaves room and still bounds memory per request.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Requests up to this many rows go through the micro-batcher on the event loop; larger ones run in a
# worker thread so a big batch does not stall health checks (below it the thread hop costs more than
# the prediction itself).
INLINE_ROWS = 64
# Bodies up to this size are decoded on the event loop: a 1,000-row digits request is ~275 kB and
# decodes in ~1 ms, less than what a thread hop and the GIL hand-over cost it; 1 MiB takes ~4 ms,
# well inside the 50 ms probe budget. Larger ones are decoded in a worker thread, so that decoding
# a 30 MiB body never stalls other requests and probes.
INLINE_BODY_BYTES = 1024 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


@dataclass
class _Runtime:
    """What every route needs: the model holder, the batcher and the metrics."""

    holder: ModelHolder
    metrics: Metrics
    batcher: MicroBatcher = field(default_factory=lambda: MicroBatcher(check=_output_error))

    def model(self) -> Predictor:
        model = self.holder.current
        if model is None:
            raise InputError(f"not ready: {self.holder.reason}", 503)
        return model

    async def predict(self, model: Predictor, x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        """Labels and probabilities for ``x``; InputError 422 naming the rows whose outputs are not
        finite (features so large that scaling overflows, such as 1e308): never returned as a
        prediction with null probabilities."""
        if len(x) <= INLINE_ROWS:
            labels, probabilities = await self.batcher.predict(model, x)  # checked per batch
        else:
            labels, probabilities = await run_in_threadpool(model.predict, x)
            if (error := _output_error(model, labels, probabilities)) is not None:
                raise error
        counts = np.bincount(labels, minlength=len(model.classes)).tolist()
        self.metrics.observe_predictions(model.name, model.version, model.manifest.classes, counts)
        return labels, probabilities


def _output_error(
    model: Predictor, labels: np.ndarray[Any, Any], probabilities: np.ndarray[Any, Any]
) -> InputError | None:
    """422 naming the rows whose outputs cannot be returned (not finite: features such as 1e308
    that overflow the model's scaling; or a label outside the classes), else None."""
    bad = invalid_rows(labels, probabilities, len(model.classes))
    if not len(bad):
        return None
    shown = ", ".join(str(i) for i in bad[:5]) + (", …" if len(bad) > 5 else "")
    return InputError(
        f"row {shown}: the model's outputs are not finite ({len(bad)} of {len(labels)} rows); "
        "features this large overflow the model's scaling, keep them well inside ±1e300"
    )


def create_app(
    loader: Loader,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reload_interval_s: float | None = None,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    reload_timeout_s: float = DEFAULT_RELOAD_TIMEOUT_S,
    docs: bool = False,
) -> FastAPI:
    """Build the endpoint around ``loader``, which returns a verified model or raises.

    ``reload_timeout_s`` is each reload's total deadline (:mod:`serving.reload`). ``docs`` serves
    ``/docs`` and ``/openapi.json`` (off by default: they describe the endpoint to
    anyone who asks, and nothing in production needs them).
    """
    metrics = Metrics()
    rt = _Runtime(holder=ModelHolder(loader=loader, metrics=metrics), metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(keep_loaded(rt.holder, reload_interval_s, reload_timeout_s))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastAPI(
        title="ML model endpoint",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        redoc_url=None,
    )
    app.state.runtime = rt

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> Response:
        return _error(str(exc), exc.status)

    _add_health_routes(app, rt)
    _add_v1_predict(app, rt)
    _add_v2_routes(app, rt)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(TelemetryMiddleware, metrics=metrics)
    return app


def _add_health_routes(app: FastAPI, rt: _Runtime) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        model, holder = rt.holder.current, rt.holder
        if model is None:
            return _json({"ready": False, "reason": holder.reason, "last_error": holder.last_error}, 503)
        return _json(
            {
                "ready": True,
                "model": model.name,
                "version": model.version,
                "source": model.source,
                "loaded_at": model.loaded_at,
                "last_error": holder.last_error,
            }
        )

    @app.get("/v1/model")
    async def model_info() -> Response:
        model = rt.model()
        return _json({**model.manifest.public(), "source": model.source, "loaded_at": model.loaded_at})

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_v1_predict(app: FastAPI, rt: _Runtime) -> None:
    async def predict(scope: Any, receive: Any, send: Any) -> None:
        # The hot path, as a bare ASGI endpoint: FastAPI's per-request dependency and response
        # machinery costs more than the prediction itself (measured: ~25 us of ~150 us).
        try:
            chunks = await _read_body(receive)
            model = rt.model()
            x = await _decode(decode_predict_request, chunks, model.n_features)
            labels, probabilities = await rt.predict(model, x)
            response = Response(
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
        except InputError as exc:
            response = _error(str(exc), exc.status)
        await response(scope, receive, send)

    # Starlette calls a plain function with a Request; an object with __call__ is called as ASGI.
    app.router.routes.append(Route("/v1/predict", _ASGIEndpoint("/v1/predict", predict), methods=["POST"]))


def _v2_parameters(*path: str, query_version: bool = False) -> dict[str, Any]:
    """The OpenAPI parameters of a V2 route, as FastAPI documented them when they were handler
    arguments (they are read from the request instead: see :func:`_add_v2_routes`)."""
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


def _v2_version(request: Request) -> str | None:
    # A path segment on the versioned routes; on the others the optional `?version=` these routes
    # have always accepted.
    version: str | None = request.path_params.get("version", request.query_params.get("version"))
    return version


def _add_v2_routes(app: FastAPI, rt: _Runtime) -> None:
    """Open Inference Protocol (KServe V2) REST: the same model under the standard paths.

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
        return _json({"name": "ml-orchestrator", "version": __version__, "extensions": []})

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        ready = rt.holder.current is not None
        return _json({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}", openapi_extra=_v2_parameters("name", query_version=True))
    @app.get("/v2/models/{name}/versions/{version}", openapi_extra=_v2_parameters("name", "version"))
    async def v2_metadata(request: Request) -> Response:
        model = v2_model(request.path_params["name"], _v2_version(request))
        return _json(
            {
                "name": model.name,
                "versions": [model.version],
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, model.n_features]}],
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)]},
                ],
                "parameters": {"classes": model.manifest.classes, "features": model.manifest.features.names},
            }
        )

    @app.get("/v2/models/{name}/ready", openapi_extra=_v2_parameters("name"))
    async def v2_model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        model = rt.holder.current
        ready = model is not None and model.name == name
        return _json({"name": name, "ready": ready}, 200 if ready else 503)

    @app.post("/v2/models/{name}/infer", openapi_extra=_v2_parameters("name", query_version=True))
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_v2_parameters("name", "version"))
    async def v2_infer(request: Request) -> Response:
        chunks = [chunk async for chunk in request.stream()]
        model = v2_model(request.path_params["name"], _v2_version(request))
        x, request_id = await _decode(decode_v2_request, chunks, model.n_features)
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


class _ASGIEndpoint:
    """A bare ASGI handler for a Starlette Route. FastAPI's router dispatches such routes without
    setting ``scope["route"]``, so ``route_path`` names it for metrics and logs."""

    def __init__(self, route_path: str, handler: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.route_path = route_path
        self.handler = handler

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handler(scope, receive, send)


async def _read_body(receive: Any) -> list[bytes]:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InputError("client disconnected", 400)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks


T = TypeVar("T")


async def _decode(decode: Callable[[bytes, int], T], chunks: list[bytes], n_features: int) -> T:
    """``decode(body, n_features)``: on the event loop for small bodies, in a worker thread (joining
    the chunks there too) for large ones, so a large body never stalls other requests."""
    if sum(len(c) for c in chunks) <= INLINE_BODY_BYTES:
        return decode(b"".join(chunks), n_features)
    return await run_in_threadpool(lambda: decode(b"".join(chunks), n_features))
