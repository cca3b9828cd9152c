"""Tables as users have them: CSV or Parquet files read cell by cell, typed column by column.

This module owns what a cell means, for ``train`` and for ``package``'s reference tables alike:

- Every CSV cell is read as the text written (no type guessing by the reader, no ``NA`` turned into
  NaN behind the user's back); a Parquet column keeps its declared type.
- **Labels** are text exactly as written (``NA``, ``None``, ``001``, ``1.0`` are classes of their
  own); only an empty cell (or a Parquet null) is a missing label. A Parquet number label is its
  Python spelling (``3``, ``1.0``, ``True``).
- A **feature** column is ``numeric`` when every non-empty cell is a number or a missing-value
  marker (:data:`MISSING_MARKERS`: what spreadsheets, R and pandas write for "no value"; only in
  a column of numbers, where no marker could be a value), else ``categorical`` when no cell is a
  number, else it mixes types: :class:`~orchestrator.training.datasets.DatasetError` naming the
  column and an example row. A column named in ``categorical`` is text whatever its cells look like
  (codes, zip codes). Numeric cells become float64, missing ones NaN (imputed inside the model);
  infinite values are refused. Categorical cells stay text, missing ones the empty string (the
  one-hot encoder's category for "missing"; an endpoint sends null for it).

Rows in messages count from 1, the header excluded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.errors import OrchestratorError

__all__ = [
    "MISSING_MARKERS",
    "ColumnKind",
    "DatasetError",
    "RawColumn",
    "RawTable",
    "TypedColumn",
    "name_columns",
    "read_table",
    "type_column",
]

ColumnKind = Literal["numeric", "categorical"]
# pandas' default missing-value strings (read_csv's na_values documentation), R's NA and Excel's
# errors: in a column otherwise of numbers they can only mean "no value". Never applied to text
# columns or labels, where "NA" may be North America and "None" a class.
MISSING_MARKERS = frozenset(
    {
        "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
        "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip
# A decimal number as CSV writers spell it: optional sign, digits with an optional fraction, an
# optional exponent. Hexadecimal, '1_000' (Python's float() accepts it) and '1,5' are not numbers.
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_INFINITY = r"[+-]?(?:inf|Inf|INF|infinity|Infinity|INFINITY)"
_NUMBER_RE = re.compile(rf"\s*(?:{_NUMBER}|{_INFINITY})\s*")
# Listing every column of a wide table in an error would drown the message.
_MAX_NAMED_COLUMNS = 20
_PARQUET_MAGIC = b"PAR1"


class DatasetError(OrchestratorError):
    """Training data cannot be used as given (the message names the column or the problem)."""


@dataclass(frozen=True, eq=False)
class RawColumn:
    """One column as stored: ``text`` cells (CSV, or a Parquet string column; ``""`` is empty)
    or ``numbers`` (a Parquet number or boolean column; float64, NaN for null), and for labels
    ``spelled``: every cell as text, None for an empty one."""

    name: str
    text: NDArray[np.object_] | None = None
    numbers: NDArray[np.float64] | None = None
    spelled: tuple[str | None, ...] = ()


@dataclass(frozen=True, eq=False)
class RawTable:
    """A table read from ``path``: its columns in file order, all ``n_rows`` long."""

    path: Path
    format: Literal["csv", "parquet"]
    columns: dict[str, RawColumn]
    n_rows: int
    sha256: str
    """Of the file's bytes."""

    @property
    def name(self) -> str:
        """The file's name (no directory: it goes into the manifest)."""
        return self.path.name


@dataclass(frozen=True, eq=False)
class TypedColumn:
    """A feature column ready for a model: float64 (NaN missing) or text (``""`` missing)."""

    name: str
    kind: ColumnKind
    values: NDArray[Any]


def name_columns(columns: Sequence[str]) -> str:
    """``'a', 'b' and 3 more``: column names quoted for a message, at most 20 of them."""
    shown = ", ".join(repr(c) for c in columns[:_MAX_NAMED_COLUMNS])
    more = len(columns) - _MAX_NAMED_COLUMNS
    return f"{shown} and {more} more" if more > 0 else shown


def read_table(path: Path) -> RawTable:
    """Read a CSV or Parquet file (told apart by Parquet's magic bytes, not the suffix).

    DatasetError naming the file if it is empty, unreadable, has no data rows, repeats a column
    name, or holds a Parquet column of a type no model input can be (dates, binary, nested).
    """
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(_PARQUET_MAGIC))
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc.strerror})") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if magic == _PARQUET_MAGIC:
        columns, n_rows = _read_parquet(path)
        fmt: Literal["csv", "parquet"] = "parquet"
    else:
        columns, n_rows = _read_csv(path)
        fmt = "csv"
    if n_rows == 0:
        raise DatasetError(f"{path}: the file has a header but no data rows")
    return RawTable(path=path, format=fmt, columns=columns, n_rows=n_rows, sha256=digest)


