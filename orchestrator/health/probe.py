"""Probing one endpoint: is it ready, does it serve the expected model, does it answer right, fast?

One probe is three requests, each timed: ``GET /readyz``, ``GET /v1/model`` (the served version must
be the expected one) and ``POST /v1/predict`` with the manifest's canary rows (labels must match and
probabilities agree within 1e-6). The verdict:

- ``fail``: no answer (refused, timed out), not ready, an error status, or a wrong canary answer;
- ``degraded``: answers correctly but the wrong version, or the canary took longer than the SLO;
- ``ok``: everything as expected, or, during a rollout's grace period, still the previous version
  answering that version's canary right (endpoints pick up a moved pointer at their next reload).

The HTTP client is passed in (httpx, so tests can use a real server or a MockTransport) and so is
the clock: this module decides nothing about state, it only reports what it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from orchestrator.health.state import Observation, Verdict

__all__ = ["CANARY_TOLERANCE", "Expectation", "ProbeResult", "probe"]

# Same tolerance as the endpoint's own load-time canary check (serving.model.CANARY_TOLERANCE).
CANARY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Expectation:
    """What a correct endpoint serves: the version (None: any) and the canary's expected answers."""

    version: str | None
    instances: Sequence[Sequence[float]]
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
    cloud: str
    at: float
    verdict: Verdict
    reason: str
    not_ready: bool = False
    served_version: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def observation(self) -> Observation:
        return Observation(self.verdict, self.reason, not_ready=self.not_ready)

    @property
    def canary_ms(self) -> float | None:
        return self.latency_ms.get("predict")


def probe(  # noqa: PLR0911  # a flat decision table: one return per verdict
    client: httpx.Client,
    cloud: str,
    base_url: str,
    expect: Expectation,
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    at = clock()
    latency: dict[str, float] = {}

    def result(
        verdict: Verdict, reason: str, *, not_ready: bool = False, served_version: str | None = None
    ) -> ProbeResult:
        return ProbeResult(cloud, at, verdict, reason, not_ready, served_version, latency)

    try:
        ready = _timed(latency, "readyz", lambda: client.get(f"{base_url}/readyz", timeout=timeout_s))
        if ready.status_code == 503:
            detail = _json(ready).get("reason", "not ready")
            return result(Verdict.FAIL, f"not ready: {detail}", not_ready=True)
        if ready.status_code != 200:
            return result(Verdict.FAIL, f"/readyz answered {ready.status_code}")
        info = _timed(latency, "model", lambda: client.get(f"{base_url}/v1/model", timeout=timeout_s))
        version = _json(info).get("version") if info.status_code == 200 else None
        served = version if isinstance(version, str) else None
        check = expect.accepts(served, at)
        if check is None:
            return result(
                Verdict.DEGRADED, f"serves version {served}, expected {expect.version}", served_version=served
            )
        answer = _timed(
            latency,
            "predict",
            lambda: client.post(
                f"{base_url}/v1/predict", json={"instances": check.instances}, timeout=timeout_s
            ),
        )
    except httpx.TimeoutException:
        return result(Verdict.FAIL, f"timed out after {timeout_s:g} s")
    except httpx.TransportError as exc:
        return result(Verdict.FAIL, f"unreachable: {type(exc).__name__}: {exc}")
    wrong = _wrong_answer(answer, check)
    if wrong:
        return result(Verdict.FAIL, wrong, served_version=served)
    if latency["predict"] > expect.latency_slo_ms:
        return result(
            Verdict.DEGRADED,
            f"canary took {latency['predict']:.0f} ms, over the {expect.latency_slo_ms:g} ms SLO",
            served_version=served,
        )
    if check is not expect:
        rolling = f"rolling out: still serves {served}, next {expect.version}"
        return result(Verdict.OK, rolling, served_version=served)
    return result(Verdict.OK, "ok", served_version=served)


def _timed(latency: dict[str, float], name: str, call: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.perf_counter()
    try:
        return call()
    finally:
        latency[name] = round((time.perf_counter() - started) * 1e3, 3)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _wrong_answer(response: httpx.Response, expect: Expectation) -> str | None:
    if response.status_code != 200:
        return f"canary predict answered {response.status_code}: {response.text[:200]}"
    body = _json(response)
    labels, probabilities = body.get("predictions"), body.get("probabilities")
    if labels != list(expect.labels):
        return f"canary labels {labels} differ from the manifest's {list(expect.labels)}"
    if not isinstance(probabilities, list) or len(probabilities) != len(expect.probabilities):
        return "canary probabilities missing or of the wrong shape"
    worst = 0.0
    for got_row, want_row in zip(probabilities, expect.probabilities, strict=True):
        if not isinstance(got_row, list) or len(got_row) != len(want_row):
            return "canary probabilities of the wrong shape"
        worst = max(worst, *(abs(float(g) - w) for g, w in zip(got_row, want_row, strict=True)))
    if worst > CANARY_TOLERANCE:
        return f"canary probabilities differ from the manifest's by {worst:.2e} (> {CANARY_TOLERANCE:g})"
    return None
