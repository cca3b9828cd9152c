"""Prometheus metrics and the one-line-per-request JSON log, as one pure ASGI middleware.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task per request)
records every response: count and latency by route template and status, so a client probing random
URLs cannot explode label cardinality. Label children are cached because ``.labels()`` is a dict
lookup plus a lock per call, and the one-row predict path is measured against a bare health check.
Payloads are never logged.

The log is JSON lines written with orjson by :class:`JsonLogger`, not structlog: importing structlog
imports ``structlog.dev`` and with it rich's traceback and pretty-printer (~50 ms of the container's
cold start), and the endpoint needs none of it. The lines keep structlog's JSONRenderer layout: the
call's fields in order, then ``event``, ``level`` and an ISO-8601 UTC ``timestamp``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "DriftCollector",
    "JsonLogger",
    "Metrics",
    "TelemetryMiddleware",
    "configure_logging",
    "get_logger",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

# Buckets from 0.5 ms (a health check) to 10 s (a 10,000-row batch on a throttled replica).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# Every metric of the endpoint's own carries this prefix (Prometheus's "single-word application
# prefix"); the standard process_* and python_* metrics of the client library keep their names, which
# dashboards and alert rules expect.
NAMESPACE = "mlorch"
# Model calls and queue waits: from 20 us (a one-row call with warm caches) to 10 s.
MODEL_BUCKETS = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip


class Metrics:
    """The endpoint's metrics, in a registry of its own (several apps can live in one process), with
    the process's own (CPU, memory, file descriptors, start time), the Python runtime's and the
    garbage collector's, as prometheus-client names them."""

    def __init__(self) -> None:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        ours: dict[str, Any] = {"namespace": NAMESPACE, "registry": self.registry}
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route and status",
            ["endpoint", "method", "status"],
            **ours,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by route and status, from the first byte of the request to the last of the "
            "response",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            **ours,
        )
        self.model_time = Histogram(
            "model_inference_duration_seconds",
            "Time in the model (ONNX Runtime) per call; concurrent small requests share one call",
            buckets=MODEL_BUCKETS,
            **ours,
        )
        self.queue_time = Histogram(
            "model_queue_duration_seconds",
            "Time a request's rows waited for the model call that ran them (the micro-batcher's "
            "queue, or the worker threads for large batches)",
            buckets=MODEL_BUCKETS,
            **ours,
        )
        self.predictions = Counter(
            "model_predictions_total", "Predicted rows by class", ["model", "version", "class_"], **ours
        )
        # Labels bounded by the served manifest: its categorical columns only.
        self.unknown_categories = Counter(
            "model_unknown_categories_total",
            "Values of a categorical column outside the categories seen in training (the model's "
            "one-hot encoder ignores them), by column",
            ["model", "version", "column"],
            **ours,
        )
        self.rows = Histogram(
            "model_request_rows", "Rows per prediction request", buckets=(1, 10, 100, 1000, 10_000), **ours
        )
        self.info = Gauge("model_info", "The model being served (value 1)", ["model", "version"], **ours)
        self.ready = Gauge("model_ready", "1 when a verified model is serving", **ours)
        self.drift_failures = Counter(
            "drift_monitor_failures_total",
            "Model calls the drift monitor failed to count (logged once; predictions unaffected)",
            **ours,
        )
        self.load_failures = Counter(
            "model_load_failures_total",
            "Loads and reloads that failed, by reason: artifact (refused content), signature, "
            "storage, config, internal",
            ["reason"],
            **ours,
        )
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._child(self.requests, endpoint, method, str(status)).inc()
        self._child(self.latency, endpoint, method, str(status)).observe(seconds)

    def observe_model_call(self, queued: list[float], seconds: float) -> None:
        """One model call of ``seconds``, and how long each of its requests waited for it."""
        self.model_time.observe(seconds)
        for wait in queued:
            self.queue_time.observe(wait)

    def observe_predictions(self, model: str, version: str, classes: list[str], counts: list[int]) -> None:
        for cls, count in zip(classes, counts, strict=True):
            if count:
                self._child(self.predictions, model, version, cls).inc(count)
        self.rows.observe(sum(counts))

    def observe_unknown_categories(self, model: str, version: str, counts: list[tuple[str, int]]) -> None:
        """Count ``(column, n)`` unknown categorical values of one request."""
        for column, count in counts:
            self._child(self.unknown_categories, model, version, column).inc(count)

    def observe_load_failure(self, reason: str) -> None:
        self.load_failures.labels(reason).inc()

    def set_model(self, model: str, version: str) -> None:
        self.info.clear()
        self.info.labels(model, version).set(1)
        self.ready.set(1)


