"""The reload loop: keep one verified model loaded, follow the source, survive anything.

:class:`ModelHolder` holds the model being served and why there is none (or why the last reload
was refused); :func:`keep_loaded` calls it at start-up and then every reload interval, with a
bounded exponential backoff after failures (:func:`next_delay`). A refused or failed reload is
logged as one JSON line, counted by reason in ``mlorch_model_load_failures_total`` and shown as
``last_error`` on ``/readyz``, while the last good model keeps serving.

Every reload has a total deadline. Storage that sends one byte a second trips no connection or read
timeout, and a thread blocked in a socket read cannot be interrupted; so each reload runs in a
daemon thread of its own, and past the deadline the loop stops waiting for it: the failure is
counted (reason ``timeout``) and shown, its answer, should it ever come, is discarded, and the next
reload starts on schedule. At most :data:`MAX_STALLED` abandoned reloads may still be waiting at
once; beyond that no new one starts until one of them ends, so a stalled bucket cannot pile up
threads and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from dataclasses import dataclass

from serving.loader import Loader, StillRefused
from serving.model import Predictor
from serving.settings import DEFAULT_RELOAD_TIMEOUT_S
from serving.telemetry import Metrics, get_logger

__all__ = [
    "MAX_STALLED",
    "LoadOutcome",
    "ModelHolder",
    "failure_reason",
    "keep_loaded",
    "next_delay",
]

# The reload loop's backoff after a failed load: the interval doubles per consecutive failure up to
# 16 times the interval (5 minutes at most), so a broken bucket is not hammered and a good version
# published afterwards is still picked up within a few intervals. Without a reload interval the
# start-up load is retried from 1 s.
BACKOFF_GROWTH_CAP = 16
MAX_BACKOFF_S = 300.0
STARTUP_RETRY_S = 1.0
# Abandoned reloads that may still be waiting on storage at once: each holds a thread and a
# connection until the storage answers or drops it.
MAX_STALLED = 4

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
    """The ``reason`` label of ``mlorch_model_load_failures_total`` for a refused or failed load."""
    from orchestrator.core.artifact.signing import SignatureError
    from orchestrator.core.errors import ArtifactError, ConfigError, StorageError

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

    A reload is two halves: :meth:`attempt` runs the loader (network I/O, in a worker thread) and
    returns its model or its exception; :meth:`settle` applies that on the event loop (the swap is
    one attribute assignment, so requests need no lock). :meth:`load` does both, for callers with
    no loop (tests, tools).
    """

    loader: Loader
    metrics: Metrics
    current: Predictor | None = None
    reason: str = "model is loading"
    last_error: str | None = None

    def attempt(self) -> Predictor | Exception:
        """Run the loader once: the model it returns, or the exception it raised. Never raises."""
        try:
            return self.loader(self.current)
        except Exception as exc:  # a reload must never end the loop, whatever the content did
            return exc

    def load(self) -> LoadOutcome:
        """Load (or reload) through the loader; keep the old model if the new one is refused.
        Never raises: see :meth:`settle`."""
        return self.settle(self.attempt())

    def settle(self, result: Predictor | Exception) -> LoadOutcome:
        """Apply one attempt's result. An exception is logged as one JSON line, counted by reason in
        ``mlorch_model_load_failures_total`` (once per refused content: a :class:`StillRefused` repeat is
        neither logged nor counted again) and kept in ``last_error``; a model is swapped in."""
        if isinstance(result, StillRefused):
            self.last_error = str(result).removeprefix("still refused (unchanged since): ")
            return LoadOutcome.STILL_REFUSED
        if isinstance(result, Exception):
            return self.fail(
                failure_reason(result), str(result) or type(result).__name__, type(result).__name__
            )
        if result is not self.current:
            previous = self.current
            self.current = result  # the swap: requests in flight keep their reference
            self.metrics.set_model(result.name, result.version)
            log.info(
                "model loaded",
                model=result.name,
                version=result.version,
                previous=previous.version if previous else None,
                source=result.source,
            )
        self.last_error = None
        return LoadOutcome.SERVING

    def fail(self, reason: str, message: str, error_type: str) -> LoadOutcome:
        """Record a failed reload: counted under ``reason``, logged, shown in ``last_error``."""
        self.metrics.observe_load_failure(reason)
        self.last_error = message
        if self.current is None:
            self.reason = f"model refused: {message}"
        log.error(
            "model refused",
            reason=reason,
            error=message[:2000],
            error_type=error_type,
            serving=self.current.version if self.current else None,
        )
        return LoadOutcome.FAILED


async def _attempt_within(
    holder: ModelHolder, timeout_s: float
) -> tuple[LoadOutcome, threading.Thread | None]:
    """One reload in a daemon thread of its own, waited for at most ``timeout_s``: its outcome, and
    the thread if it was abandoned (still running past the deadline; its answer is discarded)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Predictor | Exception] = loop.create_future()

    def deliver(result: Predictor | Exception) -> None:
        if not answer.done():
            answer.set_result(result)

    def run() -> None:
        result = holder.attempt()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            loop.call_soon_threadsafe(deliver, result)

    # A daemon: a reload stuck in a socket read must not hold the process at shutdown either.
    thread = threading.Thread(target=run, name="model-reload", daemon=True)
    thread.start()
    try:
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns the result and swallows a
        # cancellation that arrives as the answer lands (CPython gh-86296), so the loop went on
        # forever after the server cancelled it at shutdown. timeout() tells its own expiry apart
        # from a cancellation from outside, which propagates.
        async with asyncio.timeout(timeout_s):
            result = await asyncio.shield(answer)
    except TimeoutError:
        message = (
            f"reload did not finish within {timeout_s:g} s (the storage is too slow, or stalled); "
            "it was given up"
        )
        return holder.fail("timeout", message, "TimeoutError"), thread
    return holder.settle(result), None


async def keep_loaded(
    holder: ModelHolder, interval_s: float | None, timeout_s: float = DEFAULT_RELOAD_TIMEOUT_S
) -> None:
    """Load at start-up (retried with backoff until a model serves), then, if configured, reload
    every ``interval_s`` seconds, backing off after failures (:func:`next_delay`); each reload is
    given up after ``timeout_s`` seconds (module docstring). Survives any exception in one pass:
    ``holder.attempt`` catches everything, and this loop catches what is left (a failure to even
    start the thread), says so, and goes on."""
    failures = 0
    stalled: list[threading.Thread] = []
    while True:
        started = time.monotonic()
        stalled = [thread for thread in stalled if thread.is_alive()]
        try:
            if len(stalled) >= MAX_STALLED:
                message = (
                    f"{len(stalled)} reloads given up are still waiting on the storage; "
                    "no new one starts until one of them ends"
                )
                outcome = holder.fail("timeout", message, "TimeoutError")
            else:
                outcome, abandoned = await _attempt_within(holder, timeout_s)
                if abandoned is not None:
                    stalled.append(abandoned)
        except Exception as exc:  # the last net: the loop itself must not end
            outcome = holder.fail("internal", f"reload failed: {exc}", type(exc).__name__)
        failures = failures + 1 if outcome is LoadOutcome.FAILED else 0
        delay = next_delay(interval_s, outcome, failures)
        if delay is None:
            return
        await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))
