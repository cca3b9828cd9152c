"""Metrics of a classifier on held-out data, and the summary of its cross-validated search.

Pure functions: they take predictions (class indices and probabilities) and return plain Python
numbers, lists and dicts, ready for ``manifest.json``. Nothing here fits, predicts or writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["cv_summary", "evaluate"]


def evaluate(
    y_true: ArrayLike, y_pred: ArrayLike, y_proba: ArrayLike, classes: Sequence[str]
) -> dict[str, Any]:
    """Test-set metrics for class indices ``y_true``/``y_pred`` and probabilities ``[N, K]``.

    A class that is never predicted gets precision 0 rather than sklearn's warning: the number is
    what a reader of the manifest needs, and the confusion matrix shows why.
    """
    from sklearn import metrics

    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    proba = np.asarray(y_proba, dtype=np.float64)
    labels = list(range(len(classes)))
    if proba.shape != (len(true), len(classes)):
        raise ValueError(f"probabilities have shape {proba.shape}, expected {(len(true), len(classes))}")

    result: dict[str, Any] = {
        "accuracy": float(metrics.accuracy_score(true, pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(true, pred)),
    }
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            true, pred, labels=labels, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    result["per_class"] = _per_class(true, pred, classes)
    result["roc_auc_ovr_macro"] = _roc_auc_ovr_macro(true, proba, labels)
    result["cohen_kappa"] = float(metrics.cohen_kappa_score(true, pred, labels=labels))
    result["confusion_matrix"] = {
        "labels": list(classes),
        "matrix": metrics.confusion_matrix(true, pred, labels=labels).tolist(),
    }
    return result


def _per_class(true: NDArray[np.int64], pred: NDArray[np.int64], classes: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=list(range(len(classes))), average=None, zero_division=0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def _roc_auc_ovr_macro(true: NDArray[np.int64], proba: NDArray[np.float64], labels: list[int]) -> float:
    from sklearn.metrics import roc_auc_score

    if len(labels) == 2:
        # sklearn wants the positive-class score alone for two classes; the one-vs-rest AUC of
        # either class equals it, so their macro average does too.
        return float(roc_auc_score(true, proba[:, 1]))
    return float(roc_auc_score(true, proba, multi_class="ovr", average="macro", labels=labels))


def cv_summary(
    cv_results: Mapping[str, Any],
    best_index: int,
    param: str | None,
    n_folds: int,
    *,
    describe: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The cross-validated search in manifest form, from a fitted ``GridSearchCV.cv_results_``.

    ``param`` is the one searched parameter's pipeline key (``clf__C``), which the manifest calls
    ``C``; or ``describe`` turns each grid point's parameters into the manifest's names for them
    (``{"model": "random_forest", "min_samples_leaf": 5}``).
    """

    def named(params: Mapping[str, Any]) -> dict[str, Any]:
        if describe is not None:
            return describe(params)
        assert param is not None
        return {"C": float(params[param])}

    grid = [
        {**named(params), "mean": float(mean), "std": float(std)}
        for params, mean, std in zip(
            cv_results["params"], cv_results["mean_test_score"], cv_results["std_test_score"], strict=True
        )
    ]
    best = grid[best_index]
    return {
        "f1_macro_mean": best["mean"],
        "f1_macro_std": best["std"],
        "folds": n_folds,
        "best_params": {k: v for k, v in best.items() if k not in ("mean", "std")},
        "grid": grid,
    }
