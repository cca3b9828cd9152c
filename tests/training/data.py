"""Tables as users bring them, written as CSV and Parquet for the training and packaging tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

# Text labels a reader could rewrite: "NA" and "None" (missing-value words), "001" and "1" (one
# number written two ways). The last class is rare (imbalanced).
LABELS = ("NA", "001", "1", "None")
SHARES = (0.4, 0.3, 0.22, 0.08)
HEADER = ["age", "region", "plan tier", "noise", "segment"]


def mixed_rows(n: int = 400, seed: int = 0) -> list[list[str]]:
    """Rows of a mixed table as text: numeric ``age`` with blanks, categorical ``region`` (with
    blanks and the category "NA") and ``plan tier``, numeric ``noise``, text label ``segment``."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = int(rng.choice(len(LABELS), p=SHARES))
        age = rng.normal(30 + 10 * k, 4)
        region = str(rng.choice(["EU", "US", "AS"]) if k != 1 else rng.choice(["EU", "NA"]))
        plan = (
            ["basic", "pro", "team", "basic"][k]
            if rng.random() < 0.8
            else str(rng.choice(["basic", "pro", "team"]))
        )
        rows.append(
            [
                "" if rng.random() < 0.1 else f"{age:.2f}",
                "" if rng.random() < 0.05 else region,
                plan,
                f"{rng.normal():.3f}",
                LABELS[k],
            ]
        )
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    """The same table as Parquet, typed: numbers as float64 (null for a blank), text as strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {}
    for i, name in enumerate(header):
        cells = [row[i] for row in rows]
        if name in ("age", "noise"):
            columns[name] = pa.array([float(c) if c else None for c in cells], type=pa.float64())
        else:
            columns[name] = pa.array([c if c else None for c in cells], type=pa.string())
    pq.write_table(pa.table(columns), path)
    return path


def mixed_frame(rows: list[list[str]]):
    """Features and labels as a scikit-learn user would load them: a DataFrame with float64 numbers
    (NaN for blanks) and text categories ("" for blanks), labels as text."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=HEADER)
    X = frame.drop(columns=["segment"])
    for name in ("age", "noise"):
        X[name] = pd.to_numeric(X[name].replace("", np.nan)).astype(np.float64)
    X = X.astype({"region": object, "plan tier": object})
    return X, frame["segment"].to_numpy(dtype=object)


def double(x):
    """A function a FunctionTransformer may carry: skops stores it by name, and package must
    refuse to trust it."""
    return 2 * x
