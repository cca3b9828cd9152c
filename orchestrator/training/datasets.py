"""Training data: the built-in scikit-learn datasets and CSV files, checked, encoded and split.

This module owns turning a ``--dataset`` argument into a float64 feature matrix with integer class
indices, every refusal of data that cannot be trained on (a :class:`DatasetError` naming the
problem: nothing is coerced or imputed behind the user's back), and the stratified train/test split
whose test row indices go into the manifest.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.errors import OrchestratorError

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_TARGET",
    "Dataset",
    "DatasetError",
    "Split",
    "encode_labels",
    "load_dataset",
    "split",
]

BUILTIN_DATASETS = ("iris", "wine", "digits")
# The column a CSV's labels are read from when --target is not given.
DEFAULT_TARGET = "target"
# Listing every column of a wide CSV in an error would drown the message.
_MAX_NAMED_COLUMNS = 20


class DatasetError(OrchestratorError):
    """Training data cannot be used as given (the message names the column or the problem)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset ready to train on: finite float64 features and labels encoded as class indices."""

    name: str
    """``iris``, ``wine``, ``digits``, or the CSV's file name."""
    source: Literal["builtin", "csv"]
    X: NDArray[np.float64]
    y: NDArray[np.int64]
    """Index into ``classes`` for every row."""
    classes: list[str]
    feature_names: list[str]

    @property
    def sha256(self) -> str:
        """Hash of the data as trained on (shapes, feature bytes, label bytes), independent of file format."""
        digest = hashlib.sha256()
        digest.update(repr((self.X.shape, self.y.shape)).encode())
        digest.update(np.ascontiguousarray(self.X, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype="<i8").tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices into the dataset, each sorted ascending."""

    train: NDArray[np.intp]
    test: NDArray[np.intp]


def load_dataset(spec: str, target: str | None = None) -> Dataset:
    """Load a built-in dataset by name, or a CSV file by path."""
    if spec in BUILTIN_DATASETS:
        if target is not None:
            raise DatasetError(
                f"--target applies to CSV files only; the built-in dataset {spec!r} has its own"
            )
        return _load_builtin(spec)
    path = Path(spec)
    if path.is_file():
        return _load_csv(path, target)
    if path.suffix.lower() == ".csv" or path.parent != Path():
        raise DatasetError(f"dataset file not found: {spec}")
    raise DatasetError(
        f"unknown dataset {spec!r}: use one of {', '.join(BUILTIN_DATASETS)}, or a path to a .csv file"
    )


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets

    loader = {"iris": datasets.load_iris, "wine": datasets.load_wine, "digits": datasets.load_digits}[name]
    bunch = loader()
    # Labels become the dataset's class names (digits names its classes by the digit). All three
    # name lists sort in index order, so the encoded labels equal sklearn's own targets, and rows
    # keep sklearn's order: the manifest's test indices point straight into `load_<name>()`.
    names = [str(n) for n in bunch.target_names]
    y, classes = encode_labels([names[int(t)] for t in bunch.target])
    return Dataset(
        name=name,
        source="builtin",
        X=np.asarray(bunch.data, dtype=np.float64),
        y=y,
        classes=classes,
        feature_names=[str(f) for f in bunch.feature_names],
    )


def _load_csv(path: Path, target: str | None) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from exc

    columns = [str(c) for c in frame.columns]
    frame.columns = pd.Index(columns)
    target_column = _target_column(path, columns, target)
    if frame.empty:
        raise DatasetError(f"{path}: the file has a header but no data rows")
    features = frame.drop(columns=[target_column])
    if features.shape[1] == 0:
        raise DatasetError(f"{path}: no feature columns besides the target {target_column!r}")

    labels = frame[target_column]
    if bool(labels.isna().any()):
        raise DatasetError(
            f"{path}: target column {target_column!r} has {int(labels.isna().sum())} missing values"
        )
    X = _numeric_features(path, features)
    try:
        y, classes = encode_labels(labels.tolist())
    except DatasetError as exc:
        raise DatasetError(f"{path}: target column {target_column!r}: {exc}") from exc
    return Dataset(
        name=path.name, source="csv", X=X, y=y, classes=classes, feature_names=list(features.columns)
    )


def _target_column(path: Path, columns: list[str], target: str | None) -> str:
    if target is not None:
        if target not in columns:
            raise DatasetError(
                f"{path}: target column {target!r} not found; columns are: {_name_columns(columns)}"
            )
        return target
    if DEFAULT_TARGET in columns:
        return DEFAULT_TARGET
    raise DatasetError(
        f"{path}: no column named {DEFAULT_TARGET!r}; pass --target COLUMN "
        f"(columns are: {_name_columns(columns)})"
    )


def _numeric_features(path: Path, features: Any) -> NDArray[np.float64]:
    """Refuse what cannot be a model input as is: text or dates (no implicit encoding), NaN, inf."""
    import pandas as pd

    # Booleans are numeric to pandas and map cleanly to 0/1; anything else non-numeric needs a
    # deliberate encoding the served model would also have to apply, so it is refused.
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DatasetError(
            f"{path}: non-numeric feature columns {_name_columns(non_numeric)}; "
            "encode them as numbers first (no automatic encoding is applied)"
        )
    X = features.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(X)
    if bad.any():
        columns = [c for c, has_bad in zip(features.columns, bad.any(axis=0), strict=True) if has_bad]
        raise DatasetError(
            f"{path}: {int(bad.sum())} missing or infinite values in feature columns {_name_columns(columns)}"
        )
    return np.ascontiguousarray(X)


def _name_columns(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_MAX_NAMED_COLUMNS])
    more = len(columns) - _MAX_NAMED_COLUMNS
    return f"{shown} and {more} more" if more > 0 else shown


def encode_labels(labels: Sequence[object]) -> tuple[NDArray[np.int64], list[str]]:
    """Encode labels as indices into their sorted string forms; refuse a single class.

    Labels are compared as ``str(label)``, so ``1`` and ``"1"`` are one class. When every label is a
    number the order is numeric (``2`` before ``10``), otherwise lexicographic.
    """
    as_text = [str(label) for label in labels]
    classes = sorted(set(as_text), key=_class_order)
    if len(classes) < 2:
        raise DatasetError(
            f"the target has a single class {classes[0]!r}" if classes else "the target has no values"
        )
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[t] for t in as_text], dtype=np.int64), classes


def _class_order(label: str) -> tuple[float, str]:
    try:
        number = float(label)
    except ValueError:
        return (math.inf, label)
    # A literal "nan" label sorts as text: NaN would make the order partial.
    return (math.inf, label) if math.isnan(number) else (number, label)


def split(dataset: Dataset, *, test_size: float, seed: int, cv_folds: int) -> Split:
    """Stratified train/test split that leaves every class in the test set and in every CV fold."""
    from sklearn.model_selection import train_test_split

    n_rows, n_classes = len(dataset.y), len(dataset.classes)
    plan = f"a stratified split ({test_size:g} test fraction) with {cv_folds}-fold cross-validation"
    # One test row plus one row per fold is the least a class can have; the split is checked again
    # below because stratified rounding can move a row either way.
    _require_rows(dataset, dataset.y, cv_folds + 1, f"rows; {plan} needs at least {cv_folds + 1} per class")
    n_test = math.ceil(test_size * n_rows)
    if n_test < n_classes or n_rows - n_test < n_classes:
        raise DatasetError(
            f"{dataset.name}: {plan} of {n_rows} rows gives {n_test} test rows, "
            f"too few to hold one row of each of the {n_classes} classes"
        )
    train, test = train_test_split(
        np.arange(n_rows), test_size=test_size, random_state=seed, stratify=dataset.y
    )
    result = Split(train=np.sort(train), test=np.sort(test))
    _require_rows(dataset, dataset.y[result.train], cv_folds, f"training rows after {plan}; add rows")
    _require_rows(dataset, dataset.y[result.test], 1, f"test rows after {plan}; add rows")
    return result


def _require_rows(dataset: Dataset, y: NDArray[np.int64], minimum: int, what: str) -> None:
    counts = np.bincount(y, minlength=len(dataset.classes))
    short = [f"{dataset.classes[i]!r} has {int(n)}" for i, n in enumerate(counts) if n < minimum]
    if short:
        raise DatasetError(f"{dataset.name}: too few rows per class: class {', '.join(short)} {what}")
