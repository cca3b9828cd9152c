"""The statistics behind the report and the gate, against scikit-learn, scipy and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score, roc_auc_score

from orchestrator.training.calibration import N_BINS, brier_score, expected_calibration_error
from orchestrator.training.compare import macro_f1, mcnemar_exact, paired_delta_f1
from orchestrator.training.evaluate import baseline, evaluate
from orchestrator.training.intervals import bootstrap_intervals, macro_auc


def predictions(n: int = 300, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba.argmax(axis=1), proba


@pytest.mark.parametrize("k", [2, 3, 6])
def test_macro_f1_is_sklearns_including_classes_never_predicted(k):
    y, pred, _ = predictions(k=k)
    pred[pred == k - 1] = 0  # the last class is never predicted
    batch = np.stack([pred, np.roll(pred, 1), y])

    expected = [f1_score(y, p, labels=range(k), average="macro", zero_division=0) for p in batch]
    assert macro_f1(np.broadcast_to(y, batch.shape), batch, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5])
def test_macro_auc_is_sklearns_also_with_ties_and_resample_weights(k):
    y, _, proba = predictions(k=k)
    proba = np.round(proba, 2)  # many ties
    proba /= proba.sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, proba[:, 1]) if k == 2 else roc_auc_score(y, proba, multi_class="ovr")
    assert macro_auc(y, proba) == pytest.approx(expected, abs=1e-12)

    rows = np.random.default_rng(1).integers(0, len(y), size=(3, len(y)))
    weights = np.stack([np.bincount(r, minlength=len(y)) for r in rows]).astype(float)
    resampled = [
        roc_auc_score(y[r], proba[r, 1]) if k == 2 else roc_auc_score(y[r], proba[r], multi_class="ovr")
        for r in rows
    ]
    assert macro_auc(y, proba, weights) == pytest.approx(resampled, abs=1e-12)


def test_mcnemar_exact_is_the_binomial_test_on_discordant_rows():
    y = np.array([0] * 20)
    champion = np.array([0] * 12 + [1] * 8)  # right on the first 12
    challenger = np.array([1] * 3 + [0] * 13 + [1] * 4)  # right on rows 3..15
    test = mcnemar_exact(y, champion, challenger)

    assert test["champion_only_correct"] == 3  # rows 0-2
    assert test["challenger_only_correct"] == 4  # rows 12-15
    assert test["both_correct"] == 9
    assert test["both_wrong"] == 4
    assert test["pvalue"] == pytest.approx(binomtest(3, 7, 0.5).pvalue)


def test_the_paired_interval_is_seeded_and_recorded():
    y, pred, _ = predictions()
    worse = np.where(np.arange(len(y)) % 4 == 0, (pred + 1) % 4, pred)
    first = paired_delta_f1(y, pred, worse, 4, seed=7, n_resamples=500)
    again = paired_delta_f1(y, pred, worse, 4, seed=7, n_resamples=500)
    other = paired_delta_f1(y, pred, worse, 4, seed=8, n_resamples=500)

    assert first == again
    assert first != other
    assert first["n_resamples"] == 500
    assert first["seed"] == 7
    assert first["ci_low"] <= first["estimate"] <= first["ci_high"] < 0
    same = paired_delta_f1(y, pred, pred, 4, seed=0)
    assert (same["estimate"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_expected_calibration_error_by_hand():
    # Bins of width 1/15: 0.95 falls in the last bin, 0.55 in bin 8. Last bin: accuracy 1, mean
    # confidence 0.95; bin 8: accuracy 1/2, confidence 0.55. ECE = 2/4 * 0.05 + 2/4 * 0.05.
    proba = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.55, 0.45]])
    y = np.array([0, 1, 0, 1])
    assert N_BINS == 15
    assert expected_calibration_error(y, proba) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) == 0


def test_the_brier_score_is_the_multiclass_sum_of_squares():
    y, _, proba = predictions(k=3)
    expected = np.mean(np.sum((proba - np.eye(3)[y]) ** 2, axis=1))
    assert brier_score(y, proba) == pytest.approx(expected)
    y2, _, proba2 = predictions(k=2)
    assert brier_score(y2, proba2) == pytest.approx(np.mean(np.sum((proba2 - np.eye(2)[y2]) ** 2, axis=1)))


def test_the_baseline_predicts_the_training_majority():
    y_train = np.array([0, 1, 1, 1, 2, 2])
    y_test = np.array([0, 1, 2, 2])
    result = baseline(y_test, y_train, 3)

    assert result["predicts"] == 1
    assert result["accuracy"] == 0.25
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([1 / 6, 3 / 6, 2 / 6, 2 / 6])))


def test_evaluate_records_intervals_calibration_and_the_normalised_matrix():
    y, pred, proba = predictions()
    metrics = evaluate(y, pred, proba, ["a", "b", "c", "d"], prior_labels=y, seed=3)

    for name in ("accuracy", "f1_macro", "roc_auc_ovr_macro"):
        interval = metrics["intervals"][name]
        assert interval["low"] <= metrics[name] <= interval["high"]
    assert metrics["intervals"]["seed"] == 3
    assert metrics["intervals"]["n_resamples"] == 1000
    assert np.allclose(np.sum(metrics["confusion_matrix"]["normalized"], axis=1), 1)
    assert set(metrics["average_precision"]["per_class"]) == {"a", "b", "c", "d"}
    assert 0 <= metrics["calibration"]["ece"] <= 1
    assert metrics["baseline"]["fitted_on"] == "the training rows"
    assert metrics["baseline"]["accuracy"] < metrics["accuracy"]
    again = bootstrap_intervals(y, pred, proba, seed=3)
    assert again == metrics["intervals"]
