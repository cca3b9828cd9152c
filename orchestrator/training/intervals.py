"""95 % bootstrap confidence intervals of the headline metrics: accuracy, macro F1, macro ROC AUC.

Percentile intervals (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13) over
:data:`~orchestrator.training.compare.N_RESAMPLES` resamples of the test rows, drawn by
:func:`scipy.stats.bootstrap` from a seeded generator (the seed and the count are recorded). The
three metrics are computed on the same resamples, vectorised: macro F1 as
:func:`~orchestrator.training.compare.macro_f1`, and each class's one-vs-rest ROC AUC by the
Mann–Whitney identity ``AUC = (R⁺ − n⁺(n⁺ + 1)/2) / (n⁺ n⁻)`` (Hanley & McNeil 1982; ``R⁺`` the
sum of the class's rows' ranks, ties averaged), which equals :func:`sklearn.metrics.roc_auc_score`.
A resample without a row of some class averages the AUC over the classes it has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.training.compare import BATCH, CONFIDENCE, N_RESAMPLES, macro_f1, quiet_degenerate

__all__ = ["METRICS", "bootstrap_intervals", "macro_auc"]

METRICS = ("accuracy", "f1_macro", "roc_auc_ovr_macro")


def macro_auc(
    y_true: NDArray[np.int64], y_proba: NDArray[np.float64], weights: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """One-vs-rest ROC AUC averaged over classes, for each row of ``weights`` ``[B, N]`` (how many
    times each of the ``N`` rows is drawn: a bootstrap resample; None: every row once, a scalar
    result). ``y_true`` ``[N]``, ``y_proba`` ``[N, K]``; result ``[B]``. Two classes: the AUC of
    class 1 (what sklearn reports, and what either class's one-vs-rest AUC equals).

    Each class's scores are sorted once; per resample, the weighted count of negatives below each
    positive (ties counted half) is a cumulative sum over the sorted tie groups: the Mann–Whitney
    statistic, O(B·N) per class instead of a sort per resample.
    """
    w = np.ones((1, len(y_true))) if weights is None else np.asarray(weights, dtype=np.float64)
    k = y_proba.shape[1]
    aucs = []
    for c in [1] if k == 2 else range(k):
        order = np.argsort(y_proba[:, c], kind="stable")
        scores = y_proba[order, c]
        starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])  # first row of each tie group
        positive = (y_true[order] == c).astype(np.float64)
        sorted_w = w[:, order]
        pos = np.add.reduceat(sorted_w * positive, starts, axis=1)
        neg = np.add.reduceat(sorted_w * (1.0 - positive), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append(np.sum(pos * (below + 0.5 * neg), axis=1) / (n_pos * n_neg))
    stacked = np.stack(aucs, axis=-1)
    defined = np.isfinite(stacked)
    total = np.where(defined, stacked, 0.0).sum(axis=-1)
    count = defined.sum(axis=-1)
    result: NDArray[np.float64] = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
    return np.asarray(result[0]) if weights is None else result


def bootstrap_intervals(
    y_true: NDArray[np.int64],
    y_pred: NDArray[np.int64],
    y_proba: NDArray[np.float64],
    *,
    seed: int,
    n_resamples: int = N_RESAMPLES,
) -> dict[str, Any]:
    """``{accuracy: {low, high}, f1_macro: ..., roc_auc_ovr_macro: ..., confidence, n_resamples,
    seed, method}``: percentile intervals over resampled test rows."""
    from scipy.stats import bootstrap

    k, n = y_proba.shape[1], len(y_true)

    def statistic(rows: NDArray[np.intp], axis: int = -1) -> NDArray[np.float64]:
        if rows.ndim == 1:  # the original sample, when scipy asks for it
            return statistic(rows[None, :])[:, 0]
        true, pred = y_true[rows], y_pred[rows]
        # How many times each row is drawn in each resample: the AUC's weights.
        offsets = np.arange(rows.shape[0])[:, None] * n
        drawn = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * n)
        weights = drawn.astype(np.float64).reshape(-1, n)
        return np.stack(
            [np.mean(true == pred, axis=-1), macro_f1(true, pred, k), macro_auc(y_true, y_proba, weights)]
        )

    with quiet_degenerate():
        result = bootstrap(
            (np.arange(len(y_true)),),
            statistic,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=CONFIDENCE,
            method="percentile",
            batch=BATCH,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    # A limit is None when resamples leave it undefined (a test set too small to hold both sides
    # of a class's AUC in most resamples).
    record: dict[str, Any] = {
        name: {"low": _limit(lo), "high": _limit(hi)} for name, lo, hi in zip(METRICS, low, high, strict=True)
    }
    record.update(
        confidence=CONFIDENCE,
        n_resamples=n_resamples,
        seed=seed,
        method="percentile bootstrap over test rows (scipy.stats.bootstrap)",
    )
    return record


def _limit(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
