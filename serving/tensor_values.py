"""The values of an Open Inference Protocol (KServe V2) input tensor, checked against its declared
datatype and shape: JSON data (decoded by msgspec with each datatype's bounds, or by simdjson straight
into a float64 buffer for large float tensors) or binary data (the binary tensor data extension:
:mod:`serving.tensors`).

Values are strict (every refusal is an :class:`~serving.inputs.InputError` naming the input and the
element, as a JSON path such as ``inputs[0].data[1][7]`` or as a flat element index):

- JSON numbers must fit the declared datatype: integers (not ``1.0``) within the type's range for
  ``INT8``..``INT64`` and ``UINT8``..``UINT64``; for ``FP16`` and ``FP32``, numbers that round to a
  finite value of the type (below 65520 in magnitude for ``FP16``, whose largest value is 65504;
  below 2**128 - 2**103 for ``FP32``, so that ``3.4028235e38``, float32's largest value as float32
  prints it, fits); booleans are never numbers. Values are then taken as the declared
  datatype, as a binary tensor of that type would be (an ``FP32`` value is rounded to float32), and
  given to the model as float64.
- ``data`` is flat (row-major) or nested exactly by ``shape``: nothing is re-flowed into rows the
  client did not send; the element count is the product of ``shape``.
- NaN and infinity are refused (binary tensors can hold them; JSON cannot); a nullable input (a
  ``columns`` model's numeric column) takes JSON ``null`` or a binary NaN as a missing value.

Pure functions of bytes: no framework types.
"""

from __future__ import annotations

import functools
import re
import struct
from typing import Annotated, Any

import msgspec
import numpy as np
import simdjson

from serving.inputs import MAX_ROWS, InputError, shown, simdjson_parse
from serving.tensors import DTYPES, FLOAT_LIMITS, FLOAT_MAX, INTEGER_RANGES, InferInput

__all__ = ["input_values"]

# Below this size a tensor's data is decoded by msgspec alone: simdjson's fast path is as fast there
# and its checks are not worth running (the threshold of /v1/predict's fast path).
_FAST_PATH_MIN_BYTES = 16 * 1024
_FAST_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


@functools.lru_cache(maxsize=64)
def _decoder(datatype: str, depth: int, nullable: bool) -> msgspec.json.Decoder[Any]:
    """A decoder of ``data`` nested ``depth`` deep whose elements must fit ``datatype`` (range
    checks in C, with the JSON path of the first element at fault)."""
    element: Any
    if datatype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[datatype]
        # msgspec takes no bound beyond int64: UINT64's upper bound is checked after decoding.
        element = (
            Annotated[int, msgspec.Meta(ge=low)]
            if datatype == "UINT64"
            else Annotated[int, msgspec.Meta(ge=low, le=high)]
        )
    elif datatype in FLOAT_LIMITS:
        limit = FLOAT_LIMITS[datatype]  # exclusive: from it on, a number rounds to infinity
        element = Annotated[float, msgspec.Meta(gt=-limit, lt=limit)]
    elif datatype == "FP64":
        element = float
    elif datatype == "BOOL":
        element = bool
    else:  # BYTES: text
        element = str
    if nullable:
        element = element | None
    for _ in range(depth):
        element = list[element]
    return msgspec.json.Decoder(element)


def _depth(data: bytes) -> int:
    """How many ``[`` open ``data`` before its first element (0: not an array)."""
    depth = 0
    for byte in data:
        if byte == 0x5B:  # [
            depth += 1
        elif byte not in b" \t\r\n":
            break
    return depth


def input_values(tensor: InferInput, *, nullable: bool = False) -> np.ndarray[Any, Any]:
    """The values of ``tensor`` as an array of its shape: float64 for a numeric datatype, object (str)
    for ``BYTES``, bool for ``BOOL``. With ``nullable``, JSON null (and a binary float NaN) is a
    missing value: NaN in a numeric tensor, ``""`` in a BYTES one. InputError 4xx naming the input
    and the element at fault."""
    if tensor.size > MAX_ROWS * 10_000:  # no model here is 10,000 wide: refuse before allocating
        raise InputError(f"{tensor.what} has shape {shown(list(tensor.shape))}: too many elements", 413)
    if tensor.binary is not None:
        return _binary_values(tensor, nullable)
    assert tensor.json is not None
    return _json_values(tensor, nullable)


