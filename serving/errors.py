"""Every error in the protocol's shape: ``{"error": message}`` with ``application/json``.

The routes answer their own errors that way (:class:`~serving.inputs.InputError`); this module
makes the framework's answers match: an unknown route (404), a method a route does not take (405,
with ``Allow``), a request FastAPI itself refuses (422), and an unexpected exception (500, the
exception's type only; it is logged by the server). The Open Inference Protocol asks for
``{"error": $string}`` on every failed request, and the KServe SDK reads the message only from a
body typed exactly ``application/json``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from serving.inputs import InputError, shown
from serving.runtime import error_response

__all__ = ["add_error_handlers"]


def add_error_handlers(app: FastAPI) -> None:
    """Answer InputError, HTTPException (404, 405), validation errors and anything unexpected
    with ``{"error": message}``."""

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> Response:
        return error_response(str(exc), exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        path = shown(request.url.path)
        if exc.status_code == 404:
            message = f"no route {path}; see /openapi.json (with --docs) for the routes"
            if request.url.path.endswith("/") and request.url.path != "/":
                message = f"no route {path}: send it without the trailing slash"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {path}; allowed: {allowed}"
        else:
            message = str(exc.detail)
        response = error_response(message, exc.status_code)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(f"invalid request: {shown(exc.errors())}", 422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        return error_response(f"internal error: {type(exc).__name__}", 500)
