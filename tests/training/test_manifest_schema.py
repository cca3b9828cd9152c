"""Manifest schema 2 (orchestrator.core.artifact.manifest): feature columns, layouts and canary rows
as clients send them; schema 1 manifests still read, as the all-numeric matrix they describe."""

from __future__ import annotations

import copy

import orjson
import pytest

from orchestrator.core.artifact.manifest import parse_manifest
from orchestrator.core.errors import ArtifactError

SHA = "0" * 64
V1 = {
    "schema_version": 1,
    "name": "iris",
    "version": "abc123",
    "created_at": "2026-01-01T00:00:00+00:00",
    "framework": {},
    "features": {"names": ["a", "b"], "count": 2},
    "classes": ["x", "y"],
    "files": [{"path": "model.onnx", "sha256": SHA, "size": 1}],
    "split": {},
    "metrics": {},
    "canary": {
        "instances": [[1.0, 2.0], [3.0, 4.0]],
        "labels": ["x", "y"],
        "probabilities": [[0.9, 0.1], [0.2, 0.8]],
    },
}
V2 = {
    **V1,
    "schema_version": 2,
    "features": {
        "names": ["age", "plan tier"],
        "count": 2,
        "layout": "columns",
        "columns": [
            {"name": "age", "kind": "numeric", "input": "age"},
            {
                "name": "plan tier",
                "kind": "categorical",
                "input": "plan_tier",
                "categories": ["basic", "pro"],
            },
        ],
    },
    "canary": {
        "instances": [{"age": 41.5, "plan tier": "pro"}, {"age": None, "plan tier": None}],
        "labels": ["x", "y"],
        "probabilities": [[0.9, 0.1], [0.2, 0.8]],
    },
}


def parse(document):
    return parse_manifest(orjson.dumps(document), source="m.json")


def test_a_schema_1_manifest_reads_as_an_all_numeric_matrix():
    manifest = parse(V1)

    assert manifest.features.layout == "matrix"
    assert manifest.features.kinds == ["numeric", "numeric"]
    assert manifest.features.columns == []


def test_a_schema_2_manifest_describes_its_columns():
    manifest = parse(V2)

    assert manifest.features.layout == "columns"
    assert [c.input for c in manifest.features.columns] == ["age", "plan_tier"]
    assert manifest.features.kinds == ["numeric", "categorical"]
    assert manifest.canary.instances[1] == {"age": None, "plan tier": None}


def broken(path: str, value):
    document = copy.deepcopy(V2)
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            broken("canary.instances", [[41.5, "pro"], [1.0, "basic"]]),
            "instance 0 must be an object keyed by exactly the feature names",
        ),
        (
            broken("canary.instances.0", {"age": 41.5}),
            "instance 0 must be an object keyed by exactly the feature names",
        ),
        (
            broken("canary.instances.0", {"age": "41", "plan tier": "pro"}),
            "column 'age' must be a finite number or null",
        ),
        (
            broken("canary.instances.0", {"age": 41.5, "plan tier": 3}),
            "column 'plan tier' must be text or null",
        ),
        (
            broken("canary.instances.0", {"age": True, "plan tier": "pro"}),
            "column 'age' must be a finite number",
        ),
        (broken("features.columns.1.input", "age"), "one distinct ONNX input per column"),
        (broken("features.columns.1.input", "plan tier"), "String should match pattern"),
        (broken("features.columns.0.categories", ["a"]), "column 'age' is numeric but lists categories"),
        (broken("features.columns.1.name", "plan"), "in the order of features.names"),
        (broken("features.layout", "matrix"), "the matrix layout takes numeric columns only"),
        (broken("features.columns", []), "the columns layout needs features.columns"),
        (broken("schema_version", 1), "schema_version 1 describes no feature columns"),
        (broken("schema_version", 3), "schema_version"),
    ],
)
def test_a_manifest_that_breaks_the_contract_is_refused_naming_the_field(document, message):
    with pytest.raises(ArtifactError, match=r"m\.json") as info:
        parse(document)

    assert message in str(info.value)


def test_matrix_canary_rows_must_be_finite_numbers():
    document = copy.deepcopy(V1)
    document["canary"]["instances"][0] = [1.0, "2"]

    with pytest.raises(ArtifactError, match="instances row 0 holds a value that is not a finite number"):
        parse(document)
