"""The endpoint's own v1 routes.

- ``POST /v1/predict``   ``{"instances": [[...]]}`` (rows of numbers; for a ``columns`` model,
                         objects keyed by column: ``[{"age": 41, "region": "EU"}]``) → the model's
                         name and version, its classes, one label and one row of probabilities per
                         instance
- ``GET  /v1/model``     the manifest's public part (version, metrics, canary), its source and when it
                         was loaded
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Route

from serving.columns import decode_columns_request
from serving.inputs import InputError, decode_predict_request
from serving.runtime import ASGIEndpoint, Runtime, decode_body, error_response, json_response, read_body

__all__ = ["add_v1_routes"]


def add_v1_routes(app: FastAPI, rt: Runtime) -> None:
    """Add ``/v1/model`` and ``/v1/predict`` to ``app``."""

    @app.get("/v1/model")
    async def model_info() -> Response:
        model = rt.model()
        return json_response(
            {**model.manifest.public(), "source": model.source, "loaded_at": model.loaded_at}
        )

    async def predict(scope: Any, receive: Any, send: Any) -> None:
        # The hot path, as a bare ASGI endpoint: FastAPI's per-request dependency and response
        # machinery costs more than the prediction itself (measured: ~25 us of ~150 us).
        try:
            chunks = await read_body(receive)
            model = rt.model()
            if model.columns_layout:
                x: Any = await decode_body(decode_columns_request, chunks, model.manifest.features.columns)
            else:
                x = await decode_body(decode_predict_request, chunks, model.n_features)
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
            response = error_response(str(exc), exc.status)
        await response(scope, receive, send)

    # Starlette calls a plain function with a Request; an object with __call__ is called as ASGI.
    app.router.routes.append(Route("/v1/predict", ASGIEndpoint("/v1/predict", predict), methods=["POST"]))
