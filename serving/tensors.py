"""Open Inference Protocol (KServe V2) tensors: the infer request's envelope, each input's values
checked against its declared datatype, and the response, in JSON or with the binary tensor data
extension.

The binary extension (Triton's ``extension_binary_data.md``, KServe's "binary tensor data
extension") is decided by one thing only: the ``Inference-Header-Content-Length`` header. With it,
the body is a JSON header of that many bytes followed by the binary tensors, in the order their
inputs appear in the JSON, each ``parameters.binary_data_size`` bytes long: little-endian, row
major, no padding; ``BOOL`` one byte per element; ``BYTES`` a 4-byte little-endian length before
each element. Content-Type is never looked at: tritonclient's synchronous client sends none, its
asyncio client and the KServe SDK send ``application/octet-stream``.

Values are strict (every refusal is an :class:`~serving.inputs.InputError` naming the input and the
element, as a JSON path such as ``inputs[0].data[1][7]`` or as a flat element index):

- JSON numbers must fit the declared datatype: integers (not ``1.0``) within the type's range for
  ``INT8``..``INT64`` and ``UINT8``..``UINT64``, numbers within ±65504 for ``FP16`` and within
  float32's range for ``FP32``; booleans are never numbers. Values are then taken as the declared
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
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
import simdjson

from serving.inputs import MAX_ROWS, InputError, shown, simdjson_parse

__all__ = [
    "BINARY_HEADER",
    "INTEGER_RANGES",
    "NUMERIC_DATATYPES",
    "InferInput",
    "InferRequest",
    "RequestedOutput",
    "encode_bytes",
    "encode_response",
    "input_values",
    "parse_infer_request",
    "split_binary_body",
]

# The header (lower case, as ASGI gives it) that announces the binary tensor data extension.
BINARY_HEADER = b"inference-header-content-length"

# Below this size a tensor's data is decoded by msgspec alone: simdjson's fast path is as fast there
# and its checks are not worth running (the threshold of /v1/predict's fast path).
_FAST_PATH_MIN_BYTES = 16 * 1024
_FAST_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
# Little-endian numpy types of the fixed-size datatypes (the protocol's table of datatypes).
_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
NUMERIC_DATATYPES = frozenset(_DTYPES) - {"BOOL"}
INTEGER_RANGES = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for name, dt in _DTYPES.items() if dt.kind in "iu"
}
# Largest finite magnitude of each float type (IEEE 754 binary16 and binary32): a JSON number beyond
# it would become infinity in that type.
_FLOAT_LIMITS = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}


class _Input(msgspec.Struct):
    # Fields of any JSON type: the checks below name the field at fault in the protocol's words.
    name: Any = None
    shape: Any = None
    datatype: Any = None
    parameters: Any = None
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _Request(msgspec.Struct):
    inputs: list[_Input] | None = None
    id: Any = None
    parameters: Any = None
    outputs: Any = None


_request_decoder = msgspec.json.Decoder(_Request)


@dataclass(frozen=True)
class InferInput:
    """One input tensor of a request: its position, name, datatype and shape (checked to be a list
    of positive integers), and its data: JSON text (``json``) or raw bytes (``binary``)."""

    index: int
    name: str
    datatype: str
    shape: tuple[int, ...]
    json: bytes | None
    binary: bytes | None

    @property
    def what(self) -> str:
        """How messages name it: ``inputs[0] ('input')``."""
        return f"inputs[{self.index}] ({self.name!r})"

    def field(self, name: str) -> str:
        """How messages name one of its fields: ``inputs[0].data ('input')``."""
        return f"inputs[{self.index}].{name} ({self.name!r})"

    @property
    def size(self) -> int:
        """The number of elements its shape holds."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for, and whether it wants it binary."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: its inputs in order, its ``id`` (a string, or None), the outputs
    asked for (None: all, each binary if ``binary_output``)."""

    inputs: tuple[InferInput, ...]
    id: str | None
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool


def split_binary_body(body: bytes, header_value: bytes | None) -> tuple[bytes, bytes | None]:
    """(JSON header, binary tail or None) of a body, by ``Inference-Header-Content-Length``
    (``header_value``, None when absent). InputError 400 when the value is not a byte count within
    the body; 0 (Triton's raw binary request) is not supported."""
    if header_value is None:
        return body, None
    if not header_value.isdigit() or int(header_value) > len(body):
        raise InputError(
            f"Inference-Header-Content-Length is {shown(header_value.decode('latin-1'))}; it must be "
            f"the JSON header's length in bytes, at most the body's {len(body)}",
            400,
        )
    length = int(header_value)
    if length == 0:
        raise InputError(
            "Inference-Header-Content-Length 0 (a raw binary request) is not supported; send a JSON "
            "header naming the input, with parameters.binary_data_size",
            400,
        )
    return body[:length], body[length:]


def parse_infer_request(
    header: bytes, tail: bytes | None, expected: Sequence[str], takes: str
) -> InferRequest:
    """Parse the JSON ``header`` of an infer request and slice the binary ``tail`` (None: no binary
    extension) among its inputs, which must be exactly the ``expected`` names (``takes`` describes
    them in messages). Checks the envelope only (names, datatypes, shapes, binary sizes, requested
    outputs); values are checked by :func:`input_values`. InputError 4xx."""
    if not header:
        raise InputError('request body is empty; expected a JSON object with "inputs"', 400)
    try:
        request = _request_decoder.decode(header)
    except msgspec.ValidationError as exc:
        raise InputError(f'expected a JSON object with "inputs": {exc}') from exc
    except msgspec.DecodeError as exc:
        hint = ""
        if tail is None and b"binary_data_size" in header:
            hint = (
                "; a body with binary tensors (parameters.binary_data_size) needs the "
                "Inference-Header-Content-Length header giving the JSON part's length in bytes"
            )
        raise InputError(f"request body is not valid JSON: {exc}{hint}", 400) from exc
    except Exception as exc:  # e.g. RecursionError: never a 500 for what a client sent
        raise InputError(f"request body could not be decoded: {type(exc).__name__}", 400) from exc
    inputs = _inputs(request.inputs, tail, expected, takes)
    outputs, binary_output = _outputs(request)
    request_id = request.id if isinstance(request.id, str) else None
    return InferRequest(inputs, request_id, outputs, binary_output)


def _inputs(
    raw: list[_Input] | None, tail: bytes | None, expected: Sequence[str], takes: str
) -> tuple[InferInput, ...]:
    """The inputs, exactly the ``expected`` names, each with its JSON data or its slice of ``tail``."""
    if not raw:
        raise InputError(f'"inputs" is missing or empty; the model takes {takes}')
    for index, item in enumerate(raw):
        if item.name not in expected:
            raise InputError(f"unknown input {shown(item.name)} (inputs[{index}]); the model takes {takes}")
    names = [item.name for item in raw]
    if len(set(names)) != len(names):
        raise InputError(f"input {shown(next(n for n in names if names.count(n) > 1))} is given twice")
    if missing := [n for n in expected if n not in names]:
        raise InputError(f"input {missing[0]!r} is missing; the model takes {takes}")
    offset = 0
    inputs = []
    for index, item in enumerate(raw):
        tensor = _input(index, item)
        if isinstance(tensor, tuple):  # (name, datatype, shape, binary size)
            name, datatype, shape, size = tensor
            if tail is None:
                raise InputError(
                    f"inputs[{index}].parameters.binary_data_size is given but the request has no "
                    "Inference-Header-Content-Length header",
                    400,
                )
            if offset + size > len(tail):
                raise InputError(
                    f"inputs[{index}] ({name!r}) declares {size} bytes of binary data; only "
                    f"{len(tail) - offset} remain in the body",
                    400,
                )
            inputs.append(InferInput(index, name, datatype, shape, None, tail[offset : offset + size]))
            offset += size
        else:
            inputs.append(tensor)
    if tail is not None and offset != len(tail):
        raise InputError(
            f"the body holds {len(tail) - offset} bytes of binary data beyond the inputs' binary_data_size",
            400,
        )
    return tuple(inputs)


def _input(index: int, item: _Input) -> InferInput | tuple[str, str, tuple[int, ...], int]:
    what = f"inputs[{index}]"
    name, shape, datatype = item.name, item.shape, item.datatype
    if not isinstance(name, str):
        raise InputError(f"{what}.name must be a string, got {shown(name)}")
    # type() is not bool: JSON true is a Python int subclass, and [true, 64] is no shape.
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d > 0 for d in shape):
        raise InputError(f"{what}.shape must be a list of positive integers, got {shown(shape)}")
    if not isinstance(datatype, str) or datatype not in (*_DTYPES, "BYTES"):
        raise InputError(f"{what}.datatype must be one of the protocol's datatypes, got {shown(datatype)}")
    parameters = item.parameters
    has_data = len(item.data) > 0
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if type(size) is not int or size < 0:
            raise InputError(f"{what}.parameters.binary_data_size must be a byte count, got {shown(size)}")
        if has_data:
            raise InputError(f"{what} has both data and parameters.binary_data_size: send one", 400)
        return name, datatype, tuple(shape), size
    if not has_data:
        raise InputError(f"{what}.data is missing (or send it binary, with parameters.binary_data_size)")
    return InferInput(index, name, datatype, tuple(shape), bytes(item.data), None)


