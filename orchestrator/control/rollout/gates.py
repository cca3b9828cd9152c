"""A rollout stage's gates, as pure functions over what was measured (plain dicts and numbers).

Each gate compares the cloud just moved to the new version with the clouds still on the old one,
over the stage's bake time, and answers a :class:`Verdict`: ``pass``, ``fail`` (the rollout is
rolled back, with the verdict's reason) or ``no-data`` (too little was measured to judge: recorded,
neither passes nor fails the stage).

- **error rate**: the share of prediction requests answered 5xx, from the endpoints' own
  ``/metrics`` (``http_requests_total``, the counter's increase over the bake time), with the
  control plane's probes that failed counted as errors too. Fails when the moved cloud's share
  exceeds the old clouds' pooled share by more than ``max_error_rate`` (an absolute share).
- **p95 latency**: from the ``http_request_duration_seconds`` histogram's increase, the 95th
  percentile by linear interpolation inside the bucket (Prometheus' ``histogram_quantile``). Fails
  when the moved cloud's p95 exceeds ``max_p95_ratio`` times the old clouds' pooled p95 and by more
  than ``p95_slack_ms`` (so that sub-millisecond noise never fails a stage).
- **canary**: every probe of the moved cloud during the bake time served the new version and
  passed its canary rows. Any failure fails.
- **prediction distribution**: from the endpoints' drift answers (``GET /v1/model/drift``,
  contract in docs/operating.md): the Jensen-Shannon distance (base 2, in [0, 1];
  ``scipy.spatial.distance.jensenshannon``) between the moved cloud's ``prediction.counts`` and the
  old clouds' pooled counts, and the moved cloud's ``prediction.js_distance`` against the
  manifest's reference. Fails above ``max_js_distance``. A missing or malformed answer, or one
  with fewer than ``min_rows`` rows in its window, is ``no-data``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EndpointSample",
    "Verdict",
    "canary_gate",
    "drift_gate",
    "error_rate_gate",
    "histogram_quantile",
    "is_prediction_route",
    "js_distance",
    "latency_gate",
    "parse_metrics",
]

Status = Literal["pass", "fail", "no-data"]


def is_prediction_route(route: object) -> bool:
    """Whether an ``endpoint`` label is a prediction route (``/v1/predict``,
    ``/v1/models/{name}:predict``, the V2 ``.../infer``): the traffic the gates judge. Probes of
    ``/v1/model``, ``/metrics`` and health routes are not."""
    return isinstance(route, str) and (route.endswith("predict") or route.endswith("/infer"))


@dataclass(frozen=True)
class Verdict:
    """One gate's answer for one stage: which gate, ``pass``/``fail``/``no-data``, why (one line),
    and the numbers it judged (for the record and ``status``)."""

    gate: str
    status: Status
    reason: str
    values: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """As stored in the rollout record."""
        return {"gate": self.gate, "status": self.status, "reason": self.reason, "values": dict(self.values)}


@dataclass(frozen=True)
class EndpointSample:
    """What one endpoint's ``/metrics`` said at one moment, reduced to what the gates need:
    prediction requests by status class, and the latency histogram's cumulative bucket counts
    (upper bound in seconds -> count, ``+Inf`` included) over prediction requests."""

    requests: int
    errors: int  # answered 5xx
    buckets: Mapping[float, float]

    def minus(self, before: EndpointSample) -> EndpointSample:
        """The increase since ``before`` (a counter that went down was reset: the endpoint
        restarted, so the later value is the increase)."""
        if self.requests < before.requests:
            return self
        return EndpointSample(
            self.requests - before.requests,
            self.errors - before.errors,
            {le: count - before.buckets.get(le, 0.0) for le, count in self.buckets.items()},
        )

    @staticmethod
    def pooled(samples: Iterable[EndpointSample]) -> EndpointSample:
        """Several endpoints' increases added up (the old clouds, judged as one)."""
        requests = errors = 0
        buckets: dict[float, float] = {}
        for s in samples:
            requests += s.requests
            errors += s.errors
            for le, count in s.buckets.items():
                buckets[le] = buckets.get(le, 0.0) + count
        return EndpointSample(requests, errors, buckets)


