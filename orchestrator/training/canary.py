"""The synthetic canary: rows the model must answer exactly as the manifest says, from every
endpoint and every health probe, that are not rows of the dataset.

``GET /v1/model`` publishes the canary to anyone, so it must not leak training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.training.datasets import Dataset, DatasetError
from orchestrator.training.export import OnnxModel

__all__ = ["CANARY_ROWS", "MIN_CANARY_CLASSES", "synthetic_canary"]

# Canary rows replayed by every health probe: enough to cover several classes, small enough to be cheap.
CANARY_ROWS = 5
# Fewer distinct predicted labels than this and a constant model would pass the canary.
MIN_CANARY_CLASSES = 2


def synthetic_canary(dataset: Dataset, train: NDArray[np.intp], model: bytes) -> dict[str, Any]:
    """Synthetic canary rows with the exported model's outputs: never rows of the dataset.

    ``/v1/model`` publishes the canary to anyone, so it must not leak training data. Candidates are
    each class's mean training row, then the midpoints between consecutive class means; any
    candidate equal to a dataset row is dropped. Up to :data:`CANARY_ROWS` are kept, first those
    whose predicted label is new (so the labels cover as many classes as possible), in class order.
    Fewer than :data:`MIN_CANARY_CLASSES` distinct labels: DatasetError (a canary one constant model
    would pass proves nothing).
    """
    X, y = dataset.X[train], dataset.y[train]
    means = np.array([X[y == k].mean(axis=0) for k in range(len(dataset.classes)) if np.any(y == k)])
    midpoints = (means[:-1] + means[1:]) / 2 if len(means) > 1 else np.empty((0, X.shape[1]))
    candidates = np.vstack([means, midpoints])
    known = {row.tobytes() for row in np.ascontiguousarray(dataset.X, dtype=np.float64)}
    candidates = np.array([c for c in candidates if c.astype(np.float64).tobytes() not in known])
    labels, probabilities = OnnxModel(model).predict(candidates)
    chosen: list[int] = []
    seen: set[int] = set()
    for i, label in enumerate(labels):  # one row per new label first
        if int(label) not in seen and len(chosen) < CANARY_ROWS:
            chosen.append(i)
            seen.add(int(label))
    for i in range(len(candidates)):  # then fill up, if there are fewer labels than rows
        if len(chosen) >= CANARY_ROWS:
            break
        if i not in chosen:
            chosen.append(i)
    if len(seen) < MIN_CANARY_CLASSES:
        raise DatasetError(
            f"the model predicts one class for every synthetic canary row; a canary must cover at least "
            f"{MIN_CANARY_CLASSES} classes"
        )
    return {
        "instances": candidates[chosen].tolist(),
        "labels": [dataset.classes[int(labels[i])] for i in chosen],
        "probabilities": probabilities[chosen].tolist(),
    }