def _outputs(request: _Request) -> tuple[tuple[RequestedOutput, ...] | None, bool]:
    parameters = request.parameters
    binary_output = False
    if isinstance(parameters, dict) and "binary_data_output" in parameters:
        binary_output = parameters["binary_data_output"]
        if type(binary_output) is not bool:
            raise InputError(
                f"parameters.binary_data_output must be true or false, got {shown(binary_output)}"
            )
    elif parameters is not None and not isinstance(parameters, dict):
        raise InputError(f"parameters must be an object, got {shown(parameters)}")
    raw = request.outputs
    if raw is None:
        return None, binary_output
    if not isinstance(raw, list):
        raise InputError(f'"outputs" must be a list of {{"name": ...}} objects, got {shown(raw)}')
    outputs: list[RequestedOutput] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InputError(f"outputs[{i}].name must be a string, got {shown(item)}")
        params = item.get("parameters")
        binary = params.get("binary_data", binary_output) if isinstance(params, dict) else binary_output
        if type(binary) is not bool:
            raise InputError(
                f"outputs[{i}].parameters.binary_data must be true or false, got {shown(binary)}"
            )
        if any(o.name == name for o in outputs):
            raise InputError(f"output {shown(name)} is requested twice")
        outputs.append(RequestedOutput(name, binary))
    return tuple(outputs), binary_output


