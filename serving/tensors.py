"""Open Inference Protocol (KServe V2) tensors: the infer request's envelope (its inputs with their
names, datatypes, shapes and data or binary slice; the outputs asked for, and how) and the response,
in JSON or with the binary tensor data extension.

The binary extension (Triton's ``extension_binary_data.md``, KServe's "binary tensor data
extension") is decided by one thing only: the ``Inference-Header-Content-Length`` header. With it,
the body is a JSON header of that many bytes followed by the binary tensors, in the order their
inputs appear in the JSON, each ``parameters.binary_data_size`` bytes long: little-endian, row
major, no padding; ``BOOL`` one byte per element; ``BYTES`` a 4-byte little-endian length before
each element. Content-Type is never looked at: tritonclient's synchronous client sends none, its
asyncio client and the KServe SDK send ``application/octet-stream``.

The values of each input are checked and decoded by :mod:`serving.tensor_values`.

Pure functions of bytes: no framework types.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from serving.inputs import InputError, shown

__all__ = [
    "BINARY_HEADER",
    "DTYPES",
    "FLOAT_LIMITS",
    "FLOAT_MAX",
    "INTEGER_RANGES",
    "NUMERIC_DATATYPES",
    "InferInput",
    "InferRequest",
    "RequestedOutput",
    "encode_bytes",
    "encode_response",
    "parse_infer_request",
    "split_binary_body",
]

# The header (lower case, as ASGI gives it) that announces the binary tensor data extension.
BINARY_HEADER = b"inference-header-content-length"

# Little-endian numpy types of the fixed-size datatypes (the protocol's table of datatypes).
DTYPES: dict[str, np.dtype[Any]] = {
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
NUMERIC_DATATYPES = frozenset(DTYPES) - {"BOOL"}
INTEGER_RANGES = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for name, dt in DTYPES.items() if dt.kind in "iu"
}
# Largest finite magnitude of each float type (IEEE 754 binary16 and binary32).
FLOAT_MAX = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}
# The magnitude from which a JSON number rounds to infinity in that type (exclusive bound): the
# largest value plus half its unit in the last place (IEEE 754 round-to-nearest-even; the largest
# value's significand is odd, so the halfway point rounds up). Below it a number rounds to a finite
# value: float32's largest value as float32 prints it, 3.4028235e38, is above the largest value
# itself but fits.
FLOAT_LIMITS = {
    name: FLOAT_MAX[name] + (FLOAT_MAX[name] - float(np.nextafter(np.finfo(dt).max, dt(0)))) / 2
    for name, dt in (("FP16", np.float16), ("FP32", np.float32))
}


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
    """An output the client asked for, whether it wants it binary, and how many of the most
    probable classes it asked for instead of the tensor (``classification``, Triton's
    classification extension, what tritonclient's ``class_count`` sends; 0: the tensor itself)."""

    name: str
    binary: bool
    classification: int = 0


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
    outputs); values are checked by :func:`serving.tensor_values.input_values`. InputError 4xx."""
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
    if not isinstance(datatype, str) or datatype not in (*DTYPES, "BYTES"):
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
        classification = params.get("classification", 0) if isinstance(params, dict) else 0
        if type(classification) is not int or classification < 0:
            raise InputError(
                f"outputs[{i}].parameters.classification must be a count of classes, "
                f"got {shown(classification)}"
            )
        if any(o.name == name for o in outputs):
            raise InputError(f"output {shown(name)} is requested twice")
        outputs.append(RequestedOutput(name, binary, classification))
    return tuple(outputs), binary_output


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
