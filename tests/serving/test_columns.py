"""A ``columns`` artifact (a mixed table: numbers with blanks, text categories) served by a real
endpoint process: rows as objects keyed by column on /v1/predict, one input per column on V2,
each equal to the scikit-learn pipeline row by row, and every malformed row refused with a 422
naming the column and the row."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.training.data import mixed_rows, write_csv
from tests.training.test_train_tables import refit

COLUMNS = ["age", "region", "plan tier", "noise"]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory):
    return write_csv(tmp_path_factory.mktemp("tables") / "customers.csv", mixed_rows(400))


@pytest.fixture(scope="module")
def mixed_model(table, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(
        TrainOptions(
            dataset=str(table),
            target="segment",
            model="logreg",
            class_weight="balanced",
            out=tmp_path_factory.mktemp("artifacts"),
        )
    )


@pytest.fixture(scope="module")
def mixed_endpoint(mixed_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    ep = start_endpoint(str(mixed_model.path), log_path=log)
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


@pytest.fixture(scope="module")
def client(mixed_endpoint: Endpoint) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mixed_endpoint.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def reference(table):
    """The scikit-learn pipeline the artifact was exported from, its test rows as a client sends
    them (null for a blank) and its answers."""
    dataset, split, fitted = refit(table, "logreg")
    frame = dataset.features(split.test)
    rows = [
        {c: (None if (isinstance(v, float) and np.isnan(v)) or v == "" else v) for c, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    expected = [dataset.classes[i] for i in fitted.predict(frame)]
    return rows, expected, fitted.predict_proba(frame)


def test_rows_as_objects_equal_scikit_learn_row_by_row(client, reference, mixed_model):
    rows, expected, proba = reference
    assert any(v is None for row in rows for v in row.values()), "the test rows include missing values"
    answer = client.post("/v1/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == mixed_model.manifest.version
    assert body["predictions"] == expected  # every row
    assert np.max(np.abs(np.array(body["probabilities"]) - proba)) <= 1e-6


def test_one_row_at_a_time_and_in_any_key_order(client, reference):
    rows, expected, _ = reference
    for row, label in zip(rows[:5], expected[:5], strict=True):
        reordered = dict(reversed(list(row.items())))
        assert client.post("/v1/predict", json={"instances": [reordered]}).json()["predictions"] == [label]


def test_the_canary_replays_through_the_endpoint(client, mixed_model):
    canary = mixed_model.manifest.canary
    body = client.post("/v1/predict", json={"instances": canary.instances}).json()
    assert body["predictions"] == canary.labels


GOOD = {"age": 41.0, "region": "EU", "plan tier": "pro", "noise": 0.1}


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({k: v for k, v in GOOD.items() if k != "region"}, "region"),  # missing column
        ({k: v for k, v in GOOD.items() if k != "age"}, "age"),  # missing numeric column
        ({**GOOD, "zip": "75001"}, "zip"),  # extra column
        ({**GOOD, "age": "forty"}, "age"),  # text in a numeric column
        ({**GOOD, "age": "41"}, "age"),  # a quoted number in a numeric column
        ({**GOOD, "age": True}, "age"),  # a boolean in a numeric column
        ({**GOOD, "region": 1}, "region"),  # a number in a categorical column
        ({**GOOD, "plan tier": 1.5}, "plan tier"),
        ({**GOOD, "region": False}, "region"),  # a boolean in a categorical column
        ({**GOOD, "noise": 10**400}, "noise"),  # beyond float64
    ],
)
def test_a_malformed_row_is_a_422_naming_the_column_and_the_row(client, row, column):
    answer = client.post("/v1/predict", json={"instances": [GOOD, GOOD, row]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert repr(column) in error
    assert "row 2" in error


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": [[41.0, "EU", "pro", 0.1]]}, "objects keyed by column"),  # rows of a matrix
        ({"instances": [GOOD, {**GOOD, "region": ["EU"]}]}, "row 1 column 'region'"),  # nested value
        ({"instances": [GOOD, {**GOOD, "age": {"v": 1}}]}, "row 1 column 'age'"),
        ({"instances": []}, "empty"),
        ({"rows": [GOOD]}, "instances"),
    ],
)
def test_other_malformed_bodies_are_4xx_saying_what_is_wrong(client, body, fragment):
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["error"]


def test_a_value_beyond_float64_is_refused(client):
    answer = client.post(
        "/v1/predict",
        content=b'{"instances": [{"age": 1e999, "region": "EU", "plan tier": "pro", "noise": 0}]}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= answer.status_code < 500, answer.text


def unknown_counts(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'mlorch_model_unknown_categories_total\{[^}]*column="([^"]+)"[^}]*\} (\S+)', text
        )
    }


def test_unknown_categories_are_served_and_counted_per_column(client, reference):
    before = unknown_counts(client)
    rows = [{**GOOD, "region": "Mars"}, {**GOOD, "region": "Venus", "plan tier": "enterprise"}, GOOD]
    answer = client.post("/v1/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 3
    after = unknown_counts(client)
    assert after["region"] - before.get("region", 0) == 2
    assert after["plan tier"] - before.get("plan tier", 0) == 1
    assert set(after) <= {"region", "plan tier"}  # the manifest's categorical columns only
    # A missing value (null, the "" category) is not an unknown category.
    client.post("/v1/predict", json={"instances": [{**GOOD, "region": None}]})
    assert unknown_counts(client)["region"] == after["region"]


def v2_body(rows, *, datatype=None, shape_1=True):
    inputs = []
    for name in COLUMNS:
        values = [row[name] for row in rows]
        kind = "BYTES" if name in ("region", "plan tier") else "FP64"
        if kind == "BYTES":
            values = ["" if v is None else v for v in values]
        inputs.append(
            {
                "name": name,
                "datatype": (datatype or {}).get(name, kind),
                "shape": [len(rows), 1] if shape_1 else [len(rows)],
                "data": values,
            }
        )
    return {"id": "r1", "inputs": inputs}


@pytest.mark.parametrize("shape_1", [True, False])
def test_v2_one_input_per_column_equals_scikit_learn(client, reference, mixed_model, shape_1):
    rows, expected, proba = reference
    name = mixed_model.manifest.name
    answer = client.post(f"/v2/models/{name}/infer", json=v2_body(rows, shape_1=shape_1))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["label"]["data"] == expected
    got = np.array(outputs["probabilities"]["data"]).reshape(len(rows), -1)
    assert np.max(np.abs(got - proba)) <= 1e-6
    assert answer.json()["id"] == "r1"


def test_v2_binary_tensors_per_column_equal_json(client, reference, mixed_model):
    """The binary tensor data extension for a columns model: FP64 with NaN for a missing number,
    BYTES (length-prefixed UTF-8) for text, answers equal to the JSON request's."""
    rows = reference[0]
    body = v2_body(rows)
    head_inputs, tail = [], b""
    for tensor in body["inputs"]:
        if tensor["datatype"] == "BYTES":
            raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in tensor["data"])
        else:
            raw = np.array([np.nan if v is None else v for v in tensor["data"]], dtype="<f8").tobytes()
        head_inputs.append(
            {k: v for k, v in tensor.items() if k != "data"} | {"parameters": {"binary_data_size": len(raw)}}
        )
        tail += raw
    head = json.dumps({"inputs": head_inputs, "parameters": {"binary_data_output": True}}).encode()
    url = f"/v2/models/{mixed_model.manifest.name}/infer"
    answer = client.post(
        url, content=head + tail, headers={"Inference-Header-Content-Length": str(len(head))}
    )
    assert answer.status_code == 200, answer.text[:300]
    length = int(answer.headers["inference-header-content-length"])
    outputs = json.loads(answer.content[:length])["outputs"]
    as_json = {o["name"]: o for o in client.post(url, json=body).json()["outputs"]}
    proba_bytes = outputs[1]["parameters"]["binary_data_size"]
    got = np.frombuffer(answer.content[len(answer.content) - proba_bytes :], dtype="<f8")
    np.testing.assert_array_equal(got, np.array(as_json["probabilities"]["data"]))


