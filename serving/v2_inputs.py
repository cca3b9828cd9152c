"""The inputs of this endpoint's models as Open Inference Protocol tensors: what each model takes,
and a request's tensors (JSON or binary, :mod:`serving.tensors`) turned into what it predicts on.

- a ``matrix`` model takes exactly one input, ``input``, of shape ``[rows, features]`` and any
  numeric datatype (``FP16``, ``FP32``, ``FP64``, ``INT8``..``INT64``, ``UINT8``..``UINT64``), given
  to the model as float64;
- a ``columns`` model takes exactly one input per column, named by the column, shape ``[rows]`` or
  ``[rows, 1]`` with the same ``rows`` for every input: ``BYTES`` (UTF-8 text) for a categorical
  column, a numeric datatype for a numeric one; JSON ``null`` (or a binary NaN) is a missing value.

The model's outputs are ``label`` (``BYTES``, the class names) and ``probabilities`` (``FP64``,
``[rows, classes]``); a request may ask for either or both (:func:`requested_outputs`), and for
``probabilities`` classified (Triton's classification extension: ``parameters.classification`` k,
the k most probable classes of each row as ``BYTES`` ``"probability:index:label"``, shape
``[rows, k]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from orchestrator.core.artifact.manifest import Column
from serving.columns import ColumnBatch
from serving.inputs import MAX_ROWS, InputError, _check_structure, shown
from serving.tensor_values import input_values
from serving.tensors import (
    NUMERIC_DATATYPES,
    InferInput,
    InferRequest,
    RequestedOutput,
    parse_infer_request,
    split_binary_body,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUTS",
    "decode_v2_columns_request",
    "decode_v2_request",
    "requested_outputs",
]

INPUT_NAME = "input"
OUTPUTS = ("label", "probabilities")
_NUMERIC = sorted(NUMERIC_DATATYPES)


def decode_v2_request(
    body: bytes, n_features: int, header: bytes | None = None
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], InferRequest]:
    """A ``matrix`` model's infer body (``header``: the ``Inference-Header-Content-Length`` value,
    None when absent) → (float64 matrix [rows, n_features], the parsed request). InputError 4xx."""
    head, tail = split_binary_body(body, header)
    if head:  # values are counted before they become Python objects (a binary tail never does)
        _check_structure(head, n_features, "request body")
    takes = f"exactly one tensor, {INPUT_NAME!r}, of shape [rows, {n_features}]"
    request = parse_infer_request(head, tail, (INPUT_NAME,), takes)
    tensor = request.inputs[0]
    if tensor.datatype not in NUMERIC_DATATYPES:
        raise InputError(f"{tensor.field('datatype')} must be one of {_NUMERIC}, got {tensor.datatype!r}")
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != n_features:
        raise InputError(
            f"{tensor.field('shape')} is {shown(shape)}; it must be [rows, {n_features}]: the model expects "
            f"{n_features} features"
        )
    _check_rows(tensor, shape[0])
    matrix = input_values(tensor)
    requested_outputs(request)
    return matrix, request


def _check_rows(tensor: InferInput, rows: int) -> None:
    if rows > MAX_ROWS:
        raise InputError(f"{tensor.what} has {rows} rows; at most {MAX_ROWS} per request", 413)


def decode_v2_columns_request(
    body: bytes, columns: Sequence[Column], header: bytes | None = None
) -> tuple[ColumnBatch, InferRequest]:
    """A ``columns`` model's infer body → (its feeds, the parsed request). InputError 4xx naming
    the input (column) at fault."""
    head, tail = split_binary_body(body, header)
    if head:
        _check_structure(head, len(columns), "request body")
    names = [c.name for c in columns]
    request = parse_infer_request(head, tail, names, f"one input per column: {names}")
    tensors = {t.name: t for t in request.inputs}
    rows: int | None = None
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for column in columns:
        tensor = tensors[column.name]
        what = f"input {column.name!r}"
        shape = list(tensor.shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{what}: shape must be [rows] or [rows, 1], got {shown(shape)}")
        if column.kind == "categorical" and tensor.datatype != "BYTES":
            raise InputError(
                f"{what} is a categorical column: datatype must be BYTES, got {tensor.datatype!r}"
            )
        if column.kind == "numeric" and tensor.datatype not in NUMERIC_DATATYPES:
            raise InputError(
                f"{what} is a numeric column: datatype must be one of {_NUMERIC}, got {tensor.datatype!r}"
            )
        _check_rows(tensor, shape[0])
        if rows is not None and shape[0] != rows:
            raise InputError(f"{what} has {shape[0]} rows; the other inputs have {rows}")
        rows = shape[0]
        feeds[str(column.input)] = input_values(tensor, nullable=True).reshape(-1, 1)
    assert rows is not None
    requested_outputs(request)
    return ColumnBatch(feeds, rows), request


def requested_outputs(request: InferRequest) -> tuple[RequestedOutput, ...]:
    """The outputs to return, in order: those the request names (each known, InputError 422
    otherwise), or all of them, binary if the request's ``binary_data_output`` says so."""
    if not request.outputs:  # absent or empty: all of them
        return tuple(RequestedOutput(name, request.binary_output) for name in OUTPUTS)
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise InputError(f"unknown output {output.name!r}; the model's outputs are {list(OUTPUTS)}")
        if output.classification and output.name != "probabilities":
            raise InputError(
                f"output {output.name!r} cannot be classified (parameters.classification): it holds "
                "labels already; ask it of 'probabilities'"
            )
    return request.outputs