def _read_csv(path: Path) -> tuple[dict[str, RawColumn], int]:
    import pandas as pd

    # Every cell as the text written: no dtype inference, no NA strings, nothing skipped.
    text_only: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False}
    try:
        header = pd.read_csv(path, header=None, nrows=1, **text_only)
        frame = pd.read_csv(path, **text_only)
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from exc
    names = [str(c) for c in header.iloc[0].tolist()] if len(header) else []
    _refuse_duplicates(path, names)
    columns = {}
    for name, column in zip(names, frame.columns, strict=True):
        cells = frame[column].to_numpy(dtype=object)
        columns[name] = RawColumn(name=name, text=cells, spelled=tuple(c if c != "" else None for c in cells))
    return columns, len(frame)


def _read_parquet(path: Path) -> tuple[dict[str, RawColumn], int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from exc
    _refuse_duplicates(path, [str(n) for n in table.column_names])
    columns = {}
    for field, chunked in zip(table.schema, table.columns, strict=True):
        name, kind, data = str(field.name), field.type, chunked
        if pat.is_dictionary(kind):
            data, kind = chunked.cast(kind.value_type), kind.value_type
        values = data.to_pylist()
        spelled = tuple(None if v is None or v == "" else str(v) for v in values)
        if pat.is_string(kind) or pat.is_large_string(kind) or pat.is_string_view(kind):
            text = np.array(["" if v is None else v for v in values], dtype=object)
            columns[name] = RawColumn(name=name, text=text, spelled=spelled)
        elif pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind) or pat.is_decimal(kind):
            numbers = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
            # A float NaN is a missing label as much as a null is.
            spelled = tuple(None if s is None or s == "nan" else s for s in spelled)
            columns[name] = RawColumn(name=name, numbers=numbers, spelled=spelled)
        else:
            raise DatasetError(
                f"{path}: column {name!r} has Parquet type {kind}; model inputs are numbers or text "
                "(convert dates to numbers, or drop the column)"
            )
    return columns, table.num_rows


def _refuse_duplicates(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DatasetError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)


def type_column(
    path: Path, column: RawColumn, *, categorical: Collection[str] = (), kind: ColumnKind | None = None
) -> TypedColumn:
    """The feature column ``column`` typed as the module docstring says.

    ``kind`` forces the kind (a packaged model's input type): a cell that is not of it is a
    DatasetError naming the column and row. Also DatasetError: a column without any value, a
    column mixing numbers and text, an infinite number.
    """
    name = column.name
    if column.numbers is not None:
        if kind == "categorical" or name in categorical:
            raise DatasetError(
                f"{path}: column {name!r} holds numbers (Parquet type), but the model takes it as text"
            )
        return TypedColumn(name, "numeric", _finite(path, name, column.numbers, column.spelled))
    assert column.text is not None
    cells = column.text
    empty = np.array([c == "" for c in cells], dtype=bool)
    if empty.all():
        raise DatasetError(f"{path}: column {name!r} has no values (every cell is empty)")
    if kind == "categorical" or (kind is None and name in categorical):
        return TypedColumn(name, "categorical", cells.copy())
    numeric = np.array([bool(_NUMBER_RE.fullmatch(c)) for c in cells], dtype=bool)
    marker = np.array([c.strip() in MISSING_MARKERS for c in cells], dtype=bool)
    text = ~(empty | numeric | marker)
    if kind is None and not numeric.any():
        return TypedColumn(name, "categorical", cells.copy())
    if text.any():
        row = int(np.flatnonzero(text)[0])
        if kind == "numeric":
            raise DatasetError(
                f"{path}: column {name!r} row {row + 1} holds {cells[row]!r}, not a number, but the "
                "model takes the column as numbers"
            )
        # The example is a cell of the minority type: the one most likely to be the mistake.
        if numeric.sum() >= text.sum():
            example, others = row, f"{int(numeric.sum())} other rows hold numbers"
        else:
            example = int(np.flatnonzero(numeric)[0])
            others = f"{int(text.sum())} other rows hold text"
        raise DatasetError(
            f"{path}: column {name!r} mixes numbers and text: row {example + 1} holds "
            f"{cells[example]!r} where {others}; leave missing values empty, or pass "
            f"--categorical {name} to read every value as text"
        )
    values = np.full(len(cells), np.nan, dtype=np.float64)
    values[numeric] = [float(c) for c in cells[numeric]]
    return TypedColumn(name, "numeric", _finite(path, name, values, tuple(cells)))


def _finite(
    path: Path, name: str, values: NDArray[np.float64], spelled: Sequence[str | None]
) -> NDArray[np.float64]:
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise DatasetError(
            f"{path}: column {name!r} row {row + 1} holds {spelled[row]!r}, an infinite value "
            "(missing values are imputed, infinite ones are refused)"
        )
    if np.isnan(values).all():
        raise DatasetError(f"{path}: column {name!r} has no values (every cell is missing)")
    return values
