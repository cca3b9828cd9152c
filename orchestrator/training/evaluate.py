"""Metrics of a classifier on held-out data, and the summary of its cross-validated search.

Pure functions: they take predictions (class indices and probabilities) and return plain Python
numbers, lists and dicts, ready for ``manifest.json``. Nothing here fits a model (but the
majority-class baseline, a prior), predicts or writes. Beside the point metrics: the baseline
(scikit-learn's ``DummyClassifier(strategy="prior")``: the most frequent class, the class
frequencies as probabilities), bootstrap intervals (:mod:`.intervals`), calibration
(:mod:`.calibration`), average precision per class and the row-normalised confusion matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["cv_summary", "evaluate"]


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_proba: ArrayLike,
    classes: Sequence[str],
    *,
    prior_labels: ArrayLike | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Test-set metrics for class indices ``y_true``/``y_pred`` and probabilities ``[N, K]``.

    A class that is never predicted gets precision 0 rather than sklearn's warning: the number is
    what a reader of the manifest needs, and the confusion matrix shows why. The baseline's class
    frequencies come from ``prior_labels`` (train's training rows), else from ``y_true``; the
    bootstrap intervals are drawn from ``seed``.
    """
    from sklearn import metrics

    from orchestrator.training.calibration import calibration
    from orchestrator.training.intervals import bootstrap_intervals

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
        "normalized": metrics.confusion_matrix(true, pred, labels=labels, normalize="true").tolist(),
    }
    result["average_precision"] = _average_precision(true, proba, classes)
    result.update(calibration(true, proba, classes))
    prior = true if prior_labels is None else np.asarray(prior_labels, dtype=np.int64)
    result["baseline"] = baseline(true, prior, len(classes))
    result["baseline"]["fitted_on"] = "the evaluated rows" if prior_labels is None else "the training rows"
    result["intervals"] = bootstrap_intervals(true, pred, proba, seed=seed)
    return result


def baseline(y_true: NDArray[np.int64], prior_labels: NDArray[np.int64], n_classes: int) -> dict[str, Any]:
    """The majority-class baseline's headline metrics on ``y_true``: scikit-learn's
    ``DummyClassifier(strategy="prior")`` fitted on ``prior_labels`` (which must hold every class)
    predicts the most frequent class, with the class frequencies as probabilities."""
    from sklearn import metrics
    from sklearn.dummy import DummyClassifier

    from orchestrator.training.calibration import brier_score

    dummy = DummyClassifier(strategy="prior").fit(np.zeros((len(prior_labels), 1)), prior_labels)
    rows = np.zeros((len(y_true), 1))
    pred = dummy.predict(rows).astype(np.int64)
    proba = np.zeros((len(y_true), n_classes))
    proba[:, dummy.classes_] = dummy.predict_proba(rows)
    labels = list(range(n_classes))
    return {
        "strategy": "most_frequent (DummyClassifier, strategy='prior')",
        "predicts": int(pred[0]),
        "accuracy": float(metrics.accuracy_score(y_true, pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, pred)),
        "f1_macro": float(metrics.f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc_ovr_macro": 0.5,  # constant scores rank no row above another
        "log_loss": float(metrics.log_loss(y_true, proba, labels=labels)),
        "brier_score": brier_score(y_true, proba),
        "cohen_kappa": 0.0,  # a constant prediction agrees with the truth exactly as chance does
    }


def _average_precision(
    true: NDArray[np.int64], proba: NDArray[np.float64], classes: Sequence[str]
) -> dict[str, Any]:
    """Average precision (area under the precision-recall curve, step-wise: sklearn's
    ``average_precision_score``) per class one-vs-rest, and its macro mean."""
    from sklearn.metrics import average_precision_score

    per_class = {
        name: float(average_precision_score(true == k, proba[:, k])) for k, name in enumerate(classes)
    }
    return {"macro": float(np.mean(list(per_class.values()))), "per_class": per_class}


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
