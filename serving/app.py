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
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from orchestrator import __version__
from orchestrator.errors import OrchestratorError
from serving.batching import MicroBatcher
from serving.inputs import InputError, decode_json, decode_predict_request, parse_v2_request
from serving.model import Predictor
from serving.source import Loader
from serving.telemetry import Metrics, TelemetryMiddleware, get_logger

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ModelHolder", "create_app"]

# 10,000 rows x 64 features is ~13 MB of JSON; 32 MiB leaves room and still bounds memory per request.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Requests up to this many rows go through the micro-batcher on the event loop; larger ones run in a
# worker thread so a big batch does not stall health checks (below it the thread hop costs more than
# the prediction itself).
INLINE_ROWS = 64

log = get_logger("serving")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


@dataclass
class ModelHolder:
    """The model being served, and why there is none (or why the last reload was refused)."""

    loader: Loader
    metrics: Metrics
    current: Predictor | None = None
    reason: str = "model is loading"
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> bool:
        """Load (or reload) through the loader; keep the old model if the new one is refused."""
        with self._lock:
            try:
                predictor = self.loader(self.current)
            except (OrchestratorError, OSError) as exc:
                self.metrics.load_failures.inc()
                self.last_error = str(exc)
                if self.current is None:
                    self.reason = f"model refused: {exc}"
                log.error(
                    "model refused", error=str(exc), serving=self.current.version if self.current else None
                )
                return False
            if predictor is not self.current:
                previous = self.current
                self.current = predictor  # the swap: requests in flight keep their reference
                self.metrics.set_model(predictor.name, predictor.version)
                log.info(
                    "model loaded",
                    model=predictor.name,
                    version=predictor.version,
                    previous=previous.version if previous else None,
                    source=predictor.source,
                )
            self.last_error = None
            return True


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before reading them (by header) or while reading them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _json(
                    {"error": f"request body of {int(value)} bytes exceeds the limit of {self.max_bytes}"},
                    413,
                )(scope, receive, send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _error(f"request body exceeds the limit of {self.max_bytes} bytes", 413)(
                scope, receive, send
            )


class _TooLarge(Exception):
    pass


@dataclass
class _Runtime:
    """What every route needs: the model holder, the batcher and the metrics."""

    holder: ModelHolder
    metrics: Metrics
    batcher: MicroBatcher = field(default_factory=MicroBatcher)

    def model(self) -> Predictor:
        model = self.holder.current
        if model is None:
            raise InputError(f"not ready: {self.holder.reason}", 503)
        return model

    async def predict(self, model: Predictor, x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        if len(x) <= INLINE_ROWS:
            labels, probabilities = await self.batcher.predict(model, x)
        else:
            labels, probabilities = await run_in_threadpool(model.predict, x)
        counts = np.bincount(labels, minlength=len(model.classes)).tolist()
        self.metrics.observe_predictions(model.name, model.version, model.manifest.classes, counts)
        return labels, probabilities


def create_app(
    loader: Loader,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reload_interval_s: float | None = None,
) -> FastAPI:
    """Build the endpoint around ``loader``, which returns a verified model or raises ArtifactError."""
    metrics = Metrics()
    rt = _Runtime(holder=ModelHolder(loader=loader, metrics=metrics), metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_keep_loaded(rt.holder, reload_interval_s))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastAPI(
        title="ML model endpoint", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None
    )
    app.state.runtime = rt

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> Response:
        return _error(str(exc), exc.status)

    _add_health_routes(app, rt)
    _add_v1_predict(app, rt)
    _add_v2_routes(app, rt)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
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
            body = await _read_body(receive)
            model = rt.model()
            x = decode_predict_request(body, model.n_features)
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
            raise InputError(f"unknown model {name!r}; this endpoint serves {model.name!r}", 404)
        if version is not None and version != model.version:
            raise InputError(f"model {name!r} has no version {version!r}; serving {model.version!r}", 404)
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
        payload = decode_json(await request.body())
        model = v2_model(request.path_params["name"], _v2_version(request))
        x, request_id = parse_v2_request(payload, model.n_features)
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


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InputError("client disconnected", 400)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _keep_loaded(holder: ModelHolder, interval_s: float | None) -> None:
    """Load once at start-up, then (if configured) reload every ``interval_s`` seconds."""
    while True:
        started = time.monotonic()
        await asyncio.to_thread(holder.load)
        if interval_s is None:
            return
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
