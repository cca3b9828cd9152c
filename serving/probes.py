"""The platform's routes: liveness, readiness and Prometheus metrics.

- ``GET /healthz``   200 as soon as the process answers (liveness: restart me only if this fails)
- ``GET /readyz``    200 with the model's name, version and source once a verified model is loaded;
                     503 with the reason (loading, refused) until then (readiness: route to me)
- ``GET /metrics``   Prometheus text format (:class:`serving.telemetry.Metrics`)
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

from serving.runtime import Runtime, json_response

__all__ = ["add_probe_routes"]


def add_probe_routes(app: FastAPI, rt: Runtime) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app``."""

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        model, holder = rt.holder.current, rt.holder
        if model is None:
            return json_response(
                {"ready": False, "reason": holder.reason, "last_error": holder.last_error}, 503
            )
        return json_response(
            {
                "ready": True,
                "model": model.name,
                "version": model.version,
                "source": model.source,
                "loaded_at": model.loaded_at,
                "last_error": holder.last_error,
            }
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
