"""orchestrator package: models trained elsewhere into verified artifacts, checked against the
original on the reference rows; every refusal names the problem and writes nothing."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import skops.io as sio
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import MODEL_FILE
from orchestrator.core.errors import ArtifactError, ConfigError, OrchestratorError
from orchestrator.training.packaging.package import PackageOptions, package
from orchestrator.training.tables import DatasetError
from tests.training.data import LABELS, double, mixed_frame, mixed_rows, write_csv, write_parquet

IRIS = ["sl", "sw", "pl", "pw"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def contract_outputs(artifact: Path, features):
    """The packaged graph's outputs, fed the contract's inputs straight from the manifest."""
    manifest = verify_artifact(artifact)
    if manifest.features.layout == "matrix":
        feeds = {"input": np.asarray(features, dtype=np.float64)}
    else:
        feeds = {}
        for c in manifest.features.columns:
            values = features[c.name].to_numpy()
            feeds[c.input] = (
                values.astype(np.float64).reshape(-1, 1)
                if c.kind == "numeric"
                else np.array(values, dtype=object).reshape(-1, 1)
            )
    labels, probabilities = session(artifact / MODEL_FILE).run(["label", "probabilities"], feeds)
    return [manifest.classes[i] for i in labels], probabilities


@pytest.fixture(scope="module")
def iris_table(tmp_path_factory):
    X, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("ref") / "iris.csv"
    pd.DataFrame(X, columns=IRIS).assign(species=SPECIES[y]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mixed")
    rows = mixed_rows(400, seed=1)
    X, y = mixed_frame(rows)
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        (
                            "numbers",
                            Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                            ["age", "noise"],
                        ),
                        ("text", OneHotEncoder(handle_unknown="ignore"), ["region", "plan tier"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ).fit(X, y)
    sio.dump(pipeline, directory / "churn.skops")
    return directory, pipeline, write_csv(directory / "reference.csv", rows), X


# --- round trips ----------------------------------------------------------------------------------


def test_a_skops_pipeline_with_a_column_transformer_answers_as_the_original(mixed, tmp_path):
    directory, pipeline, reference, X = mixed

    result = package(
        PackageOptions(model=directory / "churn.skops", reference=reference, target="segment", out=tmp_path)
    )

    manifest = verify_artifact(result.path)
    labels, probabilities = contract_outputs(result.path, X)
    assert labels == list(pipeline.predict(X))  # every reference row
    assert np.max(np.abs(probabilities - pipeline.predict_proba(X))) <= 1e-6
    assert manifest.classes == [str(c) for c in pipeline.classes_]
    assert sorted(manifest.classes) == sorted(LABELS)
    assert manifest.features.layout == "columns"
    assert {c.name: c.categories for c in manifest.features.columns}["region"] == ["", "AS", "EU", "NA", "US"]
    assert manifest.training["source_format"] == "skops"
    assert manifest.export["compared_with"] == "scikit-learn predict and predict_proba"
    assert manifest.metrics["accuracy"] == pytest.approx(
        float(np.mean(pipeline.predict(X) == mixed_frame(mixed_rows(400, seed=1))[1]))
    )
    assert (result.path / "report.md").is_file()
    assert (result.path / "roc_ovr.png").is_file()
    assert (
        manifest.canary.labels
        == contract_outputs(
            result.path, pd.DataFrame(manifest.canary.instances).fillna({"region": "", "plan tier": ""})
        )[0]
    )


def test_the_same_reference_as_parquet_gives_the_same_interface_canary_and_metrics(mixed, tmp_path):
    directory, _, reference, _ = mixed
    parquet = write_parquet(tmp_path / "reference.parquet", mixed_rows(400, seed=1))

    options = {"model": directory / "churn.skops", "target": "segment"}
    from_csv = package(PackageOptions(reference=reference, out=tmp_path / "a", **options))
    from_parquet = package(PackageOptions(reference=parquet, out=tmp_path / "b", **options))

    assert from_csv.manifest.features == from_parquet.manifest.features
    assert from_csv.manifest.canary == from_parquet.manifest.canary
    assert from_csv.manifest.metrics == from_parquet.manifest.metrics


def skl2onnx_defaults(model, X, **kwargs):
    """An ONNX model as skl2onnx makes it by default: float32 input, ZipMap probabilities."""
    return to_onnx(model, X[:1].astype(np.float32), **kwargs).SerializeToString()


@pytest.mark.parametrize(
    ("labels", "options"),
    [
        (SPECIES, {}),  # string classes, ZipMap
        (np.array([3, 7, 9]), {}),  # integer classes that are not indices, ZipMap
        (np.array([3, 7, 9]), {"options": {"zipmap": False}}),  # int64 label, probability tensor
    ],
    ids=["strings-zipmap", "integers-zipmap", "integers-tensor"],
)
def test_an_onnx_model_converted_elsewhere_is_adapted_and_answers_as_the_original(
    iris_table, tmp_path, labels, options
):
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(X.astype(np.float32), labels[y])
    model = tmp_path / "forest.onnx"
    model.write_bytes(skl2onnx_defaults(forest, X, **options))
    table = tmp_path / "iris.csv"
    pd.DataFrame(X, columns=IRIS).to_csv(table, index=False)

    result = package(PackageOptions(model=model, reference=table, out=tmp_path / "out"))

    manifest = verify_artifact(result.path)
    original_session = session(model)
    original = original_session.run(None, {original_session.get_inputs()[0].name: X.astype(np.float32)})
    packaged_labels, probabilities = contract_outputs(result.path, X)
    assert packaged_labels == [str(v) for v in original[0]]
    expected = (
        original[1]
        if isinstance(original[1], np.ndarray)
        else np.array([[row[k] for k in forest.classes_.tolist()] for row in original[1]])
    )
    assert np.max(np.abs(probabilities - expected)) <= 1e-6
    assert manifest.classes == [str(c) for c in forest.classes_]
    assert manifest.features.names == IRIS  # from the reference table
    assert manifest.features.layout == "matrix"
    assert manifest.export["compared_with"] == "the original ONNX graph"
    graph = onnx.load(str(result.path / MODEL_FILE))
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.graph.input] == [
        ("input", TensorProto.DOUBLE)
    ]
    assert {o.name: o.type.tensor_type.elem_type for o in graph.graph.output} == {
        "label": TensorProto.INT64,
        "probabilities": TensorProto.DOUBLE,
    }
    assert not [n for n in graph.graph.node if n.op_type == "ZipMap"]


def test_an_onnx_model_with_one_input_per_column_keeps_the_columns(mixed, tmp_path):
    _, _, _reference, X = mixed
    _, y = mixed_frame(mixed_rows(400, seed=1))
    Xf = X.fillna({"age": 30.0})
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("n", StandardScaler(), ["age", "noise"]),
                        ("c", OneHotEncoder(handle_unknown="ignore"), ["region", "plan tier"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ).fit(Xf, y)
    types = [
        ("age", FloatTensorType([None, 1])),
        ("region", StringTensorType([None, 1])),
        ("plan tier", StringTensorType([None, 1])),
        ("noise", FloatTensorType([None, 1])),
    ]
    model = tmp_path / "columns.onnx"
    model.write_bytes(to_onnx(pipeline, initial_types=types).SerializeToString())
    reference_rows = [r for r in mixed_rows(400, seed=1) if r[0]]  # this model has no imputer
    table = write_csv(tmp_path / "complete.csv", reference_rows)

    with pytest.raises(DatasetError, match="no column for the model's inputs 'plan_tier'"):
        package(PackageOptions(model=model, reference=table, target="segment", out=tmp_path / "out"))
    # skl2onnx named the input 'plan_tier': --features names the table's columns in input order.
    features = ("age", "region", "plan tier", "noise")
    result = package(
        PackageOptions(
            model=model, reference=table, target="segment", features=features, out=tmp_path / "out"
        )
    )

    manifest = verify_artifact(result.path)
    assert manifest.features.layout == "columns"
    assert [c.kind for c in manifest.features.columns] == ["numeric", "categorical", "categorical", "numeric"]
    assert manifest.features.names == ["age", "region", "plan tier", "noise"]
    Xc, _ = mixed_frame(reference_rows)
    labels, _ = contract_outputs(result.path, Xc)
    assert labels == list(pipeline.predict(Xc))


def test_a_graph_without_a_label_output_gets_the_arg_max_and_needs_labels(iris_table, tmp_path):
    X, y = load_iris(return_X_y=True)
    onx = to_onnx(
        LogisticRegression(max_iter=1000).fit(X, y), X[:1].astype(np.float32), options={"zipmap": False}
    )
    label = onx.graph.output[0].name
    kept = [o for o in onx.graph.output if o.name != label]
    del onx.graph.output[:]
    onx.graph.output.extend(kept)
    for node in onx.graph.node:  # strip the class labels the classifier node carries
        del_attrs = [a for a in node.attribute if a.name.startswith("classlabels")]
        for a in del_attrs:
            node.attribute.remove(a)
        if node.op_type == "LinearClassifier":
            node.attribute.append(helper.make_attribute("classlabels_ints", [0, 1, 2]))
    model = tmp_path / "probabilities-only.onnx"
    model.write_bytes(onx.SerializeToString())
    table = tmp_path / "iris.csv"
    pd.DataFrame(X, columns=IRIS).to_csv(table, index=False)

    with pytest.raises(ArtifactError, match="carries no class labels; pass --labels"):
        package(PackageOptions(model=model, reference=table, out=tmp_path / "refused"))
    result = package(
        PackageOptions(model=model, reference=table, labels=tuple(SPECIES), out=tmp_path / "out")
    )

    labels, probabilities = contract_outputs(result.path, X)
    assert labels == list(SPECIES[np.argmax(probabilities, axis=1)])
    assert result.manifest.classes == list(SPECIES)
    assert not (tmp_path / "refused").exists()


def test_a_signed_package_verifies_with_the_public_key(iris_table, tmp_path):
    from orchestrator.core.artifact.signing import SignatureVerifier, generate_key_pair, load_public_key

    private, public = generate_key_pair(tmp_path / "keys")
    X, y = load_iris(return_X_y=True)
    model = tmp_path / "m.skops"
    sio.dump(LogisticRegression(max_iter=1000).fit(X, SPECIES[y]), model)
    table = tmp_path / "iris.csv"
    pd.DataFrame(X, columns=IRIS).to_csv(table, index=False)

    result = package(PackageOptions(model=model, reference=table, out=tmp_path / "out", signing_key=private))

    assert result.signed
    SignatureVerifier(load_public_key(str(public), where="test")).verify(result.path, source="test")


# --- refusals: named, and nothing written ---------------------------------------------------------


def skops_file(tmp_path, estimator, name="m.skops"):
    path = tmp_path / name
    sio.dump(estimator, path)
    return path


def iris_xy():
    X, y = load_iris(return_X_y=True)
    return X, SPECIES[y]


def onnx_regressor(tmp_path):
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "regressor.onnx"
    path.write_bytes(to_onnx(LinearRegression().fit(X, y), X[:1].astype(np.float32)).SerializeToString())
    return path


def onnx_logits(tmp_path):
    """A graph whose only output is scores [N, 3] that are not probabilities (a linear layer)."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-2, 2, 12).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["scores"])],
        "logits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "logits.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def onnx_forest(tmp_path):
    X, y = iris_xy()
    path = tmp_path / "forest.onnx"
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X.astype(np.float32), y)
    path.write_bytes(skl2onnx_defaults(forest, X))
    return path