class _Sink:
    """Where log lines go: ``stream`` once configure_logging() pinned it, else the current
    ``sys.stdout`` (looked up at each line, so a test's captured stdout sees them)."""

    def __init__(self) -> None:
        self.stream: IO[bytes] | None = None
        self.lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.write(line)
                self.stream.flush()
            else:
                sys.stdout.write(line.decode())
                sys.stdout.flush()


_sink = _Sink()


def configure_logging(stream: IO[bytes] | None = None) -> None:
    """JSON lines on ``stream`` (default: stdout), rendered by orjson straight to bytes."""
    _sink.stream = stream if stream is not None else sys.stdout.buffer


def _fallback(value: Any) -> str:
    # What structlog's JSONRenderer did with values JSON cannot hold: their repr.
    return repr(value)


class JsonLogger:
    """A named logger writing one JSON object per line; safe to call from any thread."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        fields["level"] = level
        fields["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        _sink.write(orjson.dumps(fields, default=_fallback) + b"\n")

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)


def get_logger(name: str) -> JsonLogger:
    return JsonLogger(name)


class TelemetryMiddleware:
    """Counts, times and logs every HTTP response."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = get_logger("serving.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            endpoint = (
                getattr(scope.get("route"), "path", None)
                or getattr(scope.get("endpoint"), "route_path", None)
                or "unmatched"
            )
            self.metrics.observe_request(endpoint, scope["method"], status, elapsed)
            self.log.info(
                "request",
                method=scope["method"],
                path=endpoint,
                status=status,
                latency_ms=round(elapsed * 1e3, 3),
            )


class DriftCollector:
    """The drift report as Prometheus gauges, read at each scrape from ``report()`` (the current
    model's :meth:`DriftMonitor.report`, or None): ``mlorch_drift_window_rows``,
    ``mlorch_drift_window_capacity_rows``, ``mlorch_drift_feature_psi`` and
    ``mlorch_drift_feature_js_distance`` by feature, ``mlorch_drift_prediction_psi``,
    ``mlorch_drift_prediction_js_distance``, ``mlorch_drift_confidence_mean`` and
    ``mlorch_drift_estimated_accuracy``, each labelled with the model and version. Label values
    come from the served manifest only (bounded), and a value not known yet is left out."""

    def __init__(self, report: Any) -> None:
        self._report = report

    def describe(self) -> list[Any]:
        return []  # families vary with the model; collect() is not called at registration then

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        answer = self._report()
        if answer is None:
            return
        base = [answer["model_name"], answer["model_version"]]

        def gauge(name: str, doc: str, value: float | None, **extra: str) -> Any:
            family = GaugeMetricFamily(f"mlorch_drift_{name}", doc, labels=["model", "version", *extra])
            if value is not None:
                family.add_metric([*base, *extra.values()], value)
            return family

        yield gauge("window_rows", "Rows in the drift window", answer["window"]["rows"])
        yield gauge(
            "window_capacity_rows", "Rows the drift window holds at most", answer["window"]["capacity_rows"]
        )
        psi_family = GaugeMetricFamily(
            "mlorch_drift_feature_psi",
            "Population stability index of a feature, window vs reference",
            labels=["model", "version", "feature"],
        )
        js_family = GaugeMetricFamily(
            "mlorch_drift_feature_js_distance",
            "Jensen-Shannon distance (base 2) of a feature, window vs reference",
            labels=["model", "version", "feature"],
        )
        for feature, values in answer["features"].items():
            if values["psi"] is not None:
                psi_family.add_metric([*base, feature], values["psi"])
            if values["js_distance"] is not None:
                js_family.add_metric([*base, feature], values["js_distance"])
        yield psi_family
        yield js_family
        prediction = answer["prediction"]
        yield gauge(
            "prediction_psi", "Population stability index of the predicted classes", prediction["psi"]
        )
        yield gauge(
            "prediction_js_distance",
            "Jensen-Shannon distance (base 2) of the predicted classes",
            prediction["js_distance"],
        )
        yield gauge(
            "confidence_mean", "Mean maximum class probability in the window", answer["confidence"]["mean"]
        )
        yield gauge(
            "estimated_accuracy", "Label-free accuracy estimate over the window", answer["estimated_accuracy"]
        )
