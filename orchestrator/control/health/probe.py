"""Probing one endpoint: is it ready, does it serve the expected model, does it answer right, fast?

One probe is three requests, each timed: ``GET /readyz``, ``GET /v1/model`` (the served version must
be the expected one) and ``POST /v1/predict`` with the manifest's canary rows (labels must match and
probabilities agree within 1e-6). The verdict:

- ``fail``: no answer (refused, reset, timed out), not ready, an error status, or an answer that is
  not what the endpoint's contract says (not JSON, wrong types or shapes, nulls, a wrong canary);
- ``degraded``: answers correctly but the wrong version, or the canary took longer than the SLO;
- ``ok``: everything as expected, or, during a rollout's grace period, still the previous version
  answering that version's canary right (endpoints pick up a moved pointer at their next reload).

Any answer is a verdict, never an exception and never a hang:

- one total deadline, ``timeout_s``, covers the whole probe (connect, headers and bodies of its
  three requests), so a server that trickles its body a byte at a time fails like a silent one;
- bodies are read up to a size cap (:data:`MAX_BODY_BYTES`) and only without content coding (the
  probe asks for ``identity``; a compressed answer could expand without bound);
- every field read is checked (type, finiteness, shape) before it is used, and anything else
  that goes wrong becomes a failed probe with a short reason (``probe error: TypeError: ...``).

The HTTP client is passed in (an ``httpx.AsyncClient``, so tests can use a real server or a
MockTransport) and so is the clock: this module decides nothing about state, it only reports what it
saw. :func:`probe_many` probes several clouds concurrently.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from orchestrator.control.health.machine import Observation, Verdict
from orchestrator.core.artifact.manifest import CANARY_TOLERANCE
from orchestrator.core.names import NAME_PATTERN

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_REASON",
    "BadAnswer",
    "Expectation",
    "ProbeResult",
    "own_canary",
    "probe",
    "probe_many",
    "read_json",
    "short",
    "wrong_answer",
]

# The largest answer a probe reads. /readyz is a few hundred bytes, /v1/model the manifest's public
# part (features, classes, metrics, canary: tens of kilobytes for the digits model), a canary answer
# a few rows of probabilities. 1 MiB is far above all three and still reads in milliseconds.
MAX_BODY_BYTES = 1024 * 1024
# A reason is one line in a table and in a flip record, not a dump of what an endpoint sent.
MAX_REASON = 200
# What a served version must look like: the model version grammar of the registry. The version an
# endpoint names is stored in the state and shown in operators' tables, so anything else (markup,
# terminal escapes, a path) is a wrong answer, not a version to quote.
_VERSION = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Expectation:
    """What a correct endpoint serves: the version (None: any) and the canary's expected answers."""

    version: str | None
    # Rows of numbers (a ``matrix`` model) or objects keyed by column (a ``columns`` model: numbers,
    # text, null for missing): sent as they are, the form a client sends.
    instances: Sequence[Sequence[float]] | Sequence[Mapping[str, Any]]
    labels: Sequence[str]
    probabilities: Sequence[Sequence[float]]
    latency_slo_ms: float
    # During a rollout (until ``rollout_until``, a clock time), an endpoint still serving the
    # version before this one is healthy if it answers that version's canary: endpoints pick up a
    # moved pointer at their next reload, not at once.
    previous: Expectation | None = None
    rollout_until: float = 0.0

    def accepts(self, served: str | None, at: float) -> Expectation | None:
        """The expectation to check an endpoint serving ``served`` against at ``at``, or None."""
        if self.version is None or served == self.version:
            return self
        if self.previous is not None and served == self.previous.version and at < self.rollout_until:
            return self.previous
        return None


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of ``cloud`` found at ``at`` (unix seconds): the verdict and its one-line
    reason, whether the endpoint said it is not ready, the version it named (None when it named
    none the probe accepts), and each request's time in milliseconds (readyz, model, predict)."""

    cloud: str
    at: float
    verdict: Verdict
    reason: str
    not_ready: bool = False
    served_version: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    # The cloud's drift as judged this round (orchestrator.control.health.drift.judge), or None.
    drift: dict[str, Any] | None = None

    @property
    def observation(self) -> Observation:
        """The result as the health state machine takes it."""
        return Observation(self.verdict, self.reason, not_ready=self.not_ready)

    @property
    def canary_ms(self) -> float | None:
        """How long the canary prediction took (ms), None if the probe did not get that far."""
        return self.latency_ms.get("predict")


class BadAnswer(Exception):
    """An answer a probe does not accept (too large, compressed, not the contract's shape); the
    message is the failed probe's reason."""

    def __init__(self, reason: str, *, not_ready: bool = False, served: str | None = None) -> None:
        super().__init__(reason)
        self.not_ready = not_ready
        self.served = served