def _json_values(tensor: InferInput, nullable: bool) -> np.ndarray[Any, Any]:
    data, what, shape = tensor.json or b"", tensor.what, list(tensor.shape)
    depth = _depth(data)
    if depth not in (1, len(shape)):
        raise InputError(
            f"{tensor.field('data')} must be a list of values, flat or nested by shape {shown(shape)} "
            f"({len(shape)} deep), got {shown(data[:60].decode('utf-8', 'replace'))}"
        )
    if not nullable and (fast := _plain_floats(data, tensor, depth)) is not None:
        return fast
    try:
        values = _decoder(tensor.datatype, depth, nullable).decode(data)
    except msgspec.ValidationError as exc:
        where = str(exc).replace("`$", f"`inputs[{tensor.index}].data")
        if depth == 1 and (match := re.search(r"`\$\[(\d+)\]", str(exc))):
            where += _at(int(match.group(1)), shape)  # the flat index, and where it falls in shape
        if tensor.datatype in FLOAT_MAX and re.search(r"Expected `float` [<>]", where):
            where += f" ({tensor.datatype}'s largest finite value is {FLOAT_MAX[tensor.datatype]:.9g})"
        raise InputError(f"{what} ({tensor.datatype}): {where}") from exc
    except Exception as exc:  # malformed JSON was refused with the envelope; nesting too deep
        raise InputError(f"{tensor.field('data')} could not be decoded: {type(exc).__name__}") from exc
    if depth == 1:
        if len(values) != tensor.size:
            raise InputError(
                f"{tensor.field('data')} has {len(values)} values; shape {shown(shape)} needs {tensor.size}"
            )
    else:
        _check_nested(values, shape, 0, f"{what}: inputs[{tensor.index}].data")
    return _as_array(values, tensor, depth, nullable)


def _as_array(values: list[Any], tensor: InferInput, depth: int, nullable: bool) -> np.ndarray[Any, Any]:
    """Decoded (and range-checked) values as an array of the tensor's shape (see input_values)."""
    shape = list(tensor.shape)
    if tensor.datatype == "BYTES":
        array = np.empty(tensor.size, dtype=object)
        array[:] = _flat(values, depth)
        if nullable:
            array[array == None] = ""  # noqa: E711  (element-wise comparison)
        return array.reshape(shape)
    if tensor.datatype == "BOOL":
        return np.array(values, dtype=bool).reshape(shape)
    if nullable:  # None becomes NaN: the missing value a columns model's imputer fills
        return np.array(values, dtype=np.float64).reshape(shape)
    try:
        typed = np.array(values, dtype=DTYPES[tensor.datatype])
    except OverflowError:  # only UINT64 values above 2**64 - 1 get here
        raise _uint64_error(tensor, values, depth) from None
    return typed.astype(np.float64, copy=False).reshape(shape)


def _uint64_error(tensor: InferInput, values: list[Any], depth: int) -> InputError:
    """The error naming the first UINT64 value above the type's maximum (msgspec cannot bound it)."""
    shape = list(tensor.shape)
    high = INTEGER_RANGES["UINT64"][1]
    bad = next(i for i, v in enumerate(_flat(values, depth)) if v > high)
    if depth == 1:
        where = f"[{bad}]`{_at(bad, shape)}"
    else:
        where = "".join(f"[{int(k)}]" for k in np.unravel_index(bad, shape)) + "`"
    return InputError(
        f"{tensor.what} (UINT64): Expected `int` <= {high} - at `inputs[{tensor.index}].data{where}"
    )


