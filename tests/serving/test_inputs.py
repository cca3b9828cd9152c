"""Request validation rules, tested without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.inputs import MAX_ROWS, InputError, decode_predict_request
from serving.v2_inputs import decode_v2_request


def body(instances: object) -> bytes:
    return json.dumps({"instances": instances}).encode()


def test_integers_and_floats_become_one_float64_matrix() -> None:
    x = decode_predict_request(body([[1, 2.5], [3, 4]]), 2)
    assert x.dtype == np.float64
    assert x.tolist() == [[1.0, 2.5], [3.0, 4.0]]


def test_the_error_names_the_offending_value() -> None:
    with pytest.raises(InputError, match=r"\$\.instances\[1\]\[0\]") as err:
        decode_predict_request(body([[1, 2], ["x", 4]]), 2)
    assert err.value.status == 422


def test_row_limit_is_413() -> None:
    with pytest.raises(InputError) as err:
        decode_predict_request(body([[0]] * (MAX_ROWS + 1)), 1)
    assert err.value.status == 413


@pytest.mark.parametrize("rows", [[[1.0]], [[1, 2, 3]], [[[1, 2]]]])
def test_width_must_match(rows: object) -> None:
    with pytest.raises(InputError):
        decode_predict_request(body(rows), 2)


def test_v2_flat_and_nested_data_agree() -> None:
    tensor = {"name": "input", "shape": [2, 2], "datatype": "INT64"}
    flat, _ = decode_v2_request(json.dumps({"inputs": [{**tensor, "data": [1, 2, 3, 4]}]}).encode(), 2)
    nested, _ = decode_v2_request(json.dumps({"inputs": [{**tensor, "data": [[1, 2], [3, 4]]}]}).encode(), 2)
    assert flat.tolist() == nested.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    "tensor",
    [
        {"shape": [1, 2], "datatype": "FP32", "data": [1.0, float("nan")]},
        {"shape": [1, 2], "datatype": "FP32", "data": [1.0, "2"]},
        {"shape": [0, 2], "datatype": "FP32", "data": []},
        {"shape": [1, 2, 1], "datatype": "FP32", "data": [1.0, 2.0]},
        {"shape": [1, 2], "datatype": "FP32", "data": [[1.0], 2.0]},
    ],
)
def test_v2_bad_tensors(tensor: dict) -> None:
    with pytest.raises(InputError) as err:
        decode_v2_request(json.dumps({"inputs": [{"name": "input", **tensor}]}).encode(), 2)
    assert 400 <= err.value.status < 500


def big(rows: list) -> bytes:
    """Pad past the fast path's size threshold with valid rows, keeping the odd row first."""
    return json.dumps({"instances": rows + [[0.5, 0.25]] * 2000}).encode()


def test_the_fast_path_gives_exactly_the_slow_paths_matrix() -> None:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((3000, 2)).tolist()
    fast = decode_predict_request(json.dumps({"instances": rows}).encode(), 2)
    np.testing.assert_array_equal(fast, np.array(rows))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, [2, 3]], [4, 5]], "got `array`"),  # nested value
        ([[[], 1], [[3, 4], 5]], "got `array`"),  # nesting that keeps the flattened count right
        ([[1, 2, 3]], "row 0 has 3 features; the model expects 2"),
        ([[1]], "row 0 has 1 features"),
        ([["1", 2]], "got `str`"),
        ([[None, 2]], "got `null`"),
        ([[True, 2]], "got `bool`"),
    ],
)
def test_large_bodies_with_odd_shapes_are_refused_like_small_ones(rows: list, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_predict_request(big(rows), 2)


def test_a_large_body_with_other_keys_still_decodes() -> None:
    body = json.dumps({"instances": [[1, 2]] * 3000, "note": "[not an array]"}).encode()
    assert decode_predict_request(body, 2).shape == (3000, 2)


def test_a_large_body_with_an_overflowing_number_is_refused() -> None:
    body = big([[1, 2]]).replace(b"[[1, 2]", b"[[1e400, 2]", 1)
    with pytest.raises(InputError, match="out of range"):
        decode_predict_request(body, 2)
