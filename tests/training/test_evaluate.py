"""orchestrator.training.evaluate: each metric checked against scikit-learn on the same predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from orchestrator.training.evaluate import cv_summary, evaluate

CLASSES = ["ant", "bee", "cat", "dog"]


@pytest.fixture
def predictions():
    """A realistic mix: mostly right, some confusions, and class 'dog' never predicted."""
    rng = np.random.default_rng(7)
    y_true = np.repeat(np.arange(4), [30, 25, 20, 5])
    logits = rng.normal(size=(len(y_true), 4)) + 2.5 * np.eye(4)[y_true]
    logits[:, 3] -= 10  # 'dog' always loses, so precision for it is undefined in sklearn's terms
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, proba.argmax(axis=1), proba


def test_scalar_metrics_match_sklearn(predictions):
    y_true, y_pred, proba = predictions
    result = evaluate(y_true, y_pred, proba, CLASSES)

    assert result["accuracy"] == skm.accuracy_score(y_true, y_pred)
    assert result["balanced_accuracy"] == skm.balanced_accuracy_score(y_true, y_pred)
    for average in ("macro", "weighted"):
        kw = {"average": average, "zero_division": 0}
        assert result[f"precision_{average}"] == skm.precision_score(y_true, y_pred, **kw)
        assert result[f"recall_{average}"] == skm.recall_score(y_true, y_pred, **kw)
        assert result[f"f1_{average}"] == skm.f1_score(y_true, y_pred, **kw)
    assert result["roc_auc_ovr_macro"] == skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    assert result["cohen_kappa"] == skm.cohen_kappa_score(y_true, y_pred)
    # The fixture is meant to be imperfect; a perfect score would hide swapped arguments.
    assert 0.3 < result["accuracy"] < 1.0


def test_per_class_and_confusion_matrix_match_sklearn(predictions):
    y_true, y_pred, proba = predictions
    result = evaluate(y_true, y_pred, proba, CLASSES)

    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    assert list(result["per_class"]) == CLASSES
    for i, name in enumerate(CLASSES):
        assert result["per_class"][name] == {
            "precision": precision[i],
            "recall": recall[i],
            "f1": f1[i],
            "support": support[i],
        }
    assert result["per_class"]["dog"]["precision"] == 0.0  # never predicted
    assert result["confusion_matrix"] == {
        "labels": CLASSES,
        "matrix": skm.confusion_matrix(y_true, y_pred).tolist(),
        "normalized": skm.confusion_matrix(y_true, y_pred, normalize="true").tolist(),
    }


def test_result_is_plain_json(predictions):
    result = evaluate(*predictions, CLASSES)

    assert json.loads(json.dumps(result)) == result
    assert type(result["accuracy"]) is float
    assert type(result["per_class"]["ant"]["support"]) is int
    assert all(type(n) is int for row in result["confusion_matrix"]["matrix"] for n in row)


def test_binary_roc_auc_is_the_one_vs_rest_macro_average():
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.3, 0.9, 0.6])
    proba = np.column_stack([1 - p1, p1])

    result = evaluate(y_true, (p1 > 0.5).astype(int), proba, ["no", "yes"])

    per_class = [skm.roc_auc_score(y_true == k, proba[:, k]) for k in (0, 1)]
    assert result["roc_auc_ovr_macro"] == pytest.approx(np.mean(per_class))
    assert result["roc_auc_ovr_macro"] == skm.roc_auc_score(y_true, p1)


def test_classes_absent_from_predictions_keep_their_row_and_column():
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3]])

    result = evaluate(y_true, y_pred, proba, ["a", "b", "c"])

    assert result["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 2, 0]]


def test_probability_shape_must_match_classes(predictions):
    y_true, y_pred, proba = predictions
    with pytest.raises(ValueError, match="shape"):
        evaluate(y_true, y_pred, proba[:, :3], CLASSES)


def test_cv_summary_reports_the_best_grid_point():
    cv_results = {
        "params": [{"clf__C": 0.1}, {"clf__C": 1.0}, {"clf__C": 10.0}],
        "mean_test_score": np.array([0.8, 0.93, 0.9]),
        "std_test_score": np.array([0.05, 0.02, 0.04]),
    }

    summary = cv_summary(cv_results, best_index=1, param="clf__C", n_folds=5)

    assert summary == {
        "f1_macro_mean": 0.93,
        "f1_macro_std": 0.02,
        "folds": 5,
        "best_params": {"C": 1.0},
        "grid": [
            {"C": 0.1, "mean": 0.8, "std": 0.05},
            {"C": 1.0, "mean": 0.93, "std": 0.02},
            {"C": 10.0, "mean": 0.9, "std": 0.04},
        ],
    }
    assert json.loads(json.dumps(summary)) == summary