def parse_metrics(text: str) -> EndpointSample:
    """Reduce a Prometheus text exposition (the endpoint's ``/metrics``) to an
    :class:`EndpointSample`, parsed with prometheus-client's own parser. ValueError when the text
    is not an exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not is_prediction_route(sample.labels.get("endpoint")):
                continue
            if sample.name == "http_requests_total":
                requests += int(sample.value)
                if str(sample.labels.get("status", "")).startswith("5"):
                    errors += int(sample.value)
            elif sample.name == "http_request_duration_seconds_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return EndpointSample(requests, errors, buckets)


def error_rate_gate(
    moved: EndpointSample,
    old: EndpointSample,
    *,
    probes: int,
    probe_failures: int,
    max_error_rate: float,
    min_requests: int,
) -> Verdict:
    """The error-rate gate (module docstring) over the bake time's increases; ``probes`` and
    ``probe_failures`` are the control plane's probes of the moved cloud. The probes are
    ``POST /v1/predict`` requests the endpoint counts in its own ``/metrics``, so the two counts
    overlap: the larger of each pair is taken, never their sum (the probes alone count when the
    endpoint's counters are missing or were reset). ``no-data`` with fewer than ``min_requests``."""
    total = max(moved.requests, probes)
    errors = min(total, max(moved.errors, probe_failures))
    values: dict[str, Any] = {"requests": moved.requests, "errors": moved.errors, "probes": probes,
                              "probe_failures": probe_failures, "old_requests": old.requests}  # fmt: skip
    if total < min_requests:
        return Verdict(
            "error-rate", "no-data", f"{total} requests and probes, fewer than {min_requests}", values
        )
    share = errors / total
    old_share = old.errors / old.requests if old.requests else 0.0
    values.update(share=round(share, 6), old_share=round(old_share, 6))
    if share > old_share + max_error_rate:
        return Verdict(
            "error-rate",
            "fail",
            f"{errors} of {total} requests failed ({share:.1%}), the old version's clouds {old_share:.1%} "
            f"(allowed: {max_error_rate:.1%} more)",
            values,
        )
    return Verdict("error-rate", "pass", f"{share:.1%} failed (old version {old_share:.1%})", values)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound -> count), interpolated linearly
    inside its bucket as Prometheus' ``histogram_quantile`` does (the lowest bucket starts at 0;
    a quantile in the ``+Inf`` bucket is the highest finite bound). None when it is empty."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_gate(
    moved: EndpointSample,
    old: EndpointSample,
    *,
    max_p95_ratio: float,
    p95_slack_ms: float,
    min_requests: int,
) -> Verdict:
    """The p95-latency gate (module docstring); ``no-data`` when either side has fewer than
    ``min_requests`` requests in its histogram."""
    moved_n = max(moved.buckets.values(), default=0.0)
    old_n = max(old.buckets.values(), default=0.0)
    values: dict[str, Any] = {"requests": moved_n, "old_requests": old_n}
    if moved_n < min_requests or old_n < min_requests:
        return Verdict(
            "p95-latency",
            "no-data",
            f"{moved_n:.0f} requests on the new version, {old_n:.0f} on the old (need {min_requests} each)",
            values,
        )
    p95 = (histogram_quantile(0.95, moved.buckets) or 0.0) * 1000
    old_p95 = (histogram_quantile(0.95, old.buckets) or 0.0) * 1000
    values.update(p95_ms=round(p95, 3), old_p95_ms=round(old_p95, 3))
    if p95 > old_p95 * max_p95_ratio and p95 > old_p95 + p95_slack_ms:
        return Verdict(
            "p95-latency",
            "fail",
            f"p95 {p95:.1f} ms against {old_p95:.1f} ms on the old version (allowed: x{max_p95_ratio:g} "
            f"or +{p95_slack_ms:g} ms)",
            values,
        )
    return Verdict("p95-latency", "pass", f"p95 {p95:.1f} ms (old version {old_p95:.1f} ms)", values)


def canary_gate(
    failures: Sequence[str], probes: int, *, failed: int | None = None, tolerated: int = 0
) -> Verdict:
    """The canary gate: ``failures`` are the reasons of the moved cloud's probes that did not serve
    the new version or failed its canary rows during the bake time (``probes`` in all; ``failed``
    how many, when ``failures`` keeps only the first few). Up to ``tolerated`` failed probes pass
    (one lost probe is noise, as the health state machine's ``unhealthy_threshold`` says)."""
    count = len(failures) if failed is None else max(failed, len(failures))
    values = {"probes": probes, "failures": count, "tolerated": tolerated}
    if count > tolerated:
        return Verdict(
            "canary", "fail", f"{count} of {probes} probes failed: {failures[0] if failures else '?'}", values
        )
    if probes == 0:
        return Verdict("canary", "no-data", "no probe completed during the bake time", values)
    return Verdict("canary", "pass", f"{probes} probes passed the canary", values)


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """The Jensen-Shannon distance (base 2, in [0, 1]) between two class distributions given as
    counts or shares by label, over the union of their labels (a label one lacks counts 0), with
    ``scipy.spatial.distance.jensenshannon``. ValueError when either is empty or all zero.

    Where scipy is not installed (the endpoint's image, in which the scheduled health job runs and
    may take a rollout over), the same definition (Lin 1991, "Divergence measures based on the
    Shannon entropy"): sqrt((KL(p||m) + KL(q||m)) / 2) with m = (p + q) / 2, logarithms base 2;
    tests/control/test_rollout_gates.py checks both agree."""
    labels = sorted(set(p) | set(q))
    a = [max(0.0, float(p.get(label, 0.0))) for label in labels]
    b = [max(0.0, float(q.get(label, 0.0))) for label in labels]
    if not labels or sum(a) <= 0 or sum(b) <= 0:
        raise ValueError("an empty distribution")
    try:
        from scipy.spatial.distance import jensenshannon
    except ImportError:
        return _js_distance(a, b)
    return float(jensenshannon(a, b, base=2))