async def probe_many(
    client: httpx.AsyncClient,
    endpoints: Mapping[str, str],
    expect: Expectation,
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> dict[str, ProbeResult]:
    """Probe every ``cloud -> base URL`` at once; each probe has its own deadline and verdict."""
    names = list(endpoints)
    results = await asyncio.gather(
        *(probe(client, n, endpoints[n], expect, timeout_s=timeout_s, clock=clock) for n in names)
    )
    return dict(zip(names, results, strict=True))


async def probe(
    client: httpx.AsyncClient,
    cloud: str,
    base_url: str,
    expect: Expectation,
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    """One probe of ``cloud`` at ``base_url``, within ``timeout_s`` seconds in all. Never raises
    (but lets cancellation through): whatever happens is in the result's verdict and reason."""
    at = clock()
    latency: dict[str, float] = {}
    stage = ["/readyz"]  # the request in flight, for the reason of a timeout

    def failed(reason: str, *, not_ready: bool = False, served: str | None = None) -> ProbeResult:
        return ProbeResult(cloud, at, Verdict.FAIL, short(reason), not_ready, served, latency)

    try:
        async with asyncio.timeout(timeout_s):
            verdict, reason, served = await _probe(client, base_url, expect, at, latency, stage)
    except TimeoutError:
        return failed(f"timed out after {timeout_s:g} s (waiting for {stage[0]})")
    except httpx.TimeoutException:
        return failed(f"timed out after {timeout_s:g} s (waiting for {stage[0]})")
    except httpx.TransportError as exc:
        return failed(f"unreachable ({stage[0]}): {type(exc).__name__}: {exc}")
    except BadAnswer as exc:
        return failed(str(exc), not_ready=exc.not_ready, served=exc.served)
    except Exception as exc:  # anything else an endpoint makes us hit: a verdict, not a crash
        return failed(f"probe error ({stage[0]}): {type(exc).__name__}: {exc}")
    return ProbeResult(cloud, at, verdict, short(reason), False, served, latency)


async def _probe(
    client: httpx.AsyncClient,
    base_url: str,
    expect: Expectation,
    at: float,
    latency: dict[str, float],
    stage: list[str],
) -> tuple[Verdict, str, str | None]:
    status, ready = await _request(client, "GET", base_url, "/readyz", latency)
    if status == 503:
        detail = ready.get("reason") if isinstance(ready, dict) else None
        raise BadAnswer(
            f"not ready: {detail if isinstance(detail, str) else 'no reason given'}", not_ready=True
        )
    if status != 200:
        raise BadAnswer(f"/readyz answered {status}")
    # Any 200 is ready (a proxy may answer it with no body), unless it says otherwise; what it
    # serves is then checked on /v1/model and /v1/predict, which must answer the contract.
    if isinstance(ready, dict) and ready.get("ready", True) is not True:
        raise BadAnswer("/readyz answered 200 but not ready: true")

    stage[0] = "/v1/model"
    status, info = await _request(client, "GET", base_url, "/v1/model", latency)
    if status != 200:
        raise BadAnswer(f"/v1/model answered {status}")
    model = _json_object(info, "/v1/model")
    served = model.get("version")
    if not isinstance(served, str) or not _VERSION.fullmatch(served):
        raise BadAnswer("/v1/model names no version (lower-case letters, digits, '.', '_' and '-')")
    check = expect.accepts(served, at)
    if check is None:
        return Verdict.DEGRADED, f"serves version {served}, expected {expect.version}", served
    rolling = check is not expect  # still the previous version, within the rollout's grace
    if not check.instances:  # no canary from the buckets: the endpoint's own is replayed
        check = own_canary(model, check.latency_slo_ms, served)
    stage[0] = "/v1/predict"
    status, answer = await _request(
        client,
        "POST",
        base_url,
        "/v1/predict",
        latency,
        json={"instances": check.instances},
        headers={CANARY_HEADER: "1"},
    )
    if status != 200:
        detail = answer.get("error") if isinstance(answer, dict) else None
        raise BadAnswer(
            f"canary predict answered {status}" + (f": {detail}" if isinstance(detail, str) else "")
        )
    wrong = wrong_answer(answer, check)
    if wrong:
        raise BadAnswer(wrong, served=served)
    if latency["predict"] > expect.latency_slo_ms:
        slow = f"canary took {latency['predict']:.0f} ms, over the {expect.latency_slo_ms:g} ms SLO"
        return Verdict.DEGRADED, slow, served
    if rolling:
        return Verdict.OK, f"rolling out: still serves {served}, next {expect.version}", served
    return Verdict.OK, "ok", served


# Sent with the canary rows: the endpoint leaves them out of its drift window (synthetic rows, not
# traffic; serving.runtime.CANARY_HEADER).
CANARY_HEADER = "x-mlorch-canary"
# Names of the probe's requests in ``ProbeResult.latency_ms``.
_TIMING = {"/readyz": "readyz", "/v1/model": "model", "/v1/predict": "predict"}


async def _request(
    client: httpx.AsyncClient,
    method: str,
    base_url: str,
    path: str,
    latency: dict[str, float],
    **kwargs: Any,
) -> tuple[int, object]:
    """(status, parsed JSON body or None when the body is not JSON), timed into ``latency``."""
    started = time.perf_counter()
    try:
        status, body = await read_json(client, method, f"{base_url}{path}", path=path, **kwargs)
    finally:
        latency[_TIMING[path]] = round((time.perf_counter() - started) * 1e3, 3)
    return status, body


async def read_json(
    client: httpx.AsyncClient, method: str, url: str, *, path: str, **kwargs: Any
) -> tuple[int, object]:
    """Send one request and read its answer within the caps: (status, the body parsed as JSON, or
    None when it is empty or not JSON). An answer over :data:`MAX_BODY_BYTES` or with a content
    coding is refused (a failed probe naming ``path``). The caller bounds the time (the client's
    own timeouts, or an ``asyncio.timeout`` around the call)."""
    headers = {"accept": "application/json", "accept-encoding": "identity", **kwargs.pop("headers", {})}
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        coding = response.headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            raise BadAnswer(f"{path} answered with content-encoding {short(coding, 40)} (asked for identity)")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise BadAnswer(f"{path} answer is over {MAX_BODY_BYTES // 1024} KiB")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():  # no content coding (refused above): raw bytes
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BadAnswer(f"{path} answer is over {MAX_BODY_BYTES // 1024} KiB")
            chunks.append(chunk)
    try:
        return response.status_code, orjson.loads(b"".join(chunks)) if size else None
    except orjson.JSONDecodeError:
        return response.status_code, None


def own_canary(model: Mapping[str, Any], slo: float, served: str) -> Expectation:
    """The canary an endpoint reports in its ``/v1/model`` answer, as an expectation to check it
    against; BadAnswer unless it is well formed (rows of finite numbers, or objects keyed by column
    whose values are finite numbers, text or null; a string label and a row of probabilities per
    row, at most 1000 rows)."""
    canary = model.get("canary")
    if not isinstance(canary, dict):
        raise BadAnswer("no canary known, and /v1/model reports none", served=served)
    instances, labels, probabilities = (canary.get(k) for k in ("instances", "labels", "probabilities"))
    if not (isinstance(instances, list) and isinstance(labels, list) and isinstance(probabilities, list)):
        raise BadAnswer("no canary known, and /v1/model reports none", served=served)
    if not 0 < len(instances) == len(labels) == len(probabilities) <= 1000:
        raise BadAnswer("/v1/model reports a canary of the wrong shape", served=served)
    if (
        not all(isinstance(label, str) for label in labels)
        or not all(isinstance(row, list) and all(_finite(x) for x in row) for row in probabilities)
        or not (
            all(isinstance(row, list) and all(_finite(x) for x in row) for row in instances)
            or all(_object_row(row) for row in instances)
        )
    ):
        raise BadAnswer(
            "/v1/model reports a canary that is not rows of numbers and labels (or objects keyed "
            "by column of numbers, text and nulls)",
            served=served,
        )
    return Expectation(None, instances, labels, probabilities, slo)


def _object_row(row: object) -> bool:
    """A canary row of a ``columns`` model: a non-empty object of column name → finite number,
    text or null."""
    return (
        isinstance(row, dict)
        and bool(row)
        and all(
            isinstance(k, str) and (v is None or isinstance(v, str) or _finite(v)) for k, v in row.items()
        )
    )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_object(body: object, path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadAnswer(f"{path} answer is not a JSON object")
    return body


def wrong_answer(body: object, expect: Expectation) -> str | None:  # noqa: PLR0911  # one return per check
    """Why a canary answer is wrong, or None if it is right: checked field by field, so that no
    answer, however malformed, raises."""
    if not isinstance(body, dict):
        return "canary answer is not a JSON object"
    labels, probabilities = body.get("predictions"), body.get("probabilities")
    rows = len(expect.labels)
    if not isinstance(labels, list) or len(labels) != rows or not all(isinstance(x, str) for x in labels):
        return f"canary predictions are not {rows} labels (strings)"
    if labels != list(expect.labels):
        expected = short(str(list(expect.labels)), 80)
        return f"canary labels {short(str(labels), 80)} differ from the manifest's {expected}"
    if not isinstance(probabilities, list) or len(probabilities) != rows:
        return "canary probabilities missing or of the wrong shape"
    worst = 0.0
    for got_row, want_row in zip(probabilities, expect.probabilities, strict=True):
        if not isinstance(got_row, list) or len(got_row) != len(want_row):
            return "canary probabilities of the wrong shape"
        for got, want in zip(got_row, want_row, strict=True):
            if isinstance(got, bool) or not isinstance(got, int | float):
                return "canary probabilities are not all numbers (null, a string...)"
            if not _finite(got):
                return "canary probabilities are not all finite"
            worst = max(worst, abs(float(got) - want))
    if worst > CANARY_TOLERANCE:
        return f"canary probabilities differ from the manifest's by {worst:.2e} (> {CANARY_TOLERANCE:g})"
    return None


def short(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line, printable, at most ``limit`` characters (an endpoint's words are quoted
    in reasons; they must not break a table, a log line or a terminal)."""
    flat = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
