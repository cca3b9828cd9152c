"""The HTTP endpoint every cloud runs, assembled: one verified model, predictions, health and metrics.

Route families, each in its own module:

- :mod:`serving.v1`       ``POST /v1/predict``, ``GET /v1/model``, KServe V1 ``/v1/models/{name}[:predict]``
- :mod:`serving.v2`       ``/v2/...``: Open Inference Protocol (KServe V2) REST, binary tensors included
- :mod:`serving.errors`   every error as ``{"error": message}``, unknown routes and methods included
- :mod:`serving.openapi`  the OpenAPI document of every route (``--docs``)
- :mod:`serving.probes`   ``GET /healthz``, ``GET /readyz`` (ready = verified model loaded), ``GET /metrics``

The model is loaded in a background task after start-up (:func:`serving.reload.keep_loaded`), so
liveness answers at once while a large artifact downloads; readiness turns 200 only when the
artifact verified and reproduced its canary. A reload swaps the model atomically (one attribute
assignment) and a refused artifact leaves the previous model serving. Every error a client can cause
is a 4xx JSON ``{"error": message}``; the request's size and pace are bounded before any route sees
it (:mod:`serving.protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI

from orchestrator import __version__
from serving.auth import BearerTokenMiddleware
from serving.drift import DEFAULT_WINDOW_ROWS
from serving.errors import add_error_handlers
from serving.loader import Loader
from serving.openapi import openapi_document
from serving.probes import add_probe_routes
from serving.protocol import BodyLimitMiddleware
from serving.reload import ModelHolder, keep_loaded
from serving.runtime import Runtime
from serving.settings import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY_MB, DEFAULT_RELOAD_TIMEOUT_S
from serving.telemetry import DriftCollector, Metrics, TelemetryMiddleware
from serving.v1 import add_v1_routes
from serving.v2 import add_v2_routes

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)


def create_app(
    loader: Loader,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reload_interval_s: float | None = None,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    reload_timeout_s: float = DEFAULT_RELOAD_TIMEOUT_S,
    docs: bool = False,
    api_tokens: Sequence[str] = (),
    drift_window_rows: int = DEFAULT_WINDOW_ROWS,
) -> FastAPI:
    """Build the endpoint around ``loader``, which returns a verified model or raises.

    ``reload_interval_s`` None loads once (retrying until a model loads); ``reload_timeout_s`` is each
    load's total deadline (:mod:`serving.reload`). ``docs`` serves ``/docs`` and ``/openapi.json``
    (off by default: they describe the endpoint to anyone who asks, and nothing in production needs
    them). ``api_tokens`` (current first): every route but liveness and readiness then needs one of
    them as ``Authorization: Bearer`` (:mod:`serving.auth`); empty leaves the endpoint open.
    ``drift_window_rows`` is the drift monitor's window (:mod:`serving.drift`); 0 turns it off.
    """
    metrics = Metrics()
    rt = Runtime(
        holder=ModelHolder(loader=loader, metrics=metrics),
        metrics=metrics,
        drift_window_rows=drift_window_rows,
    )

    def drift_report() -> dict[str, Any] | None:
        model = rt.holder.current
        monitor = rt.drift(model) if model is not None else None
        return monitor.report() if monitor is not None else None

    metrics.registry.register(DriftCollector(drift_report))

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
        # A 307 to the path without its trailing slash names this process's own scheme and host:
        # behind a TLS-terminating load balancer it would send the client to plain http. A 404
        # in the protocol's shape says what to fix (serving.errors).
        redirect_slashes=False,
    )
    app.state.runtime = rt
    if docs:  # written out: the hot paths are bare ASGI endpoints FastAPI cannot describe
        document = openapi_document(app.title, app.version, bearer=bool(api_tokens))
        app.openapi = lambda: document  # type: ignore[method-assign]  # FastAPI's documented override

    add_error_handlers(app)
    add_probe_routes(app, rt)
    add_v1_routes(app, rt)
    add_v2_routes(app, rt)
    if api_tokens:  # innermost: a refused request's unread body closes its connection (BodyLimit)
        app.add_middleware(BearerTokenMiddleware, tokens=tuple(api_tokens))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(TelemetryMiddleware, metrics=metrics)
    return app
