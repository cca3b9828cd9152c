"""train on a real table: blanks, categories, an imbalanced class and text labels ("NA", "001",
"1", "None"), trained, exported and checked row by row against scikit-learn."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import MODEL_FILE
from orchestrator.training import datasets, models
from orchestrator.training.pipeline import TrainOptions, content_version, train
from tests.training.data import LABELS, mixed_frame, mixed_rows, write_csv, write_parquet

MODELS = ["logreg", "random_forest", "hist_gradient_boosting"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("tables") / "customers.csv", mixed_rows(400))


def onnx_outputs(path, rows):
    """The artifact's graph fed raw rows (objects keyed by column) the way the contract says: one
    [N, 1] input per column, float64 (NaN for null) or string ("" for null)."""
    session = ort.InferenceSession(str(path / MODEL_FILE), providers=["CPUExecutionProvider"])
    manifest = verify_artifact(path)
    feeds = {}
    for column in manifest.features.columns:
        values = [row[column.name] for row in rows]
        if column.kind == "numeric":
            feeds[column.input] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64
            ).reshape(-1, 1)
        else:
            feeds[column.input] = np.array(["" if v is None else v for v in values], dtype=object).reshape(
                -1, 1
            )
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return [manifest.classes[i] for i in labels], probabilities


def refit(table, model, class_weight="balanced"):
    """The same search train runs, on the same split: the scikit-learn model the artifact must equal."""
    dataset = datasets.load_dataset(str(table), "segment")
    split = datasets.split(dataset, test_size=0.25, seed=0, cv_folds=5)
    search = models.search(
        dataset.features(split.train),
        dataset.y[split.train],
        kinds=[c.kind for c in dataset.columns],
        names=dataset.feature_names,
        model=model,
        strategy="multinomial",
        class_weight=class_weight,
        seed=0,
        cv_folds=5,
    )
    return dataset, split, search.best_estimator_


@pytest.mark.parametrize("model", MODELS)
def test_a_mixed_table_trains_and_the_graph_equals_scikit_learn_row_by_row(table, tmp_path, model):
    result = train(
        TrainOptions(dataset=str(table), target="segment", model=model, class_weight="balanced", out=tmp_path)
    )
    manifest = verify_artifact(result.path)
    dataset, split, fitted = refit(table, model)
    frame = dataset.features(split.test)
    rows = [
        {c: (None if (isinstance(v, float) and np.isnan(v)) or v == "" else v) for c, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]

    labels, probabilities = onnx_outputs(result.path, rows)

    expected = [dataset.classes[i] for i in fitted.predict(frame)]
    assert labels == expected  # 100 % of the test rows
    assert np.max(np.abs(probabilities - fitted.predict_proba(frame))) <= 1e-6
    assert manifest.export["labels_agree"] == 1.0
    assert manifest.export["max_probability_diff"] <= 1e-6
    assert sorted(manifest.classes) == sorted(LABELS)  # "NA", "None", "001" and "1" kept as written
    assert manifest.training["class_weight"] == "balanced"
    assert manifest.training["chosen"] == model


def test_the_manifest_describes_columns_categories_and_layout(table, tmp_path):
    manifest = train(TrainOptions(dataset=str(table), target="segment", out=tmp_path)).manifest

    assert manifest.schema_version == 2
    assert manifest.features.layout == "columns"
    columns = {c.name: c for c in manifest.features.columns}
    assert [c.kind for c in manifest.features.columns] == ["numeric", "categorical", "categorical", "numeric"]
    assert columns["region"].categories == ["", "AS", "EU", "NA", "US"]  # "" is the missing category
    assert columns["plan tier"].input == "plan_tier"  # a valid ONNX name, the mapping recorded
    assert columns["age"].categories == []
    graph = onnx.load(str(tmp_path / manifest.name / manifest.version / MODEL_FILE))
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.graph.input] == [
        ("age", onnx.TensorProto.DOUBLE),
        ("region", onnx.TensorProto.STRING),
        ("plan_tier", onnx.TensorProto.STRING),
        ("noise", onnx.TensorProto.DOUBLE),
    ]


def test_unknown_categories_and_nulls_are_answered_as_scikit_learn_does(table, tmp_path):
    result = train(TrainOptions(dataset=str(table), target="segment", class_weight="balanced", out=tmp_path))
    _, _, fitted = refit(table, "logreg")
    rows = [
        {"age": None, "region": "Mars", "plan tier": "enterprise", "noise": 0.0},
        {"age": 55.0, "region": None, "plan tier": None, "noise": None},
        {"age": 31.5, "region": "NA", "plan tier": "pro", "noise": 1.0},
    ]
    import pandas as pd

    frame = pd.DataFrame(
        {
            "age": [np.nan, 55.0, 31.5],
            "region": pd.Series(["Mars", "", "NA"], dtype=object),
            "plan tier": pd.Series(["enterprise", "", "pro"], dtype=object),
            "noise": [0.0, np.nan, 1.0],
        }
    )

    labels, probabilities = onnx_outputs(result.path, rows)

    classes = result.manifest.classes
    assert labels == [classes[i] for i in fitted.predict(frame)]
    assert np.max(np.abs(probabilities - fitted.predict_proba(frame))) <= 1e-6


def test_the_canary_is_raw_rows_that_are_not_in_the_table(table, tmp_path):
    manifest = train(TrainOptions(dataset=str(table), target="segment", out=tmp_path)).manifest
    canary = manifest.canary

    labels, probabilities = onnx_outputs(tmp_path / manifest.name / manifest.version, canary.instances)

    assert labels == canary.labels
    np.testing.assert_array_equal(probabilities, np.array(canary.probabilities))
    assert all(set(row) == set(manifest.features.names) for row in canary.instances)
    X, _ = mixed_frame(mixed_rows(400))
    table_rows = {tuple(r) for r in X.astype(str).to_numpy().tolist()}
    assert not any(
        tuple(str(row[c]) for c in manifest.features.names) in table_rows for row in canary.instances
    )


def test_csv_and_parquet_train_the_same_version(table, tmp_path):
    parquet = write_parquet(tmp_path / "customers.parquet", mixed_rows(400))
    options = {"target": "segment", "out": tmp_path / "out"}

    from_csv = train(TrainOptions(dataset=str(table), **options))
    from_parquet = train(TrainOptions(dataset=str(parquet), **options))

    assert from_csv.manifest.version == from_parquet.manifest.version
    assert from_parquet.manifest.split["source"] == "parquet"


def test_class_weight_and_model_change_the_version(table):
    dataset = datasets.load_dataset(str(table), "segment")
    base = content_version(TrainOptions(dataset=str(table), target="segment"), dataset)

    weighted = content_version(
        TrainOptions(dataset=str(table), target="segment", class_weight="balanced"), dataset
    )
    forest = content_version(
        TrainOptions(dataset=str(table), target="segment", model="random_forest"), dataset
    )

    assert len({base, weighted, forest}) == 3


def test_auto_compares_every_model_in_one_search(table, tmp_path):
    manifest = train(TrainOptions(dataset=str(table), target="segment", model="auto", out=tmp_path)).manifest
    cv = manifest.metrics["cv"]

    assert {row["model"] for row in cv["grid"]} == set(MODELS)
    assert cv["best_params"]["model"] == manifest.training["chosen"]
    assert cv["f1_macro_mean"] == max(row["mean"] for row in cv["grid"])
    assert (tmp_path / manifest.name / manifest.version / "report.md").read_text().count("| logreg |") == 5