# --- values -----------------------------------------------------------------------------------------


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
    elif datatype in _FLOAT_LIMITS:
        limit = _FLOAT_LIMITS[datatype]
        element = Annotated[float, msgspec.Meta(ge=-limit, le=limit)]
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
        typed = np.array(values, dtype=_DTYPES[tensor.datatype])
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
        limit = _FLOAT_LIMITS.get(tensor.datatype, np.inf)
        if flat.size != tensor.size or not np.isfinite(flat).all() or np.abs(flat).max() > limit:
            raise _NotPlain
    except Exception:  # _NotPlain, or simdjson's own errors (a boolean, 1e400, a 20-digit integer)
        return None
    finally:
        doc = None  # this thread's parser may be reused only once its document is gone
    return flat.astype(_DTYPES[tensor.datatype]).astype(np.float64, copy=False).reshape(shape)


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
    dtype = _DTYPES[tensor.datatype]
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


# --- the response -----------------------------------------------------------------------------------


def encode_bytes(values: list[bytes]) -> bytes:
    """A BYTES tensor's binary form: each element's 4-byte little-endian length, then the element."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def encode_response(
    head: dict[str, Any], outputs: list[tuple[dict[str, Any], Any, bytes | None]]
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (the value of
    ``Inference-Header-Content-Length``; None: a plain JSON body).

    ``outputs`` are (``{"name", "datatype", "shape"}``, JSON data, binary data or None for JSON).
    """
    import orjson

    described, tail = [], []
    for meta, data, binary in outputs:
        if binary is None:
            described.append({**meta, "data": data})
        else:
            described.append({**meta, "parameters": {"binary_data_size": len(binary)}})
            tail.append(binary)
    body = orjson.dumps({**head, "outputs": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return body, None
    return body + b"".join(tail), len(body)