def _js_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """:func:`js_distance` without scipy, on two non-negative vectors with positive sums."""
    sa, sb = sum(a), sum(b)
    p = [x / sa for x in a]
    q = [x / sb for x in b]
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]

    def kl(u: Sequence[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(u, m, strict=True) if x > 0)

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _counts(answer: object) -> tuple[dict[str, float], int] | None:
    """(prediction.counts, window.rows) from one drift answer, None when malformed."""
    if not isinstance(answer, Mapping):
        return None
    prediction, window = answer.get("prediction"), answer.get("window")
    if not isinstance(prediction, Mapping) or not isinstance(window, Mapping):
        return None
    counts, rows = prediction.get("counts"), window.get("rows")
    if not isinstance(counts, Mapping) or isinstance(rows, bool) or not isinstance(rows, int):
        return None
    clean: dict[str, float] = {}
    for label, value in counts.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            return None
        clean[str(label)] = float(value)
    return clean, rows


def drift_gate(
    moved: object,
    old: Sequence[object],
    *,
    max_js_distance: float,
    min_rows: int,
    moved_version: str | None = None,
    old_version: str | None = None,
) -> Verdict:
    """The prediction-distribution gate (module docstring) over the drift answers of the moved
    cloud (``moved``) and of the clouds still on the old version (``old``), each the decoded JSON
    of ``GET /v1/model/drift`` or None when it could not be had (404 on an endpoint without it, an
    error, a malformed body). With ``moved_version`` / ``old_version``, an answer whose
    ``model_version`` is not the version expected on that cloud (a window of another version) is
    no data. Never raises on what the endpoints answered."""
    if moved_version is not None and _version_of(moved) != moved_version:
        moved = None
    if old_version is not None:
        old = [answer for answer in old if _version_of(answer) == old_version]
    mine = _counts(moved)
    values: dict[str, Any] = {}
    if mine is None:
        return Verdict("prediction-distribution", "no-data", "no drift data from the new version", values)
    counts, rows = mine
    values["rows"] = rows
    if rows < min_rows:
        return Verdict(
            "prediction-distribution",
            "no-data",
            f"no drift data: {rows} rows in the window (need {min_rows})",
            values,
        )
    pooled: dict[str, float] = {}
    old_rows = 0
    for answer in old:
        theirs = _counts(answer)
        if theirs is None:
            continue
        old_rows += theirs[1]
        for label, value in theirs[0].items():
            pooled[label] = pooled.get(label, 0.0) + value
    distances: dict[str, float] = {}
    if old_rows >= min_rows and sum(pooled.values()) > 0 and sum(counts.values()) > 0:
        distances["old_version"] = js_distance(counts, pooled)
    prediction = moved.get("prediction") if isinstance(moved, Mapping) else None
    reference = prediction.get("js_distance") if isinstance(prediction, Mapping) else None
    if isinstance(reference, int | float) and not isinstance(reference, bool) and math.isfinite(reference):
        distances["reference"] = float(reference)
    values.update({f"js_{k}": round(v, 6) for k, v in distances.items()}, old_rows=old_rows)
    if not distances:
        return Verdict(
            "prediction-distribution",
            "no-data",
            "no drift data to compare with: the old version's clouds and the reference are missing",
            values,
        )
    worst = max(distances, key=lambda k: distances[k])
    if distances[worst] > max_js_distance:
        against = "the old version's predictions" if worst == "old_version" else "the reference"
        return Verdict(
            "prediction-distribution",
            "fail",
            f"predicted classes drifted from {against}: "
            f"JS distance {distances[worst]:.3f} > {max_js_distance:g}",
            values,
        )
    shown = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in distances.items())
    return Verdict("prediction-distribution", "pass", f"JS distance {shown}", values)


def _version_of(answer: object) -> object:
    """The ``model_version`` a drift answer says its window is of (None when it says none)."""
    return answer.get("model_version") if isinstance(answer, Mapping) else None
