"""The reference profile written into the manifest (:mod:`orchestrator.core.artifact.profile`).

:func:`reference_profile` bins every feature of the reference rows (train: the training split;
``package``: the reference table) and summarises the model's outputs on the rows it was evaluated
on (train: the test split). The endpoint (:mod:`serving.drift`) counts live rows into the same bins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.profile import MAX_PROFILE_CATEGORIES, MIN_CALIBRATION_ROWS
from orchestrator.training.tables import TypedColumn

__all__ = ["CONFIDENCE_EDGES", "DECILES", "MIN_ROWS_PER_BIN", "REFERENCE_NOISE_PSI", "reference_profile"]

# Deciles: ten bins of equal reference mass, the usual binning for the population stability index
# (Siddiqi, "Credit Risk Scorecards", 2006; Yurdakul, "Statistical properties of the population
# stability index", 2018): enough resolution for a shift of half a standard deviation, and each bin
# holds a tenth of the reference, so no bin's share rests on a handful of rows.
DECILES = tuple(q / 10 for q in range(1, 10))
# Reference rows per bin at least: PSI's sampling noise is about (bins - 1) * (1 / live rows +
# 1 / reference rows) (its chi-squared approximation), so a 10-bin profile of iris's 112 training
# rows alone would put unshifted traffic near PSI 0.08, next to the 0.1 warning; with 20 rows per
# bin it is about 0.04 (REFERENCE_NOISE_PSI below bounds the bins further).
MIN_ROWS_PER_BIN = 20
# The reference's own sampling noise in unshifted traffic's PSI, (bins - 1) / reference rows (the
# reference half of the chi-squared approximation above), is kept at or under this: a small table
# gets fewer bins (240 rows: 5; iris's 112: 3) so that with the live window's own noise (0.018 from
# 500 rows counted) unshifted traffic stays under the 0.1 warning; deciles from 451 rows. Under
# about 200 rows no binning can: the reference's noise alone (1 / rows per bin of freedom) makes a
# warning on some feature likely, and docs/operating.md says so.
REFERENCE_NOISE_PSI = 0.02
# The maximum class probability binned in tenths, as a reliability diagram bins it; the lowest bin
# (below 0.1) is empty for ten classes or fewer.
CONFIDENCE_EDGES = tuple(round(q / 10, 1) for q in range(1, 10))


def _quantiles(n: int) -> tuple[float, ...]:
    """The cut points' quantiles for ``n`` reference values: deciles, or fewer equal-mass bins so
    that each holds at least :data:`MIN_ROWS_PER_BIN` rows and the reference's own noise
    ``(bins - 1) / n`` is at most :data:`REFERENCE_NOISE_PSI` (and never fewer than 2 bins)."""
    bins = max(2, min(len(DECILES) + 1, n // MIN_ROWS_PER_BIN, 1 + int(REFERENCE_NOISE_PSI * n)))
    return tuple(q / bins for q in range(1, bins))


def _numeric(values: NDArray[np.float64]) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    edges: list[float] = []
    if len(present):
        # "lower": every edge is a value of the data, so no bin below the top one is empty.
        edges = sorted({float(e) for e in np.quantile(present, _quantiles(len(present)), method="lower")})
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
    frequencies = [*(counts / len(values)).tolist(), (len(values) - len(present)) / len(values)]
    return {"kind": "numeric", "edges": edges, "frequencies": frequencies}


def _categorical(values: NDArray[Any]) -> dict[str, Any]:
    counts = Counter(str(v) for v in values)
    top = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PROFILE_CATEGORIES]]
    shares = [counts[c] / len(values) for c in top]
    return {"kind": "categorical", "categories": top, "frequencies": [*shares, max(0.0, 1.0 - sum(shares))]}


def _normalised(shares: list[float]) -> list[float]:
    total = sum(shares)
    return [s / total for s in shares]


def reference_profile(
    columns: Sequence[TypedColumn],
    rows: NDArray[np.intp],
    probabilities: NDArray[np.float64],
    *,
    source: str,
    y_true: NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """The manifest's ``reference_profile``: every column binned over ``rows`` (feature keys are
    the column names), and the model's outputs: ``probabilities`` [n, classes] on the evaluation
    rows, ``y_true`` [n] their class indices when known (then the confidence bins carry their test
    accuracy). ``source`` says which rows, for the reader."""
    features = {}
    for column in columns:
        values = column.values[rows]
        features[column.name] = _numeric(values) if column.kind == "numeric" else _categorical(values)
    predicted = probabilities.argmax(axis=1)
    n_classes = probabilities.shape[1]
    prediction = np.bincount(predicted, minlength=n_classes) / len(predicted)
    confidence = probabilities.max(axis=1)
    edges = np.asarray(CONFIDENCE_EDGES)
    bins = np.searchsorted(edges, confidence, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    accuracy = None
    if y_true is not None:
        correct = np.bincount(
            bins, weights=(predicted == y_true).astype(np.float64), minlength=len(edges) + 1
        )
        accuracy = [
            float(c / n) if n >= MIN_CALIBRATION_ROWS else None for c, n in zip(correct, counts, strict=True)
        ]
    return {
        "source": source,
        "n_rows": len(rows),
        "n_prediction_rows": len(predicted),
        "features": features,
        "prediction": {"frequencies": _normalised(prediction.tolist())},
        "confidence": {
            "edges": list(CONFIDENCE_EDGES),
            "frequencies": _normalised((counts / len(bins)).tolist()),
            "mean": float(np.clip(confidence.mean(), 0.0, 1.0)),
            "accuracy": accuracy,
        },
    }
