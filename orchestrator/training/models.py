"""What ``train`` fits: the preprocessing, the classifiers it can choose from, and their search.

Preprocessing lives inside the pipeline, so it is inside the exported ONNX graph and clients send
raw rows: numeric columns are imputed (median, with a missing-value indicator for the columns that
had missing values in training) and standardised; categorical columns are one-hot encoded with
unknown categories ignored (all-zero), the empty string ("missing") being a category of its own.

Classifiers (``--model``): logistic regression (the default; multinomial or one-vs-rest), a random
forest and histogram gradient boosting, each with a small grid searched by stratified
cross-validation on macro F1; ``auto`` searches all three grids in one search and keeps the best.
``--class-weight balanced`` weights every classifier's classes inversely to their frequency.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "C_GRID",
    "FOREST_GRID",
    "HIST_GRID",
    "MAX_ITER",
    "MODELS",
    "ClassWeight",
    "ModelChoice",
    "Strategy",
    "converged",
    "describe",
    "grids",
    "pipeline",
    "search",
]

Strategy = Literal["multinomial", "ovr"]
ModelChoice = Literal["logreg", "random_forest", "hist_gradient_boosting", "auto"]
ClassWeight = Literal["none", "balanced"]
MODELS: tuple[str, ...] = tuple(m for m in get_args(ModelChoice) if m != "auto")
# Regularisation strengths searched: four decades either side of sklearn's default C=1 covers
# under- and over-fitting for standardised features, at five fits per fold (digits trains in ~1 s).
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
# lbfgs on standardised features converges in well under 1,000 iterations on the built-in
# datasets; a run that does not is recorded in the manifest (training.converged), not hidden.
MAX_ITER = 1000
# 100 trees: scikit-learn's default; the forest's ONNX graph grows with them (digits: ~3.6 MB).
# Leaves of 1 (sklearn's default, fully grown) or 5 rows (smoother probabilities) are searched.
FOREST_TREES = 100
FOREST_GRID = {"min_samples_leaf": (1, 5)}
# 100 boosting iterations (sklearn's default) at two learning rates: the default 0.1 and a slower
# 0.05 that generalises better on small tables, at twice the cost of one point.
HIST_ITER = 100
HIST_GRID = {"learning_rate": (0.05, 0.1)}
STEP = "classifier"


def _classifier(model: str, strategy: Strategy, class_weight: ClassWeight, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    weight = "balanced" if class_weight == "balanced" else None
    if model == "random_forest":
        return RandomForestClassifier(
            n_estimators=FOREST_TREES, class_weight=weight, random_state=seed, n_jobs=1
        )
    if model == "hist_gradient_boosting":
        # No early stopping: it would hold out a random tenth of the training rows, so the model
        # would depend on the table's size in a way the manifest does not say.
        return HistGradientBoostingClassifier(
            max_iter=HIST_ITER, class_weight=weight, early_stopping=False, random_state=seed
        )
    # With more than two classes and the lbfgs solver, LogisticRegression fits the multinomial
    # (softmax) model; sklearn 1.8+ has no multi_class parameter, so one-vs-rest is the wrapper.
    logistic = LogisticRegression(max_iter=MAX_ITER, class_weight=weight)
    return logistic if strategy == "multinomial" else OneVsRestClassifier(logistic)


def pipeline(
    kinds: Sequence[str],
    names: Sequence[str],
    *,
    model: str = "logreg",
    strategy: Strategy = "multinomial",
    class_weight: ClassWeight = "none",
    seed: int = 0,
) -> Any:
    """An unfitted Pipeline for columns of ``kinds`` (numeric | categorical) named ``names``.

    All numeric: imputer, scaler, classifier, fitted on a float64 matrix. Any categorical: a
    ColumnTransformer (numeric: imputer and scaler; categorical: one-hot), then the classifier,
    fitted on a DataFrame with those column names.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def numeric() -> list[tuple[str, Any]]:
        # add_indicator: a 0/1 column per feature that had missing values in training, so the
        # model can learn from a value's absence; none when nothing was missing.
        return [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]

    classifier = _classifier(model, strategy, class_weight, seed)
    if all(k == "numeric" for k in kinds):
        return Pipeline([*numeric(), (STEP, classifier)])
    numeric_names = [n for n, k in zip(names, kinds, strict=True) if k == "numeric"]
    categorical_names = [n for n, k in zip(names, kinds, strict=True) if k == "categorical"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric_names:
        transformers.append(("numeric", Pipeline(numeric()), numeric_names))
    transformers.append(
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical_names)
    )
    # Dense output: histogram gradient boosting takes no sparse matrix, and the tables are small.
    return Pipeline([("prepare", ColumnTransformer(transformers, sparse_threshold=0.0)), (STEP, classifier)])


