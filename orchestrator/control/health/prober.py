"""Probing the fleet: every cloud at once, each probe within its deadline, against an expectation
that is read from the buckets in bounded time and never blocks a round on a slow bucket.

:class:`Prober` owns a private event loop and one ``httpx.AsyncClient`` on it: each round runs
:func:`~orchestrator.control.health.probe.probe_many` there, so N clouds cost one ``timeout_s`` at most,
not N of them. It also owns what the probes check against (:meth:`Prober.expectation`):

- the expectation comes from the buckets (:func:`~orchestrator.control.health.expect.expected_model`),
  read in a background thread with short storage timeouts (:data:`BUCKET_SETTINGS`,
  :data:`BUCKET_RETRY`); a round waits for it at most :data:`EXPECTATION_DEADLINE_S` when it has
  none yet, and at most :data:`EXPECTATION_REFRESH_WAIT_S` (not at all if a read is already under
  way) when an endpoint serves a version it does not know;
- it is re-read every :data:`EXPECTATION_TTL_S` in the background, the rounds meanwhile using the
  one they have: a rollout is noticed within that time, a slow bucket never delays a probe;
- when the buckets cannot be read (or none is configured), the last expectation read stays in
  use, and without one each endpoint is checked against the canary its own ``GET /v1/model``
  reports (the version is then not checked): an endpoint that lies can fail only itself, never
  make the others look wrong. A read that failed is retried in the background, and no round waits
  for the buckets again before :data:`EXPECTATION_TTL_S`. :attr:`Prober.note` says which, for the
  round's report.

Each probe reaches its cloud as a client does (:mod:`orchestrator.control.health.access`): with
``endpoint.public_name``, the public name as Host and TLS server name at the cloud's entry; with
``auth.token``, the API token read from its secret store.

The prober decides nothing and keeps no state between processes: the machines do that.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from orchestrator.control.config import Config
from orchestrator.control.health.access import ProbeAccess
from orchestrator.control.health.drift import DriftReading, read_drift_many, with_drift
from orchestrator.control.health.expect import expected_model
from orchestrator.control.health.probe import (
    MAX_BODY_BYTES,
    BadAnswer,
    Expectation,
    ProbeResult,
    probe_many,
    short,
)
from orchestrator.control.rollout.record import is_active
from orchestrator.core.errors import OrchestratorError
from orchestrator.core.storage import RetryPolicy, Storage

__all__ = [
    "BUCKET_RETRY",
    "BUCKET_SETTINGS",
    "EXPECTATION_DEADLINE_S",
    "EXPECTATION_MIN_AGE_S",
    "EXPECTATION_REFRESH_WAIT_S",
    "EXPECTATION_TTL_S",
    "Prober",
]

T = TypeVar("T")

# How long an expectation (LATEST pointer + canary) is used before it is re-read (in the background):
# a rollout is noticed within this, without three bucket reads per probe. An endpoint serving a
# version the expectation does not know makes it re-read sooner, at most this often:
EXPECTATION_TTL_S = 10.0
EXPECTATION_MIN_AGE_S = 1.0
# The longest a round waits for the buckets (only without an expectation, or for an unknown
# version): a pointer and a manifest read in-region take tens of milliseconds, and a bucket that
# has not answered in 5 s has its reads abandoned to the background rather than delay failover.
EXPECTATION_DEADLINE_S = 5.0
# With an expectation in hand, the longest a round waits for a re-read (an endpoint serves a version
# it does not know: LATEST may just have moved). A pointer and a manifest read in-region take tens
# of milliseconds, so this covers a healthy bucket, and a slow one stretches a round by no more;
# a read still under way from an earlier round is not waited for at all.
EXPECTATION_REFRESH_WAIT_S = 0.5
# Storage bounds for those reads: short timeouts and one retry, so that a background read of an
# unreachable bucket ends within about 2 x (2 + 3) s instead of the sync defaults' minute.
BUCKET_SETTINGS = {"connect_timeout": 2.0, "read_timeout": 3.0}
BUCKET_RETRY = RetryPolicy(attempts=2, timeout=3.0, wait_initial=0.1, wait_max=0.5, wait_jitter=0.1)


@dataclass(frozen=True)
class _Known:
    expectation: Expectation
    at: float  # monotonic time it was read


class Prober:
    """Probes ``config``'s endpoints (see the module docstring). Not for use from several threads
    at once; :meth:`close` it when done."""

    def __init__(
        self,
        config: Config,
        *,
        buckets: Callable[[], dict[str, Storage]],
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``buckets`` opens the buckets the expectation is read from (cloud -> Storage; in
        production :func:`orchestrator.control.wiring.probe_buckets`, with the short timeouts
        above): called once, by the first read, in the reader thread, and closed by
        :meth:`close`. ``transport`` is the HTTP transport of the probes (tests); ``clock`` stamps
        results and judges a rollout's grace (unix seconds); ages are measured on ``monotonic``."""
        self.config = config
        self.endpoints = config.endpoints()
        self.clock = clock
        self.note: str | None = None  # why the expectation in use is not a fresh one from the buckets
        self.expected: Expectation | None = None  # what the last probes checked against
        # Each cloud's latest drift answer, compared across clouds (health/drift.py).
        self.drift_readings: dict[str, DriftReading | None] = {}
        self._monotonic = monotonic
        self._transport = transport
        self.access = ProbeAccess(config)  # the public name and the token (health/access.py)
        self._loop = asyncio.new_event_loop()
        self._client: httpx.AsyncClient | None = None
        self._open_buckets = buckets
        self._buckets: dict[str, Storage] | None = None
        self._known: _Known | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._outcome: tuple[Expectation | None, str | None] | None = None
        self._failed_at = -math.inf  # monotonic time the last bucket read failed
        self._trouble: str | None = None  # why the buckets' expectation is not fresh, if it is not
        # The state store's rollout record, read before each round (the control plane sets it):
        # a staged rollout's two versions are expected only while it says one is active.
        self.rollout_source: Callable[[], Mapping[str, Any] | None] | None = None
        self._rollout: Mapping[str, Any] | None = None

    # -- probing -------------------------------------------------------------------------------
    def probe(self, clouds: Sequence[str] | None = None) -> dict[str, ProbeResult]:
        """One probe of each of ``clouds`` (default: all), concurrently. An endpoint serving a
        version the expectation does not know makes it re-read the buckets (at most every
        EXPECTATION_MIN_AGE_S) and probe that endpoint again, in case LATEST just moved."""
        names = list(clouds or self.endpoints)
        self._read_rollout()
        expect = self.expectation()
        results = self._probe(names, expect)
        unknown = [n for n, r in results.items() if _unexpected(r, expect)]
        if unknown and self._age() >= EXPECTATION_MIN_AGE_S:
            fresh = self.expectation(refresh=True)
            if fresh.version != expect.version:
                results.update(self._probe(unknown, fresh))
                expect = fresh
        self.expected = expect
        if self.access.note:  # a token re-read failed: the round goes on with the one in hand
            self.note = short(f"{self.note}; {self.access.note}" if self.note else self.access.note)
        return results

    def _probe(self, names: list[str], expect: Expectation) -> dict[str, ProbeResult]:
        endpoints = {n: self.endpoints[n] for n in names}
        client = self._http()
        self.access.refresh(client)  # the token, read (or re-read) before the round, not in it
        timeout_s = self.config.health.timeout_s

        async def both() -> tuple[dict[str, ProbeResult], dict[str, tuple[DriftReading | None, str | None]]]:
            # The drift answers are read alongside the probes, each within the probe's deadline.
            probes, readings = await asyncio.gather(
                probe_many(client, endpoints, expect, timeout_s=timeout_s, clock=self.clock),
                read_drift_many(client, endpoints, timeout_s=timeout_s),
            )
            return probes, readings

        results, readings = self._run(both())
        self.drift_readings.update({c: r for c, (r, _) in readings.items()})
        return with_drift(
            results,
            readings,
            self.config.drift,
            compared=self.drift_readings,
            across_versions=not is_active(self._rollout),
        )

    def probe_against(self, clouds: Sequence[str], expect: Expectation) -> dict[str, ProbeResult]:
        """One probe of each of ``clouds`` against ``expect`` exactly (a rollout's new version and
        its canary), without consulting the buckets' expectation."""
        return self._probe(list(clouds), expect)

    def fetch(self, cloud: str, path: str, *, deadline_s: float) -> tuple[int, bytes]:
        """GET ``path`` of ``cloud``'s endpoint with the probes' client (their public name and
        token): (status, body), the body capped at the probes' answer size. Raises
        ``httpx.HTTPError``, ``TimeoutError`` past ``deadline_s`` in all, or BadAnswer (oversized)."""

        async def get() -> tuple[int, bytes]:
            async with asyncio.timeout(deadline_s):
                client = self._http()
                self.access.refresh(client)
                url = f"{self.endpoints[cloud]}{path}"
                async with client.stream("GET", url, headers={"accept-encoding": "identity"}) as response:
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_BODY_BYTES:
                            raise BadAnswer(f"{path} answer is over {MAX_BODY_BYTES // 1024} KiB")
                        chunks.append(chunk)
                    return response.status_code, b"".join(chunks)

        return self._run(get())

    # -- the expectation -------------------------------------------------------------------------
    def _read_rollout(self) -> None:
        """Take the rollout record from :attr:`rollout_source` (in the calling thread); when a
        rollout starts or ends, the expectation is read again. A failed read keeps the last one."""
        if self.rollout_source is None:
            return
        try:
            record = self.rollout_source()
        except Exception:  # the store's trouble is the round's to report, not the probes'
            return
        with self._lock:
            changed = _rollout_key(record) != _rollout_key(self._rollout)
            self._rollout = record
        if changed:
            self._known = None

    def expectation(self, *, refresh: bool = False) -> Expectation:
        """What the endpoints must serve now (see the module docstring); ``refresh`` re-reads the
        buckets now (waiting up to EXPECTATION_DEADLINE_S) unless the last read is under
        EXPECTATION_MIN_AGE_S old. Never raises for an unreadable bucket: :attr:`note` says so,
        and until one answers each endpoint is checked against the canary it reports itself."""
        if not any(cloud.storage for cloud in self.config.clouds.values()):
            self.note = "no bucket configured: each endpoint is checked against the canary it reports"
            return self._own_canaries()
        age = self._age()
        if self._known is None or age > EXPECTATION_TTL_S or (refresh and age >= EXPECTATION_MIN_AGE_S):
            in_flight = self._reading()
            reader = self._start_reading()
            # Wait only when it can help: a read that failed less than a TTL ago is retried in the
            # background, never again at the cost of a round; with an expectation in hand, a round
            # waits a little for a fresh one, and not at all for a read already under way (the
            # buckets are slow: the rounds go on with what they have, and a later one takes it).
            failed_lately = self._monotonic() - self._failed_at < EXPECTATION_TTL_S
            if self._known is None and not failed_lately:
                reader.join(EXPECTATION_DEADLINE_S)
            elif refresh and not failed_lately and not in_flight:
                reader.join(EXPECTATION_REFRESH_WAIT_S)
        self._collect()
        if self._known is not None:
            self.note = self._trouble
            return self._known.expectation
        why = self._trouble or "no expected model read from the buckets yet"
        self.note = short(f"each endpoint is checked against the canary it reports: {why}")
        return self._own_canaries()

    def _own_canaries(self) -> Expectation:
        """No expectation: any version, and each endpoint's own canary (from its ``/v1/model``). One
        endpoint answering wrongly can then fail only itself, never the others."""
        return Expectation(None, (), (), (), self.config.routing.latency_slo_ms)

    def _age(self) -> float:
        return math.inf if self._known is None else self._monotonic() - self._known.at

    def _reading(self) -> bool:
        with self._lock:
            return self._reader is not None and self._reader.is_alive()

    def _start_reading(self) -> threading.Thread:
        with self._lock:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read_buckets, name="expectation", daemon=True)
                self._reader.start()
            return self._reader

    def _read_buckets(self) -> None:
        try:
            outcome: tuple[Expectation | None, str | None] = (
                expected_model(self.config, self._storages(), clock=self.clock, rollout=self._active()),
                None,
            )
        except OrchestratorError as exc:
            outcome = (None, short(str(exc)))
        except Exception as exc:  # a reader thread must report, not die silently
            outcome = (None, short(f"{type(exc).__name__}: {exc}"))
        with self._lock:
            self._outcome = outcome

    def _active(self) -> Mapping[str, Any] | None:
        with self._lock:
            return self._rollout if is_active(self._rollout) else None

    def _collect(self) -> None:
        """Take what the last background read found, if it finished."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
            reading = self._reader is not None and self._reader.is_alive()
        if outcome is None:
            if reading and self._known is None and self._trouble is None:
                self._trouble = f"the buckets did not answer within {EXPECTATION_DEADLINE_S:g} s"
            return
        expect, error = outcome
        if expect is not None:
            self._known, self._trouble, self._failed_at = _Known(expect, self._monotonic()), None, -math.inf
            return
        self._failed_at = self._monotonic()
        kept = f"; still checking against version {self._known.expectation.version}" if self._known else ""
        self._trouble = f"expected model not read from the buckets ({error}){kept}"
        if self._known is not None:
            # Try again at the next TTL, not at every round.
            self._known = _Known(self._known.expectation, self._monotonic())

    def _storages(self) -> dict[str, Storage]:
        if self._buckets is None:
            self._buckets = self._open_buckets()
        return self._buckets

    # -- the loop ------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = self.config.health.timeout_s  # per operation; each probe also has its total
            self._client = self.access.client(self._transport, timeout)
        return self._client

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        task = self._loop.create_task(coroutine)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:  # Ctrl-C mid-round: cancel the probes so that the loop closes clean
            task.cancel()
            # A KeyboardInterrupt raised in any task's step leaves run_until_complete early (the
            # probes and the drift reads are several tasks): drive the loop until this one ended,
            # so that no step of it runs later, in close().
            for _ in range(100):
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(task)
                if task.done():
                    break
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: asyncio would otherwise log it at exit
            raise

    def close(self) -> None:
        """Close the HTTP client, the event loop and the buckets (a background read still running
        is abandoned; its thread is a daemon bounded by the storage timeouts)."""
        if self._loop.is_closed():
            return
        try:
            if self._client is not None:
                self._run(self._client.aclose())
            self._run(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()
            for bucket in (self._buckets or {}).values():
                bucket.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _unexpected(result: ProbeResult, expect: Expectation) -> bool:
    """The endpoint answered with a version that ``expect`` neither wants nor tolerates."""
    served = result.served_version
    known = {expect.version, expect.previous.version if expect.previous else None}
    return served is not None and expect.version is not None and served not in known


def _rollout_key(record: Mapping[str, Any] | None) -> tuple[object, bool]:
    """What of a rollout record changes the expectation: which rollout, and whether it is active."""
    return (record.get("id") if record else None, is_active(record))
