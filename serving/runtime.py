"""What every route shares: the model holder, the micro-batcher, the metrics, and JSON responses.

:class:`Runtime` is built once per application by :func:`serving.app.create_app` and handed to each
route family (:mod:`serving.probes`, :mod:`serving.v1`, :mod:`serving.v2`). Every error a client
can cause is an :class:`~serving.inputs.InputError`, answered as a 4xx JSON ``{"error": message}``
(503 while no model is loaded).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from serving.batching import MicroBatcher
from serving.columns import ColumnBatch
from serving.drift import DEFAULT_WINDOW_ROWS, DriftMonitor
from serving.encoding import CODING_SCOPE_KEY, inflate
from serving.inputs import InputError
from serving.model import Predictor, invalid_rows
from serving.reload import ModelHolder
from serving.telemetry import Metrics, get_logger

__all__ = [
    "CANARY_HEADER",
    "INLINE_BODY_BYTES",
    "INLINE_INFLATE_BYTES",
    "INLINE_ROWS",
    "ASGIEndpoint",
    "Runtime",
    "decode_body",
    "error_response",
    "is_canary",
    "json_response",
    "read_body",
]

log = get_logger("serving")

# The header the control plane's health probes send with their canary rows: those synthetic rows are
# not traffic, and are left out of the drift window. A client sending it only hides its own rows.
CANARY_HEADER = b"x-mlorch-canary"


def is_canary(scope: Any) -> bool:
    """True when the request carries :data:`CANARY_HEADER` (a health probe's canary replay)."""
    return any(name == CANARY_HEADER for name, _ in scope.get("headers", ()))


# Requests up to this many rows go through the micro-batcher on the event loop; larger ones run in a
# worker thread so a big batch does not stall health checks (below it the thread hop costs more than
# the prediction itself).
INLINE_ROWS = 64
# Bodies up to this size are decoded on the event loop: a 1,000-row digits request is ~275 kB and
# decodes in ~1 ms, less than what a thread hop and the GIL hand-over cost it; 1 MiB takes ~4 ms,
# well inside the 50 ms probe budget. Larger ones are decoded in a worker thread, so that decoding
# a 30 MiB body never stalls other requests and probes.
INLINE_BODY_BYTES = 1024 * 1024


# Compressed bodies up to this size are inflated on the event loop (64 KiB of gzip inflates in well
# under a millisecond); larger ones in a worker thread, as INLINE_BODY_BYTES for decoding.
INLINE_INFLATE_BYTES = 64 * 1024


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as an ``application/json`` response (orjson)."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(message: str, status: int) -> Response:
    """The JSON ``{"error": message}`` every refused request gets."""
    return json_response({"error": message}, status)


@dataclass
class Runtime:
    """What every route needs: the model holder, the batcher and the metrics."""

    holder: ModelHolder
    metrics: Metrics
    drift_window_rows: int = DEFAULT_WINDOW_ROWS
    """Rows in the drift monitor's sliding window (:mod:`serving.drift`); 0 turns monitoring off."""
    batcher: MicroBatcher = field(init=False)
    _drift: DriftMonitor | None = field(init=False, default=None)
    _drift_for: Predictor | None = field(init=False, default=None)
    _drift_failed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.batcher = MicroBatcher(
            check=_output_error, timing=self.metrics.observe_model_call, observe=self.observe_drift
        )

    def drift(self, model: Predictor) -> DriftMonitor | None:
        """The drift monitor of ``model`` (a new model starts a new window); None when monitoring is
        off. Called on the event loop only."""
        if self.drift_window_rows <= 0:
            return None
        if self._drift_for is not model:
            self._drift = DriftMonitor(model.manifest, self.drift_window_rows)
            self._drift_for = model
        return self._drift

    def observe_drift(self, model: Predictor, x: Any, labels: Any, probabilities: Any) -> None:
        """Count rows and their valid outputs in ``model``'s drift window. Rows of a model no longer
        served (a request that finished after a reload) are not counted: they would otherwise
        replace the new model's window with one of the old model's. Never raises: a failure of the
        monitor is counted in ``mlorch_drift_monitor_failures_total``, logged once, and never fails a
        prediction."""
        if model is not self.holder.current:
            return
        try:
            if (monitor := self.drift(model)) is not None:
                monitor.observe(x, labels, probabilities)
        except Exception as exc:  # the monitor is bookkeeping: predictions go on without it
            self.metrics.drift_failures.inc()  # every failure counted, the first one logged
            if not self._drift_failed:
                self._drift_failed = True
                log.error("drift monitor failed", error=f"{type(exc).__name__}: {exc}"[:500])

    def model(self) -> Predictor:
        """The model being served; InputError 503 (with the holder's reason) while there is none."""
        model = self.holder.current
        if model is None:
            raise InputError(f"not ready: {self.holder.reason}", 503)
        return model

    async def predict(
        self, model: Predictor, x: np.ndarray[Any, Any] | ColumnBatch, *, monitored: bool = True
    ) -> tuple[np.ndarray[Any, Any], ...]:
        """Labels and probabilities for ``x`` (a matrix, or a ColumnBatch for a ``columns`` model,
        whose unknown categories are counted); InputError 422 naming the rows whose outputs are not
        finite (features so large that scaling overflows, such as 1e308): never returned as a
        prediction with null probabilities. ``monitored`` False leaves the rows out of the drift
        window (the health probes' canary, :data:`CANARY_HEADER`)."""
        if isinstance(x, ColumnBatch) and (unknown := model.unknown_categories(x)):
            self.metrics.observe_unknown_categories(model.name, model.version, unknown)
        if len(x) <= INLINE_ROWS:
            # checked, and counted for drift, per batch
            labels, probabilities = await self.batcher.predict(model, x, monitored=monitored)
        else:
            labels, probabilities = await run_in_threadpool(
                self._timed_predict, model, x, time.perf_counter()
            )
            if (problem := _output_error(model, labels, probabilities)) is not None:
                raise problem
            if monitored:
                self.observe_drift(model, x, labels, probabilities)
        counts = np.bincount(labels, minlength=len(model.classes)).tolist()
        self.metrics.observe_predictions(model.name, model.version, model.manifest.classes, counts)
        return labels, probabilities

    def _timed_predict(self, model: Predictor, x: Any, submitted: float) -> tuple[np.ndarray[Any, Any], ...]:
        """``model.predict(x)`` in a worker thread, timed: the wait for the thread, and the call."""
        started = time.perf_counter()
        outputs = model.predict(x)
        self.metrics.observe_model_call([started - submitted], time.perf_counter() - started)
        return outputs


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


class ASGIEndpoint:
    """A bare ASGI handler for a Starlette Route. FastAPI's router dispatches such routes without
    setting ``scope["route"]``, so ``route_path`` names it for metrics and logs."""

    def __init__(self, route_path: str, handler: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.route_path = route_path
        self.handler = handler

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handler(scope, receive, send)


async def read_body(scope: Any, receive: Any) -> list[bytes]:
    """The request body's chunks from an ASGI ``receive``, inflated if the client compressed it
    (:mod:`serving.encoding`; a worker thread inflates a large one); InputError 400 if the client
    left or the body is not valid in its coding, 413 if it inflates beyond the limit."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InputError("client disconnected", 400)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    coding = scope.get(CODING_SCOPE_KEY)
    if coding is None:
        return chunks
    body = b"".join(chunks)
    if len(body) <= INLINE_INFLATE_BYTES:
        return [inflate(body, *coding)]
    return [await run_in_threadpool(inflate, body, *coding)]


T = TypeVar("T")
A = TypeVar("A")


async def decode_body(decode: Callable[[bytes, A], T], chunks: list[bytes], n_features: A) -> T:
    """``decode(body, n_features)`` (the model's width, or its columns): on the event loop for
    small bodies, in a worker thread (joining
    the chunks there too) for large ones, so a large body never stalls other requests."""
    if sum(len(c) for c in chunks) <= INLINE_BODY_BYTES:
        return decode(b"".join(chunks), n_features)
    return await run_in_threadpool(lambda: decode(b"".join(chunks), n_features))
