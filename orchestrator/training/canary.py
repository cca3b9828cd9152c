"""The synthetic canary: rows the model must answer exactly as the manifest says, from every
endpoint and every health probe, that are not rows of the dataset.

``GET /v1/model`` publishes the canary to anyone, so it must not leak training data. Instances
are what a client sends: rows of numbers in the matrix layout, objects keyed by column in the
columns layout (null for a missing value).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.manifest import Column
from orchestrator.training.export import OnnxModel
from orchestrator.training.tables import DatasetError, TypedColumn

__all__ = ["CANARY_ROWS", "MIN_CANARY_CLASSES", "synthetic_canary"]

# Canary rows replayed by every health probe: enough to cover several classes, small enough to be cheap.
CANARY_ROWS = 5
# Fewer distinct predicted labels than this and a constant model would pass the canary.
MIN_CANARY_CLASSES = 2


def _centre(column: TypedColumn, rows: NDArray[np.intp]) -> Any:
    """A numeric column's mean over ``rows`` (its median over all rows when they have no value),
    a categorical column's most frequent value (ties: the first in sorted order)."""
    values = column.values[rows]
    if column.kind == "numeric":
        present = values[~np.isnan(values)]
        if len(present) == 0:
            everything = column.values[~np.isnan(column.values)]
            return float(np.median(everything))
        return float(present.mean())
    counts = Counter(str(v) for v in values)
    return min(counts, key=lambda v: (-counts[v], v))


def _midpoint(column: TypedColumn, a: Any, b: Any) -> Any:
    return (a + b) / 2 if column.kind == "numeric" else a


def _key(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row compared as values: NaN equal to NaN, numbers as float64."""
    return tuple("\0nan" if isinstance(v, float) and math.isnan(v) else v for v in row)


def _candidates(
    columns: Sequence[TypedColumn], groups: NDArray[np.int64], rows: NDArray[np.intp], n_classes: int
) -> list[list[Any]]:
    """Group centres, then midpoints between consecutive centres, without dataset rows or repeats."""
    centres = []
    for k in range(n_classes):
        members = rows[groups[rows] == k]
        if len(members):
            centres.append([_centre(c, members) for c in columns])
    midpoints = [
        [_midpoint(c, a, b) for c, a, b in zip(columns, first, second, strict=True)]
        for first, second in itertools.pairwise(centres)
    ]
    known = {_key(row) for row in zip(*(c.values.tolist() for c in columns), strict=True)}
    candidates: list[list[Any]] = []
    for candidate in [*centres, *midpoints]:
        key = _key(candidate)
        if key not in known:
            known.add(key)
            candidates.append(candidate)
    if not candidates:
        raise DatasetError("every synthetic canary row is a row of the dataset; no canary can be made")
    return candidates


def _choose(labels: NDArray[np.int64]) -> list[int]:
    """Up to CANARY_ROWS indices: one row per new label first, then the rest in order."""
    chosen: list[int] = []
    seen: set[int] = set()
    for i, label in enumerate(labels):
        if int(label) not in seen and len(chosen) < CANARY_ROWS:
            chosen.append(i)
            seen.add(int(label))
    chosen += [i for i in range(len(labels)) if i not in chosen][: CANARY_ROWS - len(chosen)]
    if len(seen) < MIN_CANARY_CLASSES:
        raise DatasetError(
            f"the model predicts one class for every synthetic canary row; a canary must cover at least "
            f"{MIN_CANARY_CLASSES} classes"
        )
    return chosen


def synthetic_canary(
    columns: Sequence[TypedColumn],
    groups: NDArray[np.int64],
    rows: NDArray[np.intp],
    classes: Sequence[str],
    model: bytes,
    contract: Sequence[Column],
) -> dict[str, Any]:
    """Synthetic canary rows with the exported model's outputs: never rows of the dataset.

    ``columns`` hold every dataset row; ``groups`` is a class index per row (the true label for
    train, the model's prediction for a packaged model's reference table); only ``rows`` are
    averaged (train's training rows). Candidates are each group's centre (numeric mean, most
    frequent category), then the midpoints between consecutive centres; any candidate equal to a
    dataset row is dropped. Up to :data:`CANARY_ROWS` are kept, first those whose predicted label is
    new (so the labels cover as many classes as possible), in class order. Fewer than
    :data:`MIN_CANARY_CLASSES` distinct labels: DatasetError (a canary one constant model would
    pass proves nothing).
    """
    candidates = _candidates(columns, groups, rows, len(classes))
    matrix = not contract or contract[0].input is None
    features: Any
    if matrix:
        features = np.array(candidates, dtype=np.float64)
    else:
        features = {
            c.name: np.array(
                [row[i] for row in candidates], dtype=np.float64 if c.kind == "numeric" else object
            )
            for i, c in enumerate(columns)
        }
    labels, probabilities = OnnxModel(model, contract).predict(features)
    chosen = _choose(labels)
    instances: list[Any]
    if matrix:
        instances = [[float(v) for v in candidates[i]] for i in chosen]
    else:  # objects keyed by column; a missing category (the empty string) is sent as null
        instances = [
            {
                c.name: v if c.kind == "numeric" else (v or None)
                for c, v in zip(columns, candidates[i], strict=True)
            }
            for i in chosen
        ]
    return {
        "instances": instances,
        "labels": [classes[int(labels[i])] for i in chosen],
        "probabilities": probabilities[chosen].tolist(),
    }