def _plain_floats(data: bytes, tensor: InferInput, depth: int) -> np.ndarray[Any, Any] | None:
    """A float tensor's values straight from simdjson into a float64 buffer, with no Python float
    per value (as ``/v1/predict``'s fast path: :mod:`serving.inputs`), if ``data`` is large and
    provably plain: numbers only, flat or nested exactly by a 2-D shape, finite and within the
    datatype's range. None if in any doubt: the exact path then decides, and words any error."""
    if len(data) < _FAST_PATH_MIN_BYTES or tensor.datatype not in _FAST_DATATYPES:
        return None
    shape = list(tensor.shape)
    try:
        doc = simdjson_parse(data)
        if not isinstance(doc, simdjson.Array) or depth not in (1, 2) or len(shape) != 2:
            raise _NotPlain
        # Every "[" opens an array (numbers only: as_buffer refuses strings), so the count proves
        # there is no nesting beyond the rows.
        rows, brackets = (tensor.size, 1) if depth == 1 else (shape[0], shape[0] + 1)
        if len(doc) != rows or data.count(b"[") != brackets:
            raise _NotPlain
        if depth == 2 and any(not isinstance(row, simdjson.Array) or len(row) != shape[1] for row in doc):
            raise _NotPlain
        flat = np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64)
        limit = FLOAT_LIMITS.get(tensor.datatype, np.inf)
        if flat.size != tensor.size or not np.isfinite(flat).all() or np.abs(flat).max() >= limit:
            raise _NotPlain
    except Exception:  # _NotPlain, or simdjson's own errors (a boolean, 1e400, a 20-digit integer)
        return None
    finally:
        doc = None  # this thread's parser may be reused only once its document is gone
    return flat.astype(DTYPES[tensor.datatype]).astype(np.float64, copy=False).reshape(shape)


class _NotPlain(Exception):
    pass


def _flat(values: list[Any], depth: int) -> list[Any]:
    for _ in range(depth - 1):
        values = [v for row in values for v in row]
    return values


def _check_nested(values: list[Any], shape: list[int], axis: int, path: str) -> None:
    """Nested data must have exactly ``shape``: the first list of the wrong length is named."""
    if len(values) != shape[axis]:
        raise InputError(
            f"{path} has {len(values)} elements; shape {shown(shape)} needs {shape[axis]} along axis {axis}"
        )
    if axis + 1 < len(shape):
        for i, row in enumerate(values):
            if len(row) != shape[axis + 1] or axis + 2 < len(shape):
                _check_nested(row, shape, axis + 1, f"{path}[{i}]")


def _binary_values(tensor: InferInput, nullable: bool) -> np.ndarray[Any, Any]:
    data, what, shape = tensor.binary or b"", tensor.what, list(tensor.shape)
    if tensor.datatype == "BYTES":
        return np.array(_decode_bytes(data, tensor), dtype=object).reshape(shape)
    dtype = DTYPES[tensor.datatype]
    if len(data) != tensor.size * dtype.itemsize:
        raise InputError(
            f"{what} ({tensor.datatype}) has {len(data)} bytes of binary data; shape {shown(shape)} needs "
            f"{tensor.size} x {dtype.itemsize} = {tensor.size * dtype.itemsize}",
            400,
        )
    values = np.frombuffer(data, dtype=dtype)
    if tensor.datatype == "BOOL":
        if values.view(np.uint8).max(initial=0) > 1:
            bad = int(np.flatnonzero(values.view(np.uint8) > 1)[0])
            raise InputError(f"{what} (BOOL): element {bad} is neither 0 nor 1")
        return values.reshape(shape)
    array = values.astype(np.float64)
    if dtype.kind == "f":
        bad_mask = np.isinf(array) if nullable else ~np.isfinite(array)
        if bad_mask.any():
            bad = int(np.flatnonzero(bad_mask)[0])
            raise InputError(
                f"{what} ({tensor.datatype}): element {bad}{_at(bad, shape)} is not a finite number"
            )
    return array.reshape(shape)


def _at(flat_index: int, shape: list[int]) -> str:
    """`` (index [r, c])`` of a flat element index in ``shape`` (empty for a 1-D shape)."""
    if len(shape) < 2:
        return ""
    return " (index [" + ", ".join(str(int(i)) for i in np.unravel_index(flat_index, shape)) + "])"


def _decode_bytes(data: bytes, tensor: InferInput) -> list[str]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then that many
    bytes, UTF-8 text here (the models take text)."""
    out: list[str] = []
    offset, size = 0, tensor.size
    while offset < len(data):
        if len(out) == size or offset + 4 > len(data):
            raise InputError(f"{tensor.what} (BYTES): binary data does not hold {size} elements exactly", 400)
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise InputError(
                f"{tensor.what} (BYTES): element {len(out)} declares {length} bytes; "
                f"{len(data) - offset} remain",
                400,
            )
        try:
            out.append(data[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{tensor.what} (BYTES): element {len(out)} is not UTF-8 text ({exc.reason})"
            ) from None
        offset += length
    if len(out) != size:
        raise InputError(
            f"{tensor.what} (BYTES): binary data holds {len(out)} elements; its shape needs {size}",
            400,
        )
    return out
