"""What drives the predictions: coefficients per class (linear models), permutation importance
(every model, on the test set) and partial dependence of the most important features.

- **Coefficients** of a logistic regression, per class, on the model's own inputs: standardised
  numeric columns (z-scores: a coefficient is the change in the class's log-odds per standard
  deviation), 0/1 missing-value indicators and one-hot categories. A binary model has one row, for
  the second class. The :data:`TOP_COEFFICIENTS` largest in magnitude per class are kept.
- **Permutation importance** (Breiman 2001; :func:`sklearn.inspection.permutation_importance`):
  the drop in test-set macro F1 when one input column is shuffled, :data:`N_REPEATS` shuffles per
  column from the run's seed; measured on the served ONNX model, per raw input column.
- **Partial dependence** (Friedman 2001; :func:`sklearn.inspection.partial_dependence`, ``kind=
  "average"``): each class's mean predicted probability over the test rows with one column set to
  each of :data:`GRID_RESOLUTION` values (percentiles 5–95 of the column), for the
  :data:`PD_FEATURES` columns with the largest permutation importance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GRID_RESOLUTION",
    "N_REPEATS",
    "PD_FEATURES",
    "TOP_COEFFICIENTS",
    "coefficients",
    "explain",
    "partial_dependence",
    "permutation_importance",
]

# Shuffles per column: 5 (scikit-learn's default) bounds the cost to 5 × columns predictions of the
# test set (digits: 320 ONNX runs of 450 rows, well under a second) and gives the mean ± std shown.
N_REPEATS = 5
# Columns whose partial dependence is computed and drawn: the three most important keep the plot
# readable and cost 3 × GRID_RESOLUTION predictions of the test set.
PD_FEATURES = 3
# Grid points per partial dependence curve: enough for a smooth curve at 20 predictions per feature.
GRID_RESOLUTION = 20
# Coefficients kept per class in the manifest (the largest in magnitude): a table with thousands
# of one-hot categories would otherwise make the manifest grow with the vocabulary.
TOP_COEFFICIENTS = 20


def coefficients(fitted: Any, names: Sequence[str], classes: Sequence[str]) -> dict[str, Any] | None:
    """Per class the :data:`TOP_COEFFICIENTS` largest coefficients (by magnitude) and the intercept
    of a fitted logistic-regression pipeline; None for any other model. ``names`` are the raw
    input columns (the matrix layout's inputs carry no names of their own)."""
    final = fitted.steps[-1][1]
    kind = type(final).__name__
    if kind == "OneVsRestClassifier" and type(final.estimator).__name__ == "LogisticRegression":
        coef = np.vstack([e.coef_ for e in final.estimators_])
        intercept = np.concatenate([e.intercept_ for e in final.estimators_])
    elif kind == "LogisticRegression":
        coef, intercept = final.coef_, final.intercept_
    else:
        return None
    inputs = _model_inputs(fitted, names)
    rows = [classes[1]] if coef.shape[0] == 1 else list(classes)
    per_class = {}
    for name, row, b in zip(rows, coef, intercept, strict=True):
        top = np.argsort(-np.abs(row), kind="stable")[:TOP_COEFFICIENTS]
        per_class[name] = {
            "intercept": float(b),
            "coefficients": {inputs[i]: float(row[i]) for i in top},
        }
    return {
        "inputs": "standardised numeric columns, missing-value indicators, one-hot categories",
        "n_inputs": len(inputs),
        "top": TOP_COEFFICIENTS,
        "per_class": per_class,
    }


def _model_inputs(fitted: Any, names: Sequence[str]) -> list[str]:
    """The classifier's input names, with the matrix layout's ``x3`` spelled as the column's name."""
    prepare = fitted[:-1]
    if type(fitted.steps[0][1]).__name__ == "ColumnTransformer":
        return [str(n) for n in prepare.get_feature_names_out()]
    return [str(n) for n in prepare.get_feature_names_out(list(names))]


def permutation_importance(
    predict: Callable[[Any], NDArray[np.int64]],
    features: Any,
    y_true: NDArray[np.int64],
    names: Sequence[str],
    n_classes: int,
    *,
    seed: int,
) -> dict[str, Any]:
    """The drop in macro F1 per shuffled column: ``{scoring, n_repeats, seed, importances: {column:
    {mean, std}}}``, columns sorted by mean importance, largest first. ``predict`` maps the
    model's input (the matrix, or a DataFrame) to class indices."""
    from sklearn import inspection

    from orchestrator.training.compare import macro_f1

    def score(_estimator: object, x: Any, y: NDArray[np.int64]) -> float:
        return float(macro_f1(y, predict(x), n_classes))

    result = inspection.permutation_importance(
        _Served(), features, y_true, scoring=score, n_repeats=N_REPEATS, random_state=seed, n_jobs=1
    )
    order = np.argsort(-result.importances_mean, kind="stable")
    return {
        "scoring": "f1_macro",
        "n_repeats": N_REPEATS,
        "seed": seed,
        "importances": {
            names[i]: {"mean": float(result.importances_mean[i]), "std": float(result.importances_std[i])}
            for i in order
        },
    }


class _Served:
    """Stands for the served model in permutation_importance, which only hands it to the scorer."""

    def fit(self, *_: object) -> _Served:
        return self


def partial_dependence(
    fitted: Any,
    features: Any,
    columns: Sequence[str],
    names: Sequence[str],
    kinds: Sequence[str],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Average partial dependence of the fitted scikit-learn pipeline for ``columns``: ``{grid_resolution,
    features: {column: {kind, grid, per_class: {class: [mean probability per grid value]}}}}``. A
    binary model's curve is the second class's probability."""
    from sklearn import inspection

    categorical = [n for n, k in zip(names, kinds, strict=True) if k == "categorical"]
    matrix = not hasattr(features, "columns")
    result: dict[str, Any] = {}
    for column in columns:
        kind = kinds[list(names).index(column)]
        which: Any = list(names).index(column) if matrix else column
        pd = inspection.partial_dependence(
            fitted,
            features,
            [which],
            kind="average",
            grid_resolution=GRID_RESOLUTION,
            categorical_features=categorical or None,
            response_method="predict_proba",
        )
        average = np.asarray(pd["average"])
        grid = pd["grid_values"][0]
        rows = [classes[1]] if average.shape[0] == 1 else list(classes)
        result[column] = {
            "kind": kind,
            "grid": [str(v) if kind == "categorical" else float(v) for v in grid],
            "per_class": {name: [float(v) for v in average[i]] for i, name in enumerate(rows)},
        }
    return {"grid_resolution": GRID_RESOLUTION, "percentiles": [0.05, 0.95], "features": result}


def explain(
    *,
    fitted: Any | None,
    predict: Callable[[Any], NDArray[np.int64]],
    features: Any,
    y_true: NDArray[np.int64],
    names: Sequence[str],
    kinds: Sequence[str],
    classes: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """The manifest's ``interpretation``: ``{permutation_importance, coefficients,
    partial_dependence}`` on the test rows ``features``/``y_true``. ``predict`` is the served
    model; ``fitted`` the scikit-learn pipeline (None for a model packaged from ONNX: no
    coefficients and no partial dependence then)."""
    from threadpoolctl import threadpool_limits

    importance = permutation_importance(predict, features, y_true, names, len(classes), seed=seed)
    result: dict[str, Any] = {"permutation_importance": importance, "coefficients": None}
    if fitted is not None:
        result["coefficients"] = coefficients(fitted, names, classes)
        top = list(importance["importances"])[:PD_FEATURES]
        # One thread: the predictions are of a test set's rows, too small for OpenMP's threads to
        # pay (histogram gradient boosting measured 13x the CPU time with them on a busy machine).
        with threadpool_limits(limits=1):
            result["partial_dependence"] = partial_dependence(fitted, features, top, names, kinds, classes)
    return result
