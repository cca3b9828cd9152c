"""Steady prediction traffic, spread over the clouds the way clients of a weighted DNS record spread.

Every client request picks a cloud at random in proportion to the weights it last resolved (read
from Route 53, cached for the record's TTL, as a resolver would), sends one real prediction, and on
failure retries once on another cloud picked the same way. Requests go out at a fixed rate from a
scheduler thread, so a slow or dead cloud cannot slow the offered load down.

Counted per cloud: first attempts, their errors, and the successes each cloud served (retries
included); per request: when it started, where it went, whether it was retried, whether it failed
in the end and whether the answer was the right digit. ``series`` bins successes by time for the
traffic-share plot.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Request", "TrafficGenerator", "WeightsCache"]


class WeightsCache:
    """Weights as a DNS client sees them: re-resolved at most every ``ttl_s``; on a failed lookup
    the last answer is kept (a resolver serves stale rather than nothing). ``history`` holds every
    change seen, as (``clock()`` time, weights)."""

    def __init__(
        self, resolve: Callable[[], Mapping[str, int]], ttl_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._resolve = resolve
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._weights: dict[str, int] = {}
        self._at = float("-inf")
        self.history: list[tuple[float, dict[str, int]]] = []

    def get(self) -> dict[str, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self._ttl_s:
                try:
                    weights = dict(self._resolve())
                except Exception:  # keep serving the last answer
                    weights = self._weights
                if weights != self._weights:
                    self.history.append((self._clock(), weights))
                self._weights = weights
                self._at = now
            return self._weights


@dataclass(frozen=True, slots=True)
class Request:
    at: float  # when it was sent, by ``TrafficGenerator.clock``
    first: str  # the cloud tried first
    served_by: str | None  # the cloud that answered, None if both attempts failed
    retried: bool
    correct: bool
    version: str | None = None  # the model version that answered


@dataclass
class TrafficGenerator:
    urls: Mapping[str, str]
    weights: WeightsCache
    rows: Sequence[Sequence[float]]
    labels: Sequence[str]
    rate_per_s: float = 40.0
    timeout_s: float = 1.0
    seed: int = 0
    clock: Callable[[], float] = time.monotonic  # what ``Request.at`` is measured in
    requests: list[Request] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def start(self) -> TrafficGenerator:
        self._started = time.monotonic()
        self._client = httpx.Client(timeout=self.timeout_s, limits=httpx.Limits(max_connections=32))
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="client")
        self._rng = random.Random(self.seed)  # noqa: S311  # load spreading, not cryptography
        self._thread = threading.Thread(target=self._schedule, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._pool.shutdown(wait=True)
            self._client.close()
            self._thread = None

    def _schedule(self) -> None:
        period = 1.0 / self.rate_per_s
        n = 0
        while not self._stop.is_set():
            n += 1
            with self._lock:
                row = self._rng.randrange(len(self.rows))
            self._pool.submit(self._one, row)
            # Fixed rate: sleep until the n-th slot, not a fixed gap after each send.
            self._stop.wait(max(0.0, self._started + n * period - time.monotonic()))

    def _pick(self, exclude: str | None = None) -> str | None:
        weights = {c: w for c, w in self.weights.get().items() if w > 0 and c != exclude and c in self.urls}
        if not weights:
            return None
        with self._lock:
            return self._rng.choices(list(weights), weights=list(weights.values()))[0]

    def _one(self, row: int) -> None:
        at = self.clock()
        first = self._pick()
        if first is None:
            self._record(Request(at, "none", None, retried=False, correct=False))
            return
        answer = self._predict(first, row)
        served_by, retried = (first, False) if answer is not None else (None, True)
        if answer is None:
            second = self._pick(exclude=first) or first
            answer = self._predict(second, row)
            served_by = second if answer is not None else None
        label, version = answer or (None, None)
        self._record(Request(at, first, served_by, retried, label == self.labels[row], version))

    def _predict(self, cloud: str, row: int) -> tuple[str, str] | None:
        """(predicted label, model version), or None on any failure."""
        try:
            response = self._client.post(
                f"{self.urls[cloud]}/v1/predict", json={"instances": [self.rows[row]]}
            )
            if response.status_code != 200:
                return None
            body = response.json()
            return str(body["predictions"][0]), str(body["version"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    # -- figures ---------------------------------------------------------------------------------
    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per cloud: first attempts sent there, how many of those failed, successes it served,
        and those successes by model version."""
        out: dict[str, dict[str, Any]] = {
            c: {"requests": 0, "errors": 0, "served": 0, "versions": {}} for c in self.urls
        }
        for r in self.snapshot():
            if r.first in out:
                out[r.first]["requests"] += 1
                out[r.first]["errors"] += r.retried
            if r.served_by in out:
                row = out[r.served_by]
                row["served"] += 1
                if r.version:
                    row["versions"][r.version] = row["versions"].get(r.version, 0) + 1
        return out

    def series(self, bin_s: float = 1.0) -> list[dict[str, float]]:
        """Share of successful answers per cloud in each ``bin_s`` slice of time."""
        bins: dict[int, dict[str, int]] = {}
        for r in self.snapshot():
            if r.served_by is not None:
                counts = bins.setdefault(int(r.at // bin_s), {})
                counts[r.served_by] = counts.get(r.served_by, 0) + 1
        rows = []
        for index in sorted(bins):
            total = sum(bins[index].values())
            rows.append({"t": index * bin_s, **{c: bins[index].get(c, 0) / total for c in self.urls}})
        return rows
