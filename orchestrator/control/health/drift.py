"""Each cloud's drift, read from its endpoint's ``GET /v1/model/drift`` every health round, judged.

The endpoint's answer (the shared contract, :mod:`serving.drift`) is read within the probe's total
deadline and body cap (:func:`~orchestrator.control.health.probe.read_json`), concurrently with the
probes; a missing key, a wrong type, a non-finite number or no answer is "no drift data" with a
reason: a verdict, never an exception. :func:`judge` reads one cloud's answer against the ``drift:``
configuration:

- ``insufficient``: fewer than ``min_rows`` rows counted in the window (``window.counted_rows``:
  a large call's features are counted on a sample, and PSI's noise is that of the rows counted,
  about ``(bins - 1) / rows``; PSI of a few rows is noise);
- ``alarm``: some feature's PSI >= ``psi_alarm`` (0.25: "significant shift"), or the predicted
  classes' PSI >= ``psi_alarm``;
- ``warn``: some PSI >= ``psi_warn`` (0.1: "moderate shift"; the usual reading of PSI, Siddiqi,
  "Credit Risk Scorecards", 2006);
- ``ok`` otherwise; ``unavailable`` without an answer.

The feature over threshold is named (the largest PSI first). :func:`cross_cloud` compares the
clouds' outputs with each other, which no single endpoint can see. With at least three clouds
holding ``min_rows`` rows (during a rollout: serving the same model version), a cloud is flagged
when its outputs diverge from the consensus while none of its features' PSI reaches ``psi_warn``
(its inputs look like the reference):

- the Jensen-Shannon distance (base 2) between its predicted-class shares and the consensus (per
  class, the median share over the clouds compared) is at least ``prediction_divergence``; or
- its mean maximum probability differs from the clouds' median by ``confidence_divergence`` or
  more (a model that lost its signal can still spread its predictions over the classes like the
  others do).

During a rollout, clouds on another version are "not compared: different versions" (a rollout
serves two versions on purpose: the new one must not be flagged, nor degraded, for being new);
outside one, a cloud on another version than the others is compared like any other.
Medians, so that one odd cloud of three cannot move the consensus. Such a cloud has a model
problem (a wrong or broken model, a bad version), not a traffic change, which would move its
inputs too.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.probe import BadAnswer, read_json, short

__all__ = [
    "DriftReading",
    "cross_cloud",
    "judge",
    "parse_drift",
    "read_drift",
    "read_drift_many",
    "with_drift",
]

# The largest number of features or classes read from one answer: the manifest's own bounds.
_MAX_KEYS = 100_000


@dataclass(frozen=True)
class DriftReading:
    """One endpoint's drift answer, checked: ``features`` name -> PSI and ``js_distance`` name -> JS
    distance (None while the window is empty), predicted-class ``counts`` and the ``reference``
    shares (None without a profile), prediction PSI, mean confidence, estimated accuracy."""

    version: str | None
    rows: int
    capacity: int
    features: dict[str, float | None]
    counts: dict[str, int]
    prediction_psi: float | None
    js_distance: dict[str, float | None]
    reference: dict[str, float] | None
    confidence_mean: float | None
    estimated_accuracy: float | None
    # Rows whose features were actually counted (``window.counted_rows``; ``rows`` from an endpoint
    # that does not say): the features' PSI has this many rows' noise.
    counted: int | None = None


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)


def parse_drift(answer: object) -> DriftReading:
    """The contract's answer as a :class:`DriftReading`; ValueError saying what is wrong."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    window, features = answer.get("window"), answer.get("features")
    prediction, confidence = answer.get("prediction"), answer.get("confidence")
    if not (isinstance(window, dict) and isinstance(features, dict) and isinstance(prediction, dict)):
        raise ValueError("window, features or prediction missing")
    if not isinstance(confidence, dict):
        raise ValueError("confidence missing")
    rows, capacity = window.get("rows"), window.get("capacity_rows")
    if not (isinstance(rows, int) and isinstance(capacity, int)) or isinstance(rows, bool) or rows < 0:
        raise ValueError("window.rows is not a count")
    counted = window.get("counted_rows", rows)
    if not isinstance(counted, int) or isinstance(counted, bool) or not 0 <= counted <= rows:
        raise ValueError("window.counted_rows is not a count of at most window.rows")
    counts = prediction.get("counts")
    if not isinstance(counts, dict) or len(counts) > _MAX_KEYS or len(features) > _MAX_KEYS:
        raise ValueError("prediction.counts missing")
    if not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in counts.items()
    ):
        raise ValueError("prediction.counts are not counts by class")
    psi: dict[str, float | None] = {}
    js: dict[str, float | None] = {}
    for name, values in features.items():
        if not isinstance(values, dict):
            raise ValueError(f"features[{name[:40]!r}] is not an object")
        psi[name[:256]] = _number(values.get("psi"))
        js[name[:256]] = _number(values.get("js_distance"))
    reference = prediction.get("reference")
    if reference is not None and not (
        isinstance(reference, dict) and all(_number(v) is not None for v in reference.values())
    ):
        raise ValueError("prediction.reference is not shares by class")
    version = answer.get("model_version")
    return DriftReading(
        version=version[:64] if isinstance(version, str) else None,
        rows=rows,
        capacity=capacity,
        features=psi,
        counts=counts,
        prediction_psi=_number(prediction.get("psi")),
        js_distance=js,
        reference=reference,
        confidence_mean=_number(confidence.get("mean")),
        estimated_accuracy=_number(answer.get("estimated_accuracy")),
        counted=counted,
    )


