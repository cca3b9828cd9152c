"""Training data: the built-in scikit-learn datasets and CSV or Parquet tables, checked, typed and split.

This module owns turning a ``--dataset`` argument into feature columns (numeric float64 with NaN
for missing values, or categorical text; :mod:`.tables` says how a cell is read) and labels kept
exactly as written, encoded as class indices; every refusal of data that cannot be trained on (a
:class:`DatasetError` naming the column, the row or the problem); and the stratified train/test
split whose test row indices go into the manifest.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.training.tables import (
    DatasetError,
    RawTable,
    TypedColumn,
    name_columns,
    read_table,
    type_column,
)

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_TARGET",
    "Dataset",
    "DatasetError",
    "Split",
    "encode_labels",
    "load_dataset",
    "read_labels",
    "split",
]

BUILTIN_DATASETS = ("iris", "wine", "digits")
# The column a table's labels are read from when --target is not given.
DEFAULT_TARGET = "target"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset ready to train on: typed feature columns and labels encoded as class indices.

    ``layout`` is ``matrix`` when every column is numeric (the model takes one float64 matrix),
    else ``columns`` (one input per column).
    """

    name: str
    """``iris``, ``wine``, ``digits``, or the table's file name."""
    source: Literal["builtin", "csv", "parquet"]
    columns: list[TypedColumn]
    y: NDArray[np.int64]
    """Index into ``classes`` for every row."""
    classes: list[str]

    @property
    def feature_names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def layout(self) -> Literal["matrix", "columns"]:
        """``matrix`` when every column is numeric, else ``columns``."""
        return "matrix" if all(c.kind == "numeric" for c in self.columns) else "columns"

    @property
    def X(self) -> NDArray[np.float64]:
        """The features as a float64 matrix ``[rows, columns]`` (NaN: missing); matrix layout only."""
        if self.layout != "matrix":
            raise ValueError("a dataset with categorical columns has no numeric matrix")
        return np.ascontiguousarray(np.column_stack([c.values for c in self.columns]), dtype=np.float64)

    def features(self, rows: NDArray[np.intp] | None = None) -> Any:
        """The model's input for ``rows`` (all by default): the float64 matrix in the matrix
        layout, else a pandas DataFrame with one column per feature (float64 or object text)."""
        if self.layout == "matrix":
            return self.X if rows is None else self.X[rows]
        import pandas as pd

        picked = {c.name: c.values if rows is None else c.values[rows] for c in self.columns}
        return pd.DataFrame(
            {
                n: pd.Series(v, dtype=np.float64 if v.dtype == np.float64 else object)
                for n, v in picked.items()
            }
        )

    @property
    def sha256(self) -> str:
        """Hash of the data as trained on (shapes, feature values, labels), independent of file format."""
        digest = hashlib.sha256()
        if self.layout == "matrix":
            # Unchanged from schema 1, so a built-in dataset keeps its hash.
            digest.update(repr((self.X.shape, self.y.shape)).encode())
            digest.update(np.ascontiguousarray(self.X, dtype="<f8").tobytes())
        else:
            digest.update(repr((len(self.y), [(c.name, c.kind) for c in self.columns])).encode())
            for column in self.columns:
                if column.kind == "numeric":
                    digest.update(np.ascontiguousarray(column.values, dtype="<f8").tobytes())
                else:
                    for cell in column.values:
                        encoded = str(cell).encode()
                        digest.update(len(encoded).to_bytes(8, "little") + encoded)
        digest.update(np.ascontiguousarray(self.y, dtype="<i8").tobytes())
        digest.update(repr(self.classes).encode())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices into the dataset, each sorted ascending."""

    train: NDArray[np.intp]
    test: NDArray[np.intp]


def load_dataset(spec: str, target: str | None = None, categorical: Collection[str] = ()) -> Dataset:
    """Load a built-in dataset by name, or a CSV or Parquet file by path.

    ``categorical`` names columns to read as text categories whatever their cells look like.
    DatasetError for anything :mod:`.tables` refuses, a missing label, a single class, or a
    ``categorical`` name that is not a feature column.
    """
    if spec in BUILTIN_DATASETS:
        if target is not None or categorical:
            option = "--target" if target is not None else "--categorical"
            raise DatasetError(
                f"{option} applies to CSV and Parquet files only; the built-in dataset {spec!r} has its own"
            )
        return _load_builtin(spec)
    path = Path(spec)
    if path.is_file():
        return _load_table(read_table(path), target, categorical)
    if path.suffix.lower() in {".csv", ".parquet", ".pq"} or path.parent != Path():
        raise DatasetError(f"dataset file not found: {spec}")
    raise DatasetError(
        f"unknown dataset {spec!r}: use one of {', '.join(BUILTIN_DATASETS)}, "
        "or a path to a .csv or .parquet file"
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
    data = np.asarray(bunch.data, dtype=np.float64)
    columns = [
        TypedColumn(str(f), "numeric", np.ascontiguousarray(data[:, i]))
        for i, f in enumerate(bunch.feature_names)
    ]
    return Dataset(name=name, source="builtin", columns=columns, y=y, classes=classes)


def _load_table(table: RawTable, target: str | None, categorical: Collection[str]) -> Dataset:
    path, names = table.path, list(table.columns)
    target_column = _target_column(path, names, target)
    features = [n for n in names if n != target_column]
    if not features:
        raise DatasetError(f"{path}: no feature columns besides the target {target_column!r}")
    if unknown := sorted(set(categorical) - set(features)):
        raise DatasetError(
            f"{path}: --categorical names {name_columns(unknown)}, not feature columns "
            f"(they are: {name_columns(features)})"
        )
    labels = read_labels(table, target_column)
    columns = [type_column(path, table.columns[n], categorical=categorical) for n in features]
    try:
        y, classes = encode_labels(labels)
    except DatasetError as exc:
        raise DatasetError(f"{path}: target column {target_column!r}: {exc}") from exc
    return Dataset(name=path.name, source=table.format, columns=columns, y=y, classes=classes)


def read_labels(table: RawTable, column: str) -> list[str]:
    """The labels in ``column`` exactly as written; DatasetError naming the column, the count and
    the first row if any cell is empty (the only missing label)."""
    spelled = table.columns[column].spelled
    missing = [i for i, label in enumerate(spelled) if label is None]
    if missing:
        raise DatasetError(
            f"{table.path}: target column {column!r} has {len(missing)} missing values (empty cells), "
            f"the first at row {missing[0] + 1}; label every row or drop the unlabelled ones"
        )
    return [label for label in spelled if label is not None]


def _target_column(path: Path, columns: list[str], target: str | None) -> str:
    if target is not None:
        if target not in columns:
            raise DatasetError(
                f"{path}: target column {target!r} not found; columns are: {name_columns(columns)}"
            )
        return target
    if DEFAULT_TARGET in columns:
        return DEFAULT_TARGET
    raise DatasetError(
        f"{path}: no column named {DEFAULT_TARGET!r}; pass --target COLUMN "
        f"(columns are: {name_columns(columns)})"
    )


def encode_labels(labels: Sequence[object]) -> tuple[NDArray[np.int64], list[str]]:
    """Encode labels as indices into their sorted string forms; refuse a single class.

    Labels are compared as ``str(label)``, so ``1`` and ``"1"`` are one class (a table's labels
    are text already: ``"1"`` and ``"1.0"`` stay two). Labels that read as numbers sort by value
    first (``2`` before ``10``; ``"001"`` before ``"1"`` at equal value), the others after them,
    lexicographically.
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
