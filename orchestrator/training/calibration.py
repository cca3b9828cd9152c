"""How far a classifier's probabilities can be trusted: log loss, the multiclass Brier score, a
reliability diagram per class and the expected calibration error. Pure functions of class indices
and probabilities ``[N, K]``; plain numbers out, for the manifest.

- **Log loss**: :func:`sklearn.metrics.log_loss` (mean negative log-likelihood, natural log).
- **Brier score** (Brier 1950, the original multiclass form): the mean over rows of
  ``Σ_k (p_k − y_k)²`` with ``y`` the one-hot true class; 0 is perfect, 2 the worst;
  :func:`sklearn.metrics.brier_score_loss` with ``scale_by_half=False``.
- **Reliability diagram** per class (one-vs-rest): :func:`sklearn.calibration.calibration_curve`
  with :data:`N_BINS` equal-width bins of the class's probability on [0, 1]; each bin's mean
  predicted probability against the fraction of rows of that class, and its row count.
- **Expected calibration error** (Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
  Networks", ICML 2017, eq. 3): the top-label confidence (the largest probability) in
  :data:`N_BINS` equal-width bins on [0, 1]; ``ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|``.
  The same bins as scikit-learn's ``calibration_curve`` (a value on an inner edge goes to the
  upper bin; 1.0 to the last).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["N_BINS", "brier_score", "calibration", "expected_calibration_error", "reliability"]

# Guo et al. (2017) use 15 equal-width bins; the same number for every class's diagram keeps the
# manifest's numbers comparable between models.
N_BINS = 15


def _bin_index(values: NDArray[np.float64]) -> NDArray[np.intp]:
    """Equal-width bin of each value in [0, 1], as sklearn's calibration_curve(strategy="uniform")."""
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    return np.searchsorted(edges[1:-1], values, side="right")


def reliability(is_class: NDArray[np.bool_], probability: NDArray[np.float64]) -> dict[str, list[float]]:
    """One class's reliability diagram: per non-empty bin the mean predicted probability, the
    fraction of rows of the class and the row count (lists of equal length)."""
    from sklearn.calibration import calibration_curve

    fraction, mean_predicted = calibration_curve(is_class, probability, n_bins=N_BINS, strategy="uniform")
    counts = np.bincount(_bin_index(probability), minlength=N_BINS)
    return {
        "mean_predicted": [float(v) for v in mean_predicted],
        "fraction_positive": [float(v) for v in fraction],
        "count": [int(c) for c in counts if c > 0],
    }


def expected_calibration_error(y_true: NDArray[np.int64], y_proba: NDArray[np.float64]) -> float:
    """Top-label ECE (Guo et al. 2017, eq. 3) with :data:`N_BINS` equal-width bins, in [0, 1]."""
    confidence = y_proba.max(axis=1)
    correct = (y_proba.argmax(axis=1) == y_true).astype(np.float64)
    index = _bin_index(confidence)
    counts = np.bincount(index, minlength=N_BINS)
    accuracy = np.bincount(index, weights=correct, minlength=N_BINS)
    mean_confidence = np.bincount(index, weights=confidence, minlength=N_BINS)
    occupied = counts > 0
    gap = np.abs(accuracy[occupied] - mean_confidence[occupied]) / counts[occupied]
    return float(np.sum(counts[occupied] / len(y_true) * gap))


def brier_score(y_true: NDArray[np.int64], y_proba: NDArray[np.float64]) -> float:
    """The multiclass Brier score (Brier 1950): mean over rows of ``Σ_k (p_k − y_k)²``, in [0, 2]."""
    from sklearn.metrics import brier_score_loss

    if y_proba.shape[1] == 2:
        # The binary form takes the positive class's probability; unscaled it is the multiclass sum.
        return float(brier_score_loss(y_true, y_proba[:, 1], scale_by_half=False))
    labels = list(range(y_proba.shape[1]))
    return float(brier_score_loss(y_true, y_proba, labels=labels, scale_by_half=False))


def calibration(
    y_true: NDArray[np.int64], y_proba: NDArray[np.float64], classes: Sequence[str]
) -> dict[str, Any]:
    """``{log_loss, brier_score, calibration: {bins, binning, ece, per_class: {class: reliability}}}``.

    Each row of ``y_proba`` is divided by its sum first: a tree ensemble's ONNX graph sums its
    leaves in float32, and rows that miss 1 by ~1e-7 make scikit-learn's log loss warn.
    """
    from sklearn.metrics import log_loss

    y_proba = y_proba / y_proba.sum(axis=1, keepdims=True)
    labels = list(range(len(classes)))
    return {
        "log_loss": float(log_loss(y_true, y_proba, labels=labels)),
        "brier_score": brier_score(y_true, y_proba),
        "calibration": {
            "bins": N_BINS,
            "binning": "equal-width on [0, 1]",
            "ece": expected_calibration_error(y_true, y_proba),
            "ece_source": "Guo et al. 2017, top-label confidence",
            "per_class": {name: reliability(y_true == k, y_proba[:, k]) for k, name in enumerate(classes)},
        },
    }