def _counted(reading: DriftReading) -> int:
    return reading.rows if reading.counted is None else reading.counted


def judge(reading: DriftReading | None, problem: str | None, cfg: Any) -> dict[str, Any]:
    """One cloud's drift summary (as status and the health report show it): ``status`` (see the
    module docstring), ``rows``, ``over`` (feature -> PSI at or over ``psi_warn``, largest first,
    at most 5), ``worst`` (the feature with the largest PSI), prediction PSI, mean confidence,
    estimated accuracy, and ``reason`` (one line). ``cfg`` is the ``drift:`` configuration."""
    if reading is None:
        return {"status": "unavailable", "reason": f"no drift data: {problem or 'no answer'}"}
    summary: dict[str, Any] = {
        "rows": reading.rows,
        "counted_rows": _counted(reading),
        "capacity_rows": reading.capacity,
        "prediction_psi": reading.prediction_psi,
        "confidence_mean": reading.confidence_mean,
        "estimated_accuracy": reading.estimated_accuracy,
        "over": {},
        "worst": None,
    }
    known = sorted(((v, k) for k, v in reading.features.items() if v is not None), reverse=True)
    if known:
        summary["worst"] = {"feature": known[0][1], "psi": known[0][0]}
    if not reading.features and reading.prediction_psi is None:
        summary.update(status="no_reference", reason="the model's manifest has no reference profile")
        return summary
    counted = _counted(reading)
    if counted < cfg.min_rows:
        summary.update(
            status="insufficient",
            reason=f"{counted} rows counted in the window"
            + (f" (of {reading.rows})" if counted != reading.rows else "")
            + f", fewer than {cfg.min_rows}"
            + (
                f" (min_rows is above the endpoint's window of {reading.capacity} rows: it is never judged)"
                if reading.capacity < cfg.min_rows
                else ""
            ),
        )
        return summary
    over = [(k, v) for v, k in known if v >= cfg.psi_warn]
    summary["over"] = dict(over[:5])
    prediction = reading.prediction_psi or 0.0
    top = known[0][0] if known else 0.0
    if top >= cfg.psi_alarm or prediction >= cfg.psi_alarm:
        status = "alarm"
    elif top >= cfg.psi_warn or prediction >= cfg.psi_warn:
        status = "warn"
    else:
        status = "ok"
    summary["status"] = status
    if over:
        named = ", ".join(f"{k} PSI {v:.2f}" for k, v in over[:3])
        summary["reason"] = f"{status}: {named}" + (f" and {len(over) - 3} more" if len(over) > 3 else "")
    elif status != "ok":
        summary["reason"] = f"{status}: predicted classes PSI {prediction:.2f}"
    else:
        summary["reason"] = f"ok: largest PSI {top:.2f}"
    return summary


