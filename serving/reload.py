"""The reload loop: keep one verified model loaded, follow the source, survive anything.

:class:`ModelHolder` holds the model being served and why there is none (or why the last reload
was refused); :func:`keep_loaded` calls it at start-up and then every reload interval, with a
bounded exponential backoff after failures (:func:`next_delay`). A refused or failed reload is
logged as one JSON line, counted by reason in ``model_load_failures_total`` and shown as
``last_error`` on ``/readyz``, while the last good model keeps serving.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass

from serving.model import Predictor
from serving.source import Loader, StillRefused
from serving.telemetry import Metrics, get_logger

__all__ = ["LoadOutcome", "ModelHolder", "failure_reason", "keep_loaded", "next_delay"]

# The reload loop's backoff after a failed load: the interval doubles per consecutive failure up to
# 16 times the interval (5 minutes at most), so a broken bucket is not hammered and a good version
# published afterwards is still picked up within a few intervals. Without a reload interval the
# start-up load is retried from 1 s.
BACKOFF_GROWTH_CAP = 16
MAX_BACKOFF_S = 300.0
STARTUP_RETRY_S = 1.0

log = get_logger("serving")


class LoadOutcome(enum.Enum):
    """What one pass of the reload loop did."""

    SERVING = "serving"  # a model serves: the same as before, or a newly verified one
    STILL_REFUSED = "still_refused"  # the source still holds a refused version; nothing downloaded
    FAILED = "failed"  # refused, or the storage failed: counted, logged, backoff grows


def next_delay(interval_s: float | None, outcome: LoadOutcome, failures: int) -> float | None:
    """Seconds until the next load, or None to stop (loaded, and no reload interval).

    ``failures`` counts consecutive FAILED outcomes, this one included. Bounded exponential:
    ``base * 2**(failures - 1)`` up to ``min(base * BACKOFF_GROWTH_CAP, MAX_BACKOFF_S)`` (never
    below ``base``), reset by any other outcome.
    """
    if interval_s is None and outcome is LoadOutcome.SERVING:
        return None
    base = interval_s if interval_s is not None else STARTUP_RETRY_S
    if outcome is not LoadOutcome.FAILED:
        return base
    cap = max(base, min(base * BACKOFF_GROWTH_CAP, MAX_BACKOFF_S))
    return float(min(base * 2 ** min(failures - 1, 30), cap))


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of ``model_load_failures_total`` for a refused or failed load."""
    from orchestrator.errors import ArtifactError, ConfigError, StorageError
    from serving.signing import SignatureError

    if isinstance(exc, SignatureError):
        return "signature"
    if isinstance(exc, ArtifactError):
        return "artifact"
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, ConfigError):
        return "config"
    return "internal"


@dataclass
class ModelHolder:
    """The model being served, and why there is none (or why the last reload was refused).

    :meth:`load` is called by one task at a time (the reload loop; tests call it directly), so it
    takes no lock: the loader does network I/O, and the swap itself is one attribute assignment.
    """

    loader: Loader
    metrics: Metrics
    current: Predictor | None = None
    reason: str = "model is loading"
    last_error: str | None = None

    def load(self) -> LoadOutcome:
        """Load (or reload) through the loader; keep the old model if the new one is refused.

        Never raises: any exception is caught, logged as one JSON line, counted by reason in
        ``model_load_failures_total`` (once per refused content: a :class:`StillRefused` repeat is
        neither logged nor counted again) and kept in ``last_error``.
        """
        try:
            predictor = self.loader(self.current)
        except StillRefused as exc:
            self.last_error = str(exc).removeprefix("still refused (unchanged since): ")
            return LoadOutcome.STILL_REFUSED
        except Exception as exc:  # a reload must never end the loop, whatever the content did
            reason = failure_reason(exc)
            self.metrics.observe_load_failure(reason)
            message = str(exc) or type(exc).__name__
            self.last_error = message
            if self.current is None:
                self.reason = f"model refused: {message}"
            log.error(
                "model refused",
                reason=reason,
                error=message[:2000],
                error_type=type(exc).__name__,
                serving=self.current.version if self.current else None,
            )
            return LoadOutcome.FAILED
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
        return LoadOutcome.SERVING


async def keep_loaded(holder: ModelHolder, interval_s: float | None) -> None:
    """Load at start-up (retried with backoff until a model serves), then, if configured, reload
    every ``interval_s`` seconds, backing off after failures (:func:`next_delay`). Survives any
    exception in one pass: ``holder.load`` catches everything, and this loop catches what is left
    (a failure to even start the thread), says so, and goes on."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            outcome = await asyncio.to_thread(holder.load)
        except Exception as exc:  # the last net: the loop itself must not end
            holder.metrics.observe_load_failure("internal")
            holder.last_error = f"reload failed: {exc}"
            log.error("reload failed", reason="internal", error=str(exc), error_type=type(exc).__name__)
            outcome = LoadOutcome.FAILED
        failures = failures + 1 if outcome is LoadOutcome.FAILED else 0
        delay = next_delay(interval_s, outcome, failures)
        if delay is None:
            return
        await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))