def _c_key(strategy: Strategy) -> str:
    return f"{STEP}__C" if strategy == "multinomial" else f"{STEP}__estimator__C"


def grids(
    model: ModelChoice, strategy: Strategy, class_weight: ClassWeight, seed: int
) -> list[dict[str, list[Any]]]:
    """GridSearchCV's parameter grids for ``model`` (all three for ``auto``, each with its classifier)."""
    chosen = MODELS if model == "auto" else (model,)
    result = []
    for name in chosen:
        if name == "logreg":
            grid: dict[str, list[Any]] = {_c_key(strategy): list(C_GRID)}
        elif name == "random_forest":
            grid = {f"{STEP}__{k}": list(v) for k, v in FOREST_GRID.items()}
        else:
            grid = {f"{STEP}__{k}": list(v) for k, v in HIST_GRID.items()}
        if model == "auto":
            grid[STEP] = [_classifier(name, strategy, class_weight, seed)]
        result.append(grid)
    return result


def model_name(classifier: Any) -> str:
    """``logreg``, ``random_forest`` or ``hist_gradient_boosting`` for a fitted or unfitted classifier."""
    kind = type(classifier).__name__
    return {
        "RandomForestClassifier": "random_forest",
        "HistGradientBoostingClassifier": "hist_gradient_boosting",
    }.get(kind, "logreg")


def describe(params: Mapping[str, Any]) -> dict[str, Any]:
    """A grid point in the manifest's names: ``{"C": 1.0}``, or with ``auto``
    ``{"model": "random_forest", "min_samples_leaf": 5}`` (the step's prefixes dropped)."""
    named: dict[str, Any] = {}
    if STEP in params:
        named["model"] = model_name(params[STEP])
    for key, value in params.items():
        if key != STEP:
            named[key.rsplit("__", 1)[-1]] = float(value) if isinstance(value, float) else value
    return named


def search(
    features: Any,
    y: NDArray[np.int64],
    *,
    kinds: Sequence[str],
    names: Sequence[str],
    model: ModelChoice,
    strategy: Strategy,
    class_weight: ClassWeight,
    seed: int,
    cv_folds: int,
) -> Any:
    """The fitted GridSearchCV (refit on all of ``features``) over :func:`grids`."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    base = "logreg" if model == "auto" else model
    search = GridSearchCV(
        pipeline(kinds, names, model=base, strategy=strategy, class_weight=class_weight, seed=seed),
        grids(model, strategy, class_weight, seed),
        scoring="f1_macro",
        cv=StratifiedKFold(cv_folds, shuffle=True, random_state=seed),
        # One process: the search is small, and worker start-up would cost more than it saves.
        n_jobs=1,
        # A failing fit is a bug to surface, not a grid point to score as NaN.
        error_score="raise",
    )
    with warnings.catch_warnings():
        # Extreme grid points may stop at max_iter; their CV score already reflects it, and the
        # chosen model's convergence is recorded in the manifest instead of warned about per fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(features, y)
    return search


def converged(fitted: Any) -> bool:
    """Whether every logistic regression in ``fitted`` stopped before :data:`MAX_ITER` (trees: True)."""
    classifier = fitted.steps[-1][1]
    estimators = getattr(classifier, "estimators_", [classifier])
    if model_name(classifier) != "logreg":
        return True
    return all(int(np.max(e.n_iter_)) < MAX_ITER for e in estimators)


def estimator_text(fitted: Any) -> str:
    """``StandardScaler + LogisticRegression``-style summary of the fitted pipeline's steps."""
    classifier = fitted.steps[-1][1]
    if type(classifier).__name__ == "OneVsRestClassifier":
        final = f"OneVsRestClassifier({type(classifier.estimator).__name__})"
    else:
        final = type(classifier).__name__
    first = fitted.steps[0][1]
    if type(first).__name__ == "ColumnTransformer":
        return f"SimpleImputer + StandardScaler + OneHotEncoder + {final}"
    return f"SimpleImputer + StandardScaler + {final}"