def _js_distance(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon distance with base 2 of two share vectors (as scipy's jensenshannon)."""
    sp, sq = sum(p), sum(q)
    p, q = [x / sp for x in p], [x / sq for x in q]
    total = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a > 0:
            total += a * math.log2(a / m)
        if b > 0:
            total += b * math.log2(b / m)
    return math.sqrt(max(0.0, total / 2))


def cross_cloud(
    readings: Mapping[str, DriftReading | None], cfg: Any, *, across_versions: bool = True
) -> dict[str, dict[str, Any]]:
    """Per cloud compared (see the module docstring): ``js_distance`` of its predicted-class shares
    to the consensus, ``confidence_gap`` (its mean confidence minus the median) and ``flagged``.
    Clouds with ``min_rows`` rows are compared, at least three at a time (two cannot say which one
    differs).

    ``across_versions`` (outside a rollout): every such cloud is compared with the others whatever
    version it serves: a cloud that serves another version than the rest, or the same version with
    other answers (a bad sync, a stale or tampered pointer, a broken image), is what no single-cloud
    monitor sees. During a rollout (``across_versions=False``, the state store's record active),
    clouds are on different versions on purpose and the rollout's own gates compare them: only
    clouds on the same ``model_version`` are compared, in groups of three or more, and a cloud
    outside such a group answers ``{"flagged": False, "not_compared": "different versions", ...}``."""
    usable = {
        c: r
        for c, r in readings.items()
        if r is not None and r.rows >= cfg.min_rows and sum(r.counts.values())
    }
    if across_versions:
        return _compare(usable, cfg) if len(usable) >= 3 else {}
    groups: dict[str | None, dict[str, DriftReading]] = {}
    for cloud, reading in usable.items():
        groups.setdefault(reading.version, {})[cloud] = reading
    result: dict[str, dict[str, Any]] = {}
    for group in groups.values():
        if len(group) >= 3:
            result |= _compare(group, cfg)
        elif len(groups) > 1:
            for cloud in group:
                result[cloud] = {
                    "js_distance": None,
                    "confidence_gap": None,
                    "flagged": False,
                    "not_compared": "different versions",
                }
    return result


def _compare(usable: Mapping[str, DriftReading], cfg: Any) -> dict[str, dict[str, Any]]:
    """The comparison of three or more clouds serving one model version."""
    classes = sorted({k for r in usable.values() for k in r.counts})
    shares = {c: [r.counts.get(k, 0) / sum(r.counts.values()) for k in classes] for c, r in usable.items()}
    # The consensus: per class the median share over the clouds compared, and the median mean
    # confidence: with three clouds, one odd cloud cannot move it (a pooled mean of the others would
    # carry the odd cloud into every other cloud's comparison).
    consensus = [statistics.median(s[i] for s in shares.values()) for i in range(len(classes))]
    means = [r.confidence_mean for r in usable.values()]
    typical = statistics.median(m for m in means if m is not None) if None not in means else None
    result = {}
    for cloud, reading in usable.items():
        distance = _js_distance(shares[cloud], consensus) if sum(consensus) > 0 else 0.0
        gap = None
        if typical is not None and reading.confidence_mean is not None:
            gap = reading.confidence_mean - typical
        inputs_steady = all(v is None or v < cfg.psi_warn for v in reading.features.values())
        diverges = distance >= cfg.prediction_divergence or (
            gap is not None and abs(gap) >= cfg.confidence_divergence
        )
        result[cloud] = {
            "js_distance": round(distance, 4),
            "confidence_gap": None if gap is None else round(gap, 4),
            "flagged": diverges and inputs_steady,
        }
    return result


async def read_drift(
    client: Any, base_url: str, *, timeout_s: float
) -> tuple[DriftReading | None, str | None]:
    """``GET /v1/model/drift`` of one endpoint within ``timeout_s`` in all and the probe's body cap:
    (the reading, None) or (None, why there is none). Never raises (cancellation aside)."""
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await read_json(
                client, "GET", f"{base_url}/v1/model/drift", path="/v1/model/drift"
            )
        if status != 200:
            raise BadAnswer(f"/v1/model/drift answered {status}")
        return parse_drift(body), None
    except (TimeoutError, httpx.TimeoutException):
        problem = f"timed out after {timeout_s:g} s"
    except httpx.TransportError as exc:
        problem = f"unreachable: {type(exc).__name__}"
    except BadAnswer as exc:
        problem = str(exc)
    except ValueError as exc:
        problem = f"malformed answer: {exc}"
    except Exception as exc:  # whatever an endpoint makes us hit: no drift data, never a crash
        problem = f"{type(exc).__name__}: {exc}"
    return None, short(problem)


async def read_drift_many(
    client: Any, endpoints: Mapping[str, str], *, timeout_s: float
) -> dict[str, tuple[DriftReading | None, str | None]]:
    """:func:`read_drift` of every ``cloud -> base URL`` at once."""
    names = list(endpoints)
    answers = await asyncio.gather(*(read_drift(client, endpoints[n], timeout_s=timeout_s) for n in names))
    return dict(zip(names, answers, strict=True))


def with_drift(
    results: Mapping[str, Any],
    readings: Mapping[str, tuple[DriftReading | None, str | None]],
    cfg: Any,
    *,
    compared: Mapping[str, DriftReading | None] | None = None,
    across_versions: bool = True,
) -> dict[str, Any]:
    """The probe results with each cloud's drift summary attached (:func:`judge`, plus the
    cross-cloud comparison over ``compared``: every cloud's latest reading, default ``readings``;
    ``across_versions`` as :func:`cross_cloud` has it).
    With ``cfg.degrade``, an ``ok`` probe of a cloud in drift alarm or flagged by the comparison
    becomes ``degraded``, its reason naming the feature or the divergence."""
    latest = dict(compared) if compared is not None else {c: r for c, (r, _) in readings.items()}
    comparison = cross_cloud(latest, cfg, across_versions=across_versions)
    out = {}
    for cloud, result in results.items():
        reading, problem = readings.get(cloud, (None, "not read"))
        summary = judge(reading, problem, cfg)
        if cloud in comparison:
            summary["cross_cloud"] = comparison[cloud]
            if comparison[cloud]["flagged"]:
                gap = comparison[cloud]["confidence_gap"]
                summary["reason"] = (
                    f"predictions diverge from the other clouds' (JS distance "
                    f"{comparison[cloud]['js_distance']:.2f}"
                    + ("" if gap is None else f", mean confidence {gap:+.2f}")
                    + ") while its inputs do not"
                )
        flagged = summary.get("cross_cloud", {}).get("flagged", False)
        judged = replace(result, drift=summary)
        if cfg.degrade and result.verdict is Verdict.OK and (summary.get("status") == "alarm" or flagged):
            judged = replace(judged, verdict=Verdict.DEGRADED, reason=short(f"drift {summary['reason']}"))
        out[cloud] = judged
    return out