def table(tmp_path, columns=IRIS, drop=None, text_row=None, relabel=None):
    X, y = iris_xy()
    frame = pd.DataFrame(X, columns=IRIS).assign(species=y)
    if relabel:
        frame["species"] = frame["species"].replace(relabel)
    if drop:
        frame = frame.drop(columns=[drop])
    frame = frame.rename(columns=dict(zip(IRIS[: len(columns)], columns, strict=False)))
    if text_row is not None:
        frame[frame.columns[0]] = frame[frame.columns[0]].astype(object)
        frame.iloc[text_row, 0] = "n/a?"
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False)
    return path


REFUSALS = {
    "no probabilities (SVC)": (
        lambda t: skops_file(t, SVC().fit(*iris_xy())),
        table,
        {"target": "species"},
        ArtifactError,
        ["SVC gives no class probabilities", "probability=True"],
    ),
    "a regressor (skops)": (
        lambda t: skops_file(t, LinearRegression().fit(iris_xy()[0], load_iris().target)),
        table,
        {"target": "species"},
        ArtifactError,
        ["LinearRegression is not a fitted classifier"],
    ),
    "a regressor (ONNX)": (
        onnx_regressor,
        table,
        {"target": "species"},
        ArtifactError,
        ["gives 1 probability per row; a classifier gives one per class"],
    ),
    "scores, not probabilities": (
        onnx_logits,
        table,
        {"target": "species", "labels": ("a", "b", "c")},
        ArtifactError,
        ["output 'scores' does not hold class probabilities"],
    ),
    "a pickle": (
        lambda t: (t / "m.pkl").write_bytes(pickle.dumps({"x": 1})) and t / "m.pkl",
        table,
        {},
        ArtifactError,
        ["pickle and joblib files are not loaded", "skops.io.dump"],
    ),
    "an untrusted type in a skops file": (
        lambda t: skops_file(
            t,
            Pipeline([("f", FunctionTransformer(double)), ("m", LogisticRegression(max_iter=1000))]).fit(
                *iris_xy()
            ),
        ),
        table,
        {"target": "species"},
        ArtifactError,
        ["types that are not trusted: tests.training.data.double", "nothing was loaded"],
    ),
    "labels of another count": (
        onnx_forest,
        table,
        {"target": "species", "labels": ("a", "b")},
        ArtifactError,
        ["--labels names 2 classes but the model gives 3 probabilities per row"],
    ),
    "labels that contradict the model's": (
        onnx_forest,
        table,
        {"target": "species", "labels": ("x", "y", "z")},
        ArtifactError,
        ["the model's classes are ['setosa', 'versicolor', 'virginica'], --labels says ['x', 'y', 'z']"],
    ),
    "a reference column missing": (
        lambda t: skops_file(
            t, LogisticRegression(max_iter=1000).fit(pd.DataFrame(iris_xy()[0], columns=IRIS), iris_xy()[1])
        ),
        lambda t: table(t, drop="pw"),
        {"target": "species"},
        DatasetError,
        ["no column for the model's inputs 'pw'"],
    ),
    "an extra reference column": (
        lambda t: skops_file(
            t, LogisticRegression(max_iter=1000).fit(pd.DataFrame(iris_xy()[0], columns=IRIS), iris_xy()[1])
        ),
        table,
        {},
        DatasetError,
        ["columns 'species' are not inputs of the model", "--target"],
    ),
    "a width the ONNX model does not take": (
        onnx_forest,
        lambda t: table(t, columns=["a", "b", "c"], drop="pw"),
        {"target": "species"},
        DatasetError,
        ["the model takes 4 features; the reference table has 3 columns"],
    ),
    "text where the model takes numbers": (
        onnx_forest,
        lambda t: table(t, text_row=6),
        {"target": "species"},
        DatasetError,
        ["column 'sl' row 7 holds 'n/a?', not a number"],
    ),
    "a label outside the classes": (
        onnx_forest,
        lambda t: table(t, relabel={"setosa": "Setosa"}),
        {"target": "species"},
        DatasetError,
        ["target column 'species' row 1 holds 'Setosa', not one of the model's classes"],
    ),
    "a pipeline skl2onnx cannot convert": (
        lambda t: skops_file(
            t,
            Pipeline(
                [
                    (
                        "prepare",
                        ColumnTransformer(
                            [
                                (
                                    "c",
                                    Pipeline(
                                        [
                                            (
                                                "i",
                                                SimpleImputer(strategy="most_frequent", missing_values=None),
                                            ),
                                            ("o", OneHotEncoder(handle_unknown="ignore")),
                                        ]
                                    ),
                                    ["region"],
                                )
                            ]
                        ),
                    ),
                    ("m", LogisticRegression(max_iter=1000)),
                ]
            ).fit(
                pd.DataFrame({"region": pd.Series(["a", "b", None, "a"] * 5, dtype=object)}), ["x", "y"] * 10
            ),
        ),
        lambda t: (t / "r.csv").write_text("region\n" + "a\nb\n\na\n" * 5) and t / "r.csv",
        {},
        ArtifactError,
        ["skl2onnx cannot convert LogisticRegression to ONNX"],
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_problem_and_write_nothing(tmp_path, case):
    make_model, make_table, options, error, fragments = REFUSALS[case]
    model, reference = make_model(tmp_path), make_table(tmp_path)
    out = tmp_path / "out"

    with pytest.raises(error) as info:
        package(PackageOptions(model=model, reference=reference, out=out, **options))

    for fragment in fragments:
        assert fragment in str(info.value)
    assert not out.exists()


def test_a_graph_that_disagrees_with_scikit_learn_is_refused(tmp_path, monkeypatch):
    """The check compares the export with scikit-learn's own answers: shift those by 1e-5 and
    the same model is refused (whichever side drifted)."""
    import orchestrator.training.packaging.trusted as trusted

    model = skops_file(tmp_path, LogisticRegression(max_iter=1000).fit(*iris_xy()))
    load = trusted.load_skops

    def drifted(path):
        estimator = load(path)
        exact = estimator.predict_proba
        monkeypatch.setattr(estimator, "predict_proba", lambda rows: exact(rows) + 1e-5)
        return estimator

    monkeypatch.setattr(trusted, "load_skops", drifted)
    with pytest.raises(
        ArtifactError,
        match=r"disagrees with scikit-learn on the reference table: .*max probability difference 1e-05",
    ):
        package(
            PackageOptions(model=model, reference=table(tmp_path), target="species", out=tmp_path / "out")
        )
    assert not (tmp_path / "out").exists()


def test_options_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="--labels a,a"):
        PackageOptions(model=Path("m.onnx"), reference=Path("r.csv"), labels=("a", "a"))
    with pytest.raises(ConfigError, match="--name"):
        PackageOptions(model=Path("m.onnx"), reference=Path("r.csv"), name="Not A Name")
    with pytest.raises(ConfigError, match="file not found"):
        package(PackageOptions(model=Path("/nonexistent/m.onnx"), reference=Path("r.csv")))


# --- the command ----------------------------------------------------------------------------------


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_command_prints_the_path_last_and_refuses_in_one_line(tmp_path):
    onnx_forest(tmp_path)
    table(tmp_path)

    ok = run(
        "package",
        "--model",
        "forest.onnx",
        "--reference",
        "reference.csv",
        "--target",
        "species",
        "--out",
        "out",
        cwd=tmp_path,
    )
    refused = run(
        "package",
        "--model",
        "forest.onnx",
        "--reference",
        "reference.csv",
        "--target",
        "species",
        "--labels",
        "a,b",
        "--out",
        "no",
        cwd=tmp_path,
    )

    assert ok.returncode == 0, ok.stderr
    path = Path(ok.stdout.strip().splitlines()[-1])
    assert verify_artifact(path).name == "forest"
    assert "agrees with the original ONNX graph on 150 reference rows: labels 100%" in ok.stdout
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "Traceback" not in refused.stderr
    assert "--labels names 2 classes" in refused.stderr
    assert not (tmp_path / "no").exists()
    assert issubclass(ArtifactError, OrchestratorError)
