"""The checks ``package`` makes on a model's classes, outputs and reference table.

Each returns what the next step needs or raises an OrchestratorError naming the problem:
ArtifactError for the model (its classes, its probabilities), DatasetError for the reference
table (its columns, its labels), ConfigError for the options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.errors import ArtifactError, ConfigError
from orchestrator.training.datasets import read_labels
from orchestrator.training.tables import DatasetError, RawTable, TypedColumn, name_columns

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.training.packaging.package import PackageOptions

__all__ = [
    "check_probabilities",
    "classes",
    "encoder_categories",
    "feature_names",
    "features",
    "true_labels",
]

# How far a probability may stray from [0, 1], and a row's sum from 1, before an output is not
# probabilities: float32 softmax outputs sum to 1 within ~1e-6; decision scores and logits miss
# by far more.
PROBABILITY_SLACK = 1e-4


def classes(opts: PackageOptions, carried: list[str] | None, count: int) -> list[str]:
    """The manifest's classes: the model's own (``carried``) and ``--labels`` must agree with each
    other and with ``count`` probability columns (``--labels`` may name integer codes 0..K-1);
    ArtifactError otherwise, or when neither names them."""
    where = str(opts.model)
    given = list(opts.labels) if opts.labels is not None else None
    if count < 2:
        raise ArtifactError(
            f"{where}: the model gives {count} probability per row; a classifier gives one per class "
            "(2 or more)",
            path=where,
        )
    if carried is not None and len(carried) != count:
        raise ArtifactError(
            f"{where}: the model names {len(carried)} classes but gives {count} probabilities per row",
            path=where,
        )
    if given is not None and len(given) != count:
        raise ArtifactError(
            f"{where}: --labels names {len(given)} classes but the model gives {count} probabilities per row",
            path=where,
        )
    if given is not None and carried is not None and given != carried:
        codes = [str(i) for i in range(count)]
        if carried != codes:
            raise ArtifactError(
                f"{where}: the model's classes are {carried}, --labels says {given}", path=where
            )
    chosen = given if given is not None else carried
    if chosen is None:
        raise ArtifactError(
            f"{where}: the model carries no class labels; pass --labels A,B,... in the order of its "
            "probability columns",
            path=where,
        )
    return chosen


def check_probabilities(path: Path, output: str, probabilities: NDArray[np.float64]) -> None:
    """ArtifactError unless every value is in [0, 1] and every row sums to 1 (within the slack)."""
    low, high = float(np.min(probabilities)), float(np.max(probabilities))
    sums = probabilities.sum(axis=1)
    worst = float(np.max(np.abs(sums - 1.0)))
    if low < -PROBABILITY_SLACK or high > 1 + PROBABILITY_SLACK or worst > PROBABILITY_SLACK:
        raise ArtifactError(
            f"{path}: output {output!r} does not hold class probabilities on the reference rows "
            f"(values from {low:.4g} to {high:.4g}, row sums off by up to {worst:.3g}); scores or "
            "logits cannot be served as probabilities",
            path=str(path),
        )


def feature_names(
    opts: PackageOptions, table: RawTable, model_names: list[str] | None, width: int | None
) -> list[str]:
    """The model's feature names, in its input order, all present in the table, and no other."""
    available = [n for n in table.columns if n != opts.target]
    names = list(opts.features) if opts.features is not None else model_names or available
    if model_names is not None and opts.features is not None and len(opts.features) != len(model_names):
        raise ConfigError(
            f"--features names {len(opts.features)} columns; the model takes {len(model_names)}"
        )
    hint = "" if opts.target else "; pass --target COLUMN for the labels"
    if width is not None and len(names) != width:
        besides = " besides the target" if opts.target else ""
        raise DatasetError(
            f"{table.path}: the model takes {width} features; the reference table has {len(names)} "
            f"columns{besides} ({name_columns(names)}){hint}"
        )
    if missing := [n for n in names if n not in table.columns]:
        raise DatasetError(f"{table.path}: no column for the model's inputs {name_columns(missing)}")
    if extra := [n for n in available if n not in names]:
        raise DatasetError(f"{table.path}: columns {name_columns(extra)} are not inputs of the model{hint}")
    return names


def features(typed: list[TypedColumn], layout: str) -> Any:
    """The model's input: a float64 matrix (matrix layout) or a DataFrame by column name."""
    if layout == "matrix":
        return np.ascontiguousarray(np.column_stack([c.values for c in typed]), dtype=np.float64)
    import pandas as pd

    return pd.DataFrame(
        {c.name: pd.Series(c.values, dtype=np.float64 if c.kind == "numeric" else object) for c in typed}
    )


def true_labels(table: RawTable, target: str, classes: list[str]) -> NDArray[np.int64]:
    """The target column as class indices; DatasetError naming a label that is not a class (and
    its row), or the classes no row has (the evaluation needs every class)."""
    labels = read_labels(table, target)
    index = {c: i for i, c in enumerate(classes)}
    for row, label in enumerate(labels):
        if label not in index:
            raise DatasetError(
                f"{table.path}: target column {target!r} row {row + 1} holds {label!r}, not one of the "
                f"model's classes ({', '.join(repr(c) for c in classes[:20])})"
            )
    y = np.array([index[label] for label in labels], dtype=np.int64)
    if absent := [c for i, c in enumerate(classes) if not np.any(y == i)]:
        raise DatasetError(
            f"{table.path}: target column {target!r} has no row of classes {absent[:20]}; the "
            "evaluation (per-class metrics, ROC curves) needs every class"
        )
    return y


def encoder_categories(estimator: Any) -> dict[str, list[str]]:
    """Column → categories of every fitted OneHotEncoder a ColumnTransformer feeds named columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    found: dict[str, list[str]] = {}
    parts = [estimator, *estimator.get_params(deep=True).values()] if hasattr(estimator, "get_params") else []
    for part in parts:
        if not isinstance(part, ColumnTransformer) or not hasattr(part, "transformers_"):
            continue
        for _, transformer, selected in part.transformers_:
            steps = getattr(transformer, "steps", [(None, transformer)])
            encoders = [s for _, s in steps if isinstance(s, OneHotEncoder)]
            if encoders and isinstance(selected, list) and all(isinstance(c, str) for c in selected):
                for column, categories in zip(selected, encoders[0].categories_, strict=False):
                    found[column] = [str(v) for v in categories]
    return found