def test_v2_metadata_lists_one_input_per_column(client, mixed_model):
    meta = client.get(f"/v2/models/{mixed_model.manifest.name}").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("age", "FP64"),
        ("region", "BYTES"),
        ("plan tier", "BYTES"),
        ("noise", "FP64"),
    ]


def _drop(body, name):
    body["inputs"] = [t for t in body["inputs"] if t["name"] != name]
    return body


def _add(body, tensor):
    body["inputs"].append(tensor)
    return body


def _edit(body, name, **changes):
    for t in body["inputs"]:
        if t["name"] == name:
            t.update(changes)
    return body


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda b: _drop(b, "region"), "region"),  # missing input
        (lambda b: _add(b, {"name": "zip", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}), "zip"),
        (lambda b: _add(b, dict(b["inputs"][0])), "age"),  # given twice
        (lambda b: _edit(b, "age", datatype="BYTES"), "age"),  # text datatype for a numeric column
        (lambda b: _edit(b, "region", datatype="FP64"), "region"),  # numeric datatype for text
        (lambda b: _edit(b, "age", data=["41", "42"]), "age"),  # strings under FP64
        (lambda b: _edit(b, "region", data=[1, 2]), "region"),  # numbers under BYTES
        (lambda b: _edit(b, "noise", shape=[3, 1], data=[0, 0, 0]), "noise"),  # row counts differ
        (lambda b: _edit(b, "noise", shape=[2, 2]), "noise"),  # not one value per row
        (lambda b: _edit(b, "noise", data=[0.1]), "noise"),  # data does not fill the shape
    ],
)
def test_v2_a_malformed_input_is_a_4xx_naming_it(client, mixed_model, make, name):
    body = make(v2_body([GOOD, GOOD]))
    answer = client.post(f"/v2/models/{mixed_model.manifest.name}/infer", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert repr(name) in answer.json()["error"]


@pytest.mark.parametrize("source", ["manifest", "own"])
def test_the_health_probe_checks_a_columns_endpoint_with_its_canary(mixed_endpoint, mixed_model, source):
    """The control plane's probe sends the canary instances as objects: from the manifest in the
    buckets, or the endpoint's own (``/v1/model``) when the buckets give none."""
    import asyncio

    from orchestrator.control.health.machine import Verdict
    from orchestrator.control.health.probe import Expectation, probe

    canary = mixed_model.manifest.canary
    if source == "manifest":
        expect = Expectation(
            mixed_model.manifest.version, canary.instances, canary.labels, canary.probabilities, 5000
        )
    else:
        expect = Expectation(None, (), (), (), 5000)

    async def run():
        async with httpx.AsyncClient() as c:
            return await probe(c, "aws", mixed_endpoint.url, expect, timeout_s=30)

    result = asyncio.run(run())
    assert result.verdict is Verdict.OK, result.reason
    assert result.served_version == mixed_model.manifest.version

    # A canary the model answers differently is caught (the probe really compares the answer).
    wrong = Expectation(None, canary.instances, ["nope"] * len(canary.labels), canary.probabilities, 5000)

    async def run_wrong():
        async with httpx.AsyncClient() as c:
            return await probe(c, "aws", mixed_endpoint.url, wrong, timeout_s=30)

    assert asyncio.run(run_wrong()).verdict is Verdict.FAIL


def _copy_with(mixed_model: TrainResult, tmp_path, edit) -> object:
    import json
    import shutil

    copy = tmp_path / "artifact"
    shutil.copytree(mixed_model.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _rename_input(manifest):
    manifest["features"]["columns"][1]["input"] = "area"


def _numeric_region(manifest):
    column = manifest["features"]["columns"][1]
    column["kind"], column["categories"] = "numeric", []
    for row in manifest["canary"]["instances"]:
        row["region"] = 1.0
    manifest.pop("reference_profile")  # a self-consistent manifest that disagrees with its graph


def _as_matrix(manifest):
    manifest["features"]["layout"] = "matrix"
    manifest["features"]["columns"] = []
    manifest["canary"]["instances"] = [[1.0, 2.0, 3.0, 4.0] for _ in manifest["canary"]["instances"]]
    manifest.pop("reference_profile")  # a self-consistent manifest that disagrees with its graph


def _wrong_canary_label(manifest):
    labels = manifest["canary"]["labels"]
    manifest["canary"]["labels"] = labels[1:] + labels[:1] if len(set(labels)) > 1 else labels
    assert manifest["canary"]["labels"] != labels


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_rename_input, "model inputs are"),  # the manifest names an input the graph lacks
        (_numeric_region, "must be a tensor(double)"),  # the graph takes text where the manifest says numbers
        (_as_matrix, "exactly one input named 'input'"),  # a columns graph described as a matrix
        (_wrong_canary_label, "canary labels"),  # the object canary is really replayed
    ],
)
def test_a_columns_artifact_that_disagrees_with_its_graph_is_refused(mixed_model, tmp_path, edit, message):
    from orchestrator.core.errors import ArtifactError
    from serving.model import load_verified

    load_verified(mixed_model.path)  # the artifact as written loads
    with pytest.raises(ArtifactError, match=re.escape(message)):
        load_verified(_copy_with(mixed_model, tmp_path, edit))


def test_concurrent_object_rows_in_one_tick_share_one_model_call(mixed_model):
    """The micro-batcher concatenates ColumnBatches column by column, and splits the outputs back."""
    import asyncio

    from serving.batching import MicroBatcher
    from serving.columns import canary_batch
    from serving.model import load_verified

    predictor = load_verified(mixed_model.path)
    instances = mixed_model.manifest.canary.instances
    columns = mixed_model.manifest.features.columns
    batcher = MicroBatcher()

    async def fire():
        return await asyncio.gather(
            *(batcher.predict(predictor, canary_batch([row], columns)) for row in instances)
        )

    results = asyncio.run(fire())
    assert batcher.calls == 1
    assert [predictor.classes[label[0]] for label, _ in results] == mixed_model.manifest.canary.labels
    for (_, proba), want in zip(results, mixed_model.manifest.canary.probabilities, strict=True):
        np.testing.assert_allclose(proba[0], want, atol=1e-9)
