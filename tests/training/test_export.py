"""The float64-exact export (orchestrator.training.converters, export): tree ensembles and the
imputer agree with scikit-learn within 1e-6, where skl2onnx's own converters do not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from orchestrator.training.export import MAX_PROBABILITY_DIFF, export, input_name

LOADERS = {"iris": load_iris, "wine": load_wine, "digits": load_digits}
TREES = {
    "random_forest": lambda: RandomForestClassifier(n_estimators=60, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=30, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
}


@pytest.mark.parametrize("dataset", list(LOADERS))
@pytest.mark.parametrize("model", list(TREES))
def test_tree_ensembles_agree_within_the_bound_even_next_to_thresholds(dataset, model):
    X, y = LOADERS[dataset](return_X_y=True)
    pipeline = Pipeline([("scale", StandardScaler()), ("classifier", TREES[model]())]).fit(X, y)
    # Rows a hair from the training values: where float32 thresholds send rows the other way.
    jittered = X + np.random.default_rng(0).normal(0, 1e-4, X.shape) * X.std(axis=0)

    for rows in (X, jittered):
        exported = export(pipeline, rows)  # raises unless labels agree 100 % and |Δp| <= 1e-6
        assert exported.info["labels_agree"] == 1.0
        assert exported.info["max_probability_diff"] <= MAX_PROBABILITY_DIFF


@pytest.mark.parametrize(
    "imputer",
    [
        SimpleImputer(strategy="median"),
        SimpleImputer(strategy="mean", add_indicator=True),
        SimpleImputer(strategy="constant", fill_value=-1.0),
        SimpleImputer(strategy="median", missing_values=-999.0),
    ],
    ids=["median", "mean-with-indicator", "constant", "a-numeric-missing-value"],
)
def test_the_float64_imputer_reproduces_scikit_learn(imputer):
    X, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(1)
    marker = (
        imputer.missing_values
        if isinstance(imputer.missing_values, float) and not np.isnan(imputer.missing_values)
        else np.nan
    )
    holes = X.copy()
    holes[rng.random(X.shape) < 0.15] = marker
    holes[:, 3] = marker  # a column without any value: scikit-learn drops it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Skipping features without any observed values"
        pipeline = Pipeline(
            [
                ("impute", imputer),
                ("scale", StandardScaler()),
                ("classifier", LogisticRegression(max_iter=2000)),
            ]
        ).fit(holes, y)
        exported = export(pipeline, holes)

    assert exported.info["max_probability_diff"] <= 1e-12  # float64 end to end


def test_onnx_input_names_are_valid_and_distinct():
    taken: set[str] = set()
    names = [input_name(c, taken) for c in ["plan tier", "plan_tier", "2024 sales", "é", "x" * 80, "a-b"]]

    assert names == ["plan_tier", "plan_tier_2", "c_2024_sales", "_", "x" * 64, "a_b"]
