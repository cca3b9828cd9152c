"""Open Inference Protocol tensors, without a server: every datatype's range, names, shapes, requested
outputs, and the binary tensor data extension (serving/tensors.py, serving/v2_inputs.py)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from orchestrator.core.artifact.manifest import Column
from serving.inputs import InputError
from serving.tensors import INTEGER_RANGES, NUMERIC_DATATYPES, encode_bytes
from serving.v2_inputs import decode_v2_columns_request, decode_v2_request, requested_outputs

WIDTH = 2
NUMPY = {
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
}


def json_body(data: object, datatype: str = "FP64", shape: list[int] | None = None, **extra: object) -> bytes:
    tensor = {"name": "input", "shape": shape or [2, WIDTH], "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def binary_body(
    array: np.ndarray, datatype: str, *, name: str = "input", extra_tail: bytes = b"", **extra: object
) -> tuple[bytes, bytes]:
    raw = array.tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            **extra,
        }
    ).encode()
    return head + raw + extra_tail, str(len(head)).encode()


def refused(body: bytes, header: bytes | None = None, width: int = WIDTH) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_v2_request(body, width, header)
    assert 400 <= caught.value.status < 500
    return caught.value


# --- values must fit their declared datatype ----------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(INTEGER_RANGES.keys() - {"BOOL"}))
def test_integers_at_the_edges_of_their_type_are_taken_one_past_them_refused(datatype: str) -> None:
    low, high = INTEGER_RANGES[datatype]
    x, _ = decode_v2_request(json_body([0, 1, low, high], datatype), WIDTH)
    assert x.tolist() == [[0.0, 1.0], [float(low), float(high)]]
    for value, index in ((low - 1, 2), (high + 1, 3)):
        data = [0, 1, low, high]
        data[index] = value
        error = refused(json_body(data, datatype))
        assert "inputs[0]" in str(error)
        assert "'input'" in str(error)
        assert f"data[{index}]" in str(error), str(error)
        assert "index [1, " in str(error)  # where the flat element falls in the shape


@pytest.mark.parametrize("datatype", sorted(INTEGER_RANGES.keys() - {"BOOL"}))
def test_integer_tensors_take_no_fractions(datatype: str) -> None:
    error = refused(json_body([0, 1, 2, 1.5], datatype))
    assert "got `float`" in str(error)
    assert "data[3]" in str(error)


@pytest.mark.parametrize("datatype", sorted(NUMERIC_DATATYPES))
@pytest.mark.parametrize("nested", [False, True])
def test_booleans_are_never_numbers(datatype: str, nested: bool) -> None:
    data = [[0, 1], [True, 0]] if nested else [0, 1, True, 0]
    error = refused(json_body(data, datatype))
    assert "got `bool`" in str(error)
    assert ("data[1][0]" if nested else "data[2]") in str(error)


@pytest.mark.parametrize(
    ("datatype", "fits", "too_big"),
    [("FP16", 65504.0, 65520.0), ("FP32", 3.4e38, 3.5e38), ("FP64", 1.7e308, None)],
)
def test_floats_must_fit_their_width(datatype: str, fits: float, too_big: float | None) -> None:
    x, _ = decode_v2_request(json_body([0, 0, -fits, fits], datatype), WIDTH)
    assert np.isfinite(x).all()
    if too_big is not None:
        for value in (too_big, -too_big):
            error = refused(json_body([0, 0, 0, value], datatype))
            assert "data[3]" in str(error), str(error)


def test_json_values_are_taken_as_their_declared_datatype() -> None:
    x, _ = decode_v2_request(json_body([0.1, 0, 0, 0], "FP32"), WIDTH)
    assert x[0, 0] == np.float32(0.1)  # as a binary FP32 tensor would give it
    x, _ = decode_v2_request(json_body([0.1, 0, 0, 0], "FP16"), WIDTH)
    assert x[0, 0] == np.float16(0.1)


@pytest.mark.parametrize(
    "data",
    ["NaN", "Infinity", "-Infinity", "1e400"],
)
def test_no_nan_or_infinity_in_json(data: str) -> None:
    body = json_body([0, 0, 0, 0]).replace(b"[0, 0, 0, 0]", b"[0, 0, 0, " + data.encode() + b"]")
    refused(body)


# --- names and shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "is missing or empty"),
        ([{"name": "nope"}], "unknown input 'nope'"),
        ([{"name": "input"}, {"name": "extra"}], "unknown input 'extra'"),
        ([{"name": "input"}, {"name": "input"}], "given twice"),
    ],
)
def test_inputs_must_be_exactly_the_models(inputs: list[dict], message: str) -> None:
    tensors = [{"shape": [1, WIDTH], "datatype": "FP64", "data": [0, 0], **t} for t in inputs]
    error = refused(json.dumps({"inputs": tensors}).encode())
    assert message in str(error)


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2, 2], [[1, 2], [3]], "data[1] has 1 elements"),  # a short row is not re-flowed
        ([2, 2], [[1, 2, 3], [4]], "data[0] has 3 elements"),  # same count, other rows
        ([2, 2], [[1, 2]], "has 1 elements; shape [2, 2] needs 2 along axis 0"),
        ([1, 2], [[1, 2], [3, 4]], "has 2 elements"),
        ([2, 2], [1, 2, 3], "has 3 values; shape [2, 2] needs 4"),
        ([2, 2], [1, 2, 3, 4, 5], "has 5 values"),
        ([2, 2], [[[1, 2]], [[3, 4]]], "flat or nested by shape"),  # three deep for a 2-D shape
        ([2, 2], {"0": 1}, "must be a list of values"),
        ([2, 3], [1, 2, 3, 4, 5, 6], "the model expects 2 features"),
        ([4], [1, 2, 3, 4], "it must be [rows, 2]"),
        ([0, 2], [], "positive integers"),
    ],
)
def test_data_must_match_its_shape_exactly(shape: list[int], data: object, message: str) -> None:
    error = refused(json_body(data, "FP64", shape))
    assert message in str(error), str(error)
    assert "input" in str(error)


def test_flat_and_nested_data_agree() -> None:
    flat, _ = decode_v2_request(json_body([1, 2, 3, 4], "INT64"), WIDTH)
    nested, _ = decode_v2_request(json_body([[1, 2], [3, 4]], "INT64"), WIDTH)
    assert flat.tolist() == nested.tolist() == [[1.0, 2.0], [3.0, 4.0]]


# --- requested outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "parameters", "expected"),
    [
        (None, None, [("label", False), ("probabilities", False)]),
        (None, {"binary_data_output": True}, [("label", True), ("probabilities", True)]),
        ([{"name": "probabilities"}], None, [("probabilities", False)]),
        (
            [{"name": "probabilities"}, {"name": "label", "parameters": {"binary_data": True}}],
            None,
            [("probabilities", False), ("label", True)],
        ),
        (
            [{"name": "label", "parameters": {"binary_data": False}}],
            {"binary_data_output": True},
            [("label", False)],
        ),
    ],
)
def test_requested_outputs_and_how(outputs: object, parameters: object, expected: list) -> None:
    extra = {k: v for k, v in (("outputs", outputs), ("parameters", parameters)) if v is not None}
    _, request = decode_v2_request(json_body([0, 0, 0, 0], **extra), WIDTH)
    assert [(o.name, o.binary) for o in requested_outputs(request)] == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
        ({"outputs": [{"name": "label"}, {"name": "label"}]}, "requested twice"),
        ({"outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}, "binary_data"),
        ({"parameters": {"binary_data_output": 1}}, "binary_data_output"),
        ({"outputs": "label"}, '"outputs"'),
    ],
)
def test_bad_requested_outputs_are_refused(extra: dict, message: str) -> None:
    def decode() -> None:
        _, request = decode_v2_request(json_body([0, 0, 0, 0], **extra), WIDTH)
        requested_outputs(request)

    with pytest.raises(InputError, match=message):
        decode()


# --- the binary tensor data extension --------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(NUMPY))
def test_every_numeric_datatype_in_binary_gives_the_json_matrix(datatype: str) -> None:
    values = np.array([[0, 1], [16, 7]])
    body, header = binary_body(values.astype(NUMPY[datatype]), datatype)
    x, _ = decode_v2_request(body, WIDTH, header)
    reference, _ = decode_v2_request(json_body(values.tolist(), datatype), WIDTH)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, reference)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_binary_floats_must_be_finite(datatype: str, bad: float) -> None:
    values = np.array([[0, 1], [2, bad]], dtype=NUMPY[datatype])
    error = refused(*binary_body(values, datatype))
    assert "element 3 (index [1, 1]) is not a finite number" in str(error)


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda b, h: (b + b"\x00", h), 400, "beyond the inputs' binary_data_size"),
        (lambda b, h: (b[:-1], h), 400, "remain in the body"),
        (lambda b, h: (b, None), 400, "needs the Inference-Header-Content-Length header"),
        (lambda b, h: (b, b"0"), 400, "raw binary request"),
        (lambda b, h: (b, b"-5"), 400, "Inference-Header-Content-Length"),
        (lambda b, h: (b, b"999999"), 400, "Inference-Header-Content-Length"),
        (lambda b, h: (b, str(int(h) - 3).encode()), 400, "not valid JSON"),
    ],
)
def test_binary_framing_errors_are_400_and_say_why(make, status: int, message: str) -> None:
    body, header = binary_body(np.zeros((2, WIDTH)), "FP64")
    error = refused(*make(body, header))
    assert error.status == status
    assert message in str(error), str(error)


def test_a_binary_size_that_does_not_fit_the_shape_is_refused() -> None:
    values = np.zeros((2, WIDTH), dtype="<f4")
    body, header = binary_body(values, "FP64")  # 16 bytes declared FP64: 32 needed
    assert "needs 4 x 8 = 32" in str(refused(body, header))


def test_data_and_binary_data_size_together_are_refused() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 2],
                    "datatype": "FP64",
                    "data": [0, 0],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    assert "both data and" in str(refused(head + bytes(16), str(len(head)).encode()))


# --- a columns model: BYTES and nullable numbers, in JSON and binary ---------------------------------


COLUMNS = [
    Column(name="age", kind="numeric", input="c0"),
    Column(name="region", kind="categorical", input="c1", categories=["EU", "US"]),
]


def test_columns_in_binary_equal_columns_in_json() -> None:
    ages = np.array([41.0, np.nan, 7.0])
    regions = ["EU", "", "é"]
    text = encode_bytes([r.encode() for r in regions])
    head = json.dumps(
        {
            "inputs": [
                {"name": "age", "shape": [3, 1], "datatype": "FP64", "parameters": {"binary_data_size": 24}},
                {
                    "name": "region",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(text)},
                },
            ]
        }
    ).encode()
    batch, _ = decode_v2_columns_request(head + ages.tobytes() + text, COLUMNS, str(len(head)).encode())
    as_json = json.dumps(
        {
            "inputs": [
                {"name": "age", "shape": [3, 1], "datatype": "FP64", "data": [[41.0], [None], [7]]},
                {"name": "region", "shape": [3], "datatype": "BYTES", "data": ["EU", None, "é"]},
            ]
        }
    ).encode()
    reference, _ = decode_v2_columns_request(as_json, COLUMNS)
    np.testing.assert_array_equal(batch.feeds["c0"], reference.feeds["c0"])
    assert batch.feeds["c1"][:, 0].tolist() == reference.feeds["c1"][:, 0].tolist() == regions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (struct.pack("<I", 5) + b"ab", "declares 5 bytes"),
        (struct.pack("<I", 2) + b"\xff\xfe", "not UTF-8"),
        (encode_bytes([b"a", b"b"]), "does not hold 1 elements"),
    ],
)
def test_malformed_binary_bytes_are_refused(text: bytes, message: str) -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
                {
                    "name": "region",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(text)},
                },
            ]
        }
    ).encode()
    with pytest.raises(InputError, match=message) as caught:
        decode_v2_columns_request(head + text, COLUMNS, str(len(head)).encode())
    assert "'region'" in str(caught.value)


# --- large JSON float tensors: simdjson's fast path gives what the exact path gives ----------------


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("nested", [False, True])
def test_the_fast_path_gives_exactly_the_exact_paths_values(datatype: str, nested: bool) -> None:
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((3000, WIDTH)) * 100).round(3)
    data = values.tolist() if nested else values.ravel().tolist()
    fast, _ = decode_v2_request(json_body(data, datatype, [3000, WIDTH]), WIDTH)  # ~70 kB: fast path
    exact = np.array(values, dtype=NUMPY[datatype]).astype(np.float64)
    np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize(
    ("odd", "message"),
    [
        ("true", "got `bool`"),
        ("1e400", "out of range"),
        ("70000", "largest finite value is 65504"),
        ('"1"', "got `str`"),
        ("null", "got `null`"),
    ],
)
def test_large_tensors_with_one_odd_value_are_refused_like_small_ones(odd: str, message: str) -> None:
    body = json_body([0.5] * 6000, "FP16", [3000, WIDTH]).replace(
        b"0.5, 0.5, ", b"0.5, " + odd.encode() + b", ", 1
    )
    error = refused(body)
    assert message in str(error)
    assert "data[1]" in str(error)


@pytest.mark.parametrize(
    ("datatype", "text", "largest"),
    [
        # float32's largest value as float32 prints it (numpy, Java, JavaScript's Math.fround): the
        # double it parses to is above the largest float32 but rounds to it.
        ("FP32", "3.4028235e38", float(np.finfo(np.float32).max)),
        ("FP32", "-3.4028235e+38", -float(np.finfo(np.float32).max)),
        ("FP16", "65519.99", 65504.0),
        ("FP16", "-65510", -65504.0),
    ],
)
@pytest.mark.parametrize("rows", [1, 3000])  # the exact path and the fast path
def test_a_number_that_rounds_to_a_finite_value_of_its_type_fits_it(
    datatype: str, text: str, largest: float, rows: int
) -> None:
    body = json_body([0.5] * (rows * WIDTH), datatype, [rows, WIDTH]).replace(
        b"[0.5, ", b"[" + text.encode() + b", ", 1
    )
    x, _ = decode_v2_request(body, WIDTH)
    assert x[0, 0] == largest


@pytest.mark.parametrize(
    ("datatype", "text"),
    [("FP32", "3.4028235677973366e38"), ("FP32", "3.5e38"), ("FP16", "65520"), ("FP16", "-65520.0")],
)
@pytest.mark.parametrize("rows", [1, 3000])
def test_a_number_that_rounds_to_infinity_in_its_type_is_refused(datatype: str, text: str, rows: int) -> None:
    body = json_body([0.5] * (rows * WIDTH), datatype, [rows, WIDTH]).replace(
        b"[0.5, ", b"[" + text.encode() + b", ", 1
    )
    error = refused(body)
    assert "data[0]" in str(error)
    assert f"{datatype}'s largest finite value is" in str(error)
