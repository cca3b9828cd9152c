"""Training as a library: artifacts, recomputable metrics, export agreement, gate, data checks."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn import datasets as skdatasets
from sklearn import metrics as skm

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import MODEL_FILE
from orchestrator.core.errors import ArtifactError, ConfigError
from orchestrator.training import datasets
from orchestrator.training.datasets import DatasetError
from orchestrator.training.evaluate import evaluate
from orchestrator.training.gate import GateError
from orchestrator.training.pipeline import TrainOptions, TrainResult, content_version, train

STRATEGIES = ("multinomial", "ovr")


@pytest.fixture(scope="session")
def iris_artifacts(tmp_path_factory) -> dict[str, TrainResult]:
    """Iris trained once per strategy and shared: training is the slow part of this module."""
    out = tmp_path_factory.mktemp("artifacts")
    return {s: train(TrainOptions(dataset="iris", strategy=s, out=out)) for s in STRATEGIES}


@pytest.fixture(params=STRATEGIES)
def iris(request, iris_artifacts) -> TrainResult:
    return iris_artifacts[request.param]


def _onnx_predict(model_path: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the exported model with onnxruntime directly, independent of orchestrator.training.export."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], {"input": X})
    return labels, proba


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _separable_csv(path: Path, classes=("cat", "dog", "emu"), rows_per_class=20, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["width,height,species"]
    for k, label in enumerate(classes):
        for x, y in rng.normal(loc=3.0 * k, scale=0.5, size=(rows_per_class, 2)):
            lines.append(f"{x:.6f},{y:.6f},{label}")
    return _write_csv(path, "\n".join(lines) + "\n")


# --- the artifact -------------------------------------------------------------------------------


def test_artifact_verifies_and_lists_every_file(iris):
    manifest = verify_artifact(iris.path)

    assert iris.path.parent.name == "iris"
    assert iris.path.name == manifest.version
    assert {f.path for f in manifest.files} == {
        MODEL_FILE,
        "report.md",
        "confusion_matrix.png",
        "roc_ovr.png",
        "precision_recall.png",
        "reliability.png",
        "permutation_importance.png",
        "coefficients.png",
        "partial_dependence.png",
    }
    assert not list(iris.path.parent.parent.glob(".staging-*"))


def test_manifest_describes_the_training(iris):
    m = iris.manifest
    strategy = m.training["strategy"]

    assert m.name == "iris"
    assert len(m.version) == 12
    assert int(m.version, 16) >= 0
    assert datetime.fromisoformat(m.created_at).utcoffset() == timedelta(0)
    assert set(m.framework) == {
        "python",
        "scikit-learn",
        "skl2onnx",
        "onnx",
        "onnxruntime",
        "numpy",
        "orchestrator",
    }
    assert m.features.count == 4
    assert m.features.names == list(skdatasets.load_iris().feature_names)
    assert m.classes == ["setosa", "versicolor", "virginica"]
    assert m.split["seed"] == 0
    assert m.split["test_size"] == 0.25
    assert m.split["stratified"] is True
    assert (m.split["n_train"], m.split["n_test"]) == (112, 38)
    assert m.training["cv_folds"] == 5
    assert m.training["estimator"].endswith(
        "LogisticRegression" if strategy == "multinomial" else "OneVsRestClassifier(LogisticRegression)"
    )
    assert m.training["converged"] is True
    assert m.metrics["cv"]["best_params"]["C"] in m.training["grid"]["C"]
    assert [row["C"] for row in m.metrics["cv"]["grid"]] == m.training["grid"]["C"]
    assert m.metrics["cv"]["f1_macro_mean"] == max(row["mean"] for row in m.metrics["cv"]["grid"])


def test_test_indices_are_a_stratified_sample(iris):
    indices = iris.manifest.split["test_indices"]
    y = skdatasets.load_iris().target

    assert len(indices) == len(set(indices)) == iris.manifest.split["n_test"]
    assert indices == sorted(indices)
    assert np.bincount(y[indices]).tolist() == [13, 13, 12]


def test_metrics_recompute_from_test_indices_with_the_onnx_model(iris):
    """Anyone can rebuild the test set from the manifest and get the published numbers."""
    m = iris.manifest
    bunch = skdatasets.load_iris()
    X, y = bunch.data[m.split["test_indices"]], bunch.target[m.split["test_indices"]]

    labels, proba = _onnx_predict(iris.path / MODEL_FILE, X)

    assert m.metrics["accuracy"] == skm.accuracy_score(y, labels)
    assert m.metrics["balanced_accuracy"] == skm.balanced_accuracy_score(y, labels)
    assert m.metrics["f1_macro"] == skm.f1_score(y, labels, average="macro")
    assert m.metrics["f1_weighted"] == skm.f1_score(y, labels, average="weighted")
    assert m.metrics["precision_macro"] == skm.precision_score(y, labels, average="macro", zero_division=0)
    assert m.metrics["recall_macro"] == skm.recall_score(y, labels, average="macro")
    assert m.metrics["cohen_kappa"] == skm.cohen_kappa_score(y, labels)
    assert m.metrics["roc_auc_ovr_macro"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12
    )
    assert m.metrics["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, labels).tolist()
    train_rows = np.setdiff1d(np.arange(len(bunch.target)), m.split["test_indices"])
    recomputed = evaluate(
        y, labels, proba, m.classes, prior_labels=bunch.target[train_rows], seed=m.split["seed"]
    )
    assert {k: v for k, v in m.metrics.items() if k != "cv"} == recomputed


def test_onnx_model_has_the_serving_contract(iris):
    model = onnx.load(iris.path / MODEL_FILE)
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}

    assert graph_input.name == "input"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert not dims[0].dim_value  # any batch size
    assert dims[1].dim_value == 4
    assert outputs == {"label": onnx.TensorProto.INT64, "probabilities": onnx.TensorProto.DOUBLE}
    assert iris.manifest.export["input_name"] == "input"
    assert iris.manifest.export["labels_agree"] == 1.0
    assert iris.manifest.export["max_probability_diff"] < 1e-5
    assert iris.manifest.export["test_rows"] == 38


def test_canary_matches_the_onnx_model(iris):
    canary = iris.manifest.canary
    bunch = skdatasets.load_iris()

    labels, proba = _onnx_predict(iris.path / MODEL_FILE, np.array(canary.instances))

    assert [iris.manifest.classes[i] for i in labels] == canary.labels
    np.testing.assert_array_equal(proba, np.array(canary.probabilities))
    # Every class first, in class order, so a health probe exercises every class it can...
    assert canary.labels[:3] == iris.manifest.classes
    # ...with synthetic rows (class means, midpoints): /v1/model publishes them, so no dataset row.
    assert not any((bunch.data == row).all(axis=1).any() for row in canary.instances)


def test_report_holds_the_metrics_and_links_the_plots(iris):
    text = (iris.path / "report.md").read_text()

    assert f"| F1 (macro) | {iris.manifest.metrics['f1_macro']:.4f} |" in text
    assert "| versicolor |" in text
    assert "](confusion_matrix.png)" in text
    assert "](roc_ovr.png)" in text
    plots = (
        "confusion_matrix.png",
        "roc_ovr.png",
        "precision_recall.png",
        "reliability.png",
        "permutation_importance.png",
        "coefficients.png",
        "partial_dependence.png",
    )
    for png in plots:
        assert f"]({png})" in text
        assert (iris.path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_and_manifest_put_every_headline_metric_beside_its_baseline_and_interval(iris):
    metrics, text = iris.manifest.metrics, (iris.path / "report.md").read_text()
    baseline, intervals = metrics["baseline"], metrics["intervals"]

    assert "| Metric | Value | 95% interval | Majority-class baseline |" in text
    for key, label in (("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)")):
        row = (
            f"| {label} | {metrics[key]:.4f} | {intervals[key]['low']:.4f} – {intervals[key]['high']:.4f} "
            f"| {baseline[key]:.4f} |"
        )
        assert row in text
        assert intervals[key]["low"] <= metrics[key] <= intervals[key]["high"]
    assert intervals["n_resamples"] == 1000
    assert intervals["seed"] == iris.manifest.split["seed"]
    assert baseline["accuracy"] < metrics["accuracy"]
    assert metrics["log_loss"] < baseline["log_loss"]
    assert metrics["brier_score"] < baseline["brier_score"]
    assert set(metrics["calibration"]["per_class"]) == set(iris.manifest.classes)
    assert metrics["calibration"]["bins"] == 15


def test_the_manifest_explains_the_model(iris):
    explained = iris.manifest.model_extra["interpretation"]
    importance = explained["permutation_importance"]

    assert set(importance["importances"]) == set(iris.manifest.features.names)
    assert importance["n_repeats"] == 5
    # Petal measurements carry iris: shuffling one costs more macro F1 than shuffling a sepal one.
    assert next(iter(importance["importances"])).startswith("petal")
    assert set(explained["coefficients"]["per_class"]) == set(iris.manifest.classes)
    curves = explained["partial_dependence"]["features"]
    assert len(curves) == 3
    for curve in curves.values():
        assert len(curve["grid"]) <= 20
        assert set(curve["per_class"]) == set(iris.manifest.classes)


@pytest.mark.parametrize("victim", [MODEL_FILE, "report.md"])
def test_tampered_or_missing_file_is_refused_by_name(iris, tmp_path, victim):
    tampered, missing = tmp_path / "tampered", tmp_path / "missing"
    shutil.copytree(iris.path, tampered)
    shutil.copytree(iris.path, missing)
    with (tampered / victim).open("ab") as fh:
        fh.write(b"\0")
    (missing / victim).unlink()

    for root in (tampered, missing):
        with pytest.raises(ArtifactError, match=victim) as info:
            verify_artifact(root)
        assert info.value.path == victim


# --- reproducibility ----------------------------------------------------------------------------


def test_same_data_and_seed_give_the_same_version_and_model_bytes(iris_artifacts, tmp_path):
    first = iris_artifacts["multinomial"]

    again = train(TrainOptions(dataset="iris", strategy="multinomial", out=tmp_path))

    assert again.manifest.version == first.manifest.version
    assert (again.path / MODEL_FILE).read_bytes() == (first.path / MODEL_FILE).read_bytes()
    assert again.manifest.metrics == first.manifest.metrics


def test_version_changes_with_what_determines_the_model():
    iris = datasets.load_dataset("iris")
    base = content_version(TrainOptions(dataset="iris"), iris)

    assert content_version(TrainOptions(dataset="iris", seed=1), iris) != base
    assert content_version(TrainOptions(dataset="iris", strategy="ovr"), iris) != base
    assert content_version(TrainOptions(dataset="wine"), datasets.load_dataset("wine")) != base
    # Where the artifact goes and the gate do not change the model.
    assert content_version(TrainOptions(dataset="iris", out=Path("x"), min_f1_macro=0.5), iris) == base


# --- other datasets -----------------------------------------------------------------------------


def test_digits_trains_and_verifies(tmp_path):
    result = train(TrainOptions(dataset="digits", out=tmp_path))

    manifest = verify_artifact(result.path)
    assert manifest.classes == [str(d) for d in range(10)]
    assert manifest.features.count == 64
    assert manifest.metrics["f1_macro"] > 0.9
    assert manifest.canary.labels == ["0", "1", "2", "3", "4"]  # five rows, first classes in order
    data = skdatasets.load_digits().data
    assert not any((data == row).all(axis=1).any() for row in manifest.canary.instances)


def test_csv_with_string_labels(tmp_path):
    csv = _separable_csv(tmp_path / "Zoo Animals!.csv")

    result = train(TrainOptions(dataset=str(csv), target="species", out=tmp_path / "out"))

    manifest = verify_artifact(result.path)
    assert manifest.name == "zoo-animals"
    assert manifest.classes == ["cat", "dog", "emu"]
    assert manifest.features.names == ["width", "height"]
    assert manifest.split["dataset"] == "Zoo Animals!.csv"
    assert "test_indices" not in manifest.split
    assert set(manifest.canary.labels) == {"cat", "dog", "emu"}
    assert manifest.metrics["accuracy"] == 1.0  # the classes are 6 standard deviations apart


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_class_csv(tmp_path, strategy):
    csv = _separable_csv(tmp_path / "pets.csv", classes=("no", "yes"))

    result = train(TrainOptions(dataset=str(csv), target="species", strategy=strategy, out=tmp_path))

    manifest = verify_artifact(result.path)
    X = np.array(manifest.canary.instances)
    labels, proba = _onnx_predict(result.path / MODEL_FILE, X)
    assert manifest.classes == ["no", "yes"]
    assert proba.shape == (3, 2)  # two class means and the midpoint between them
    assert [manifest.classes[i] for i in labels] == manifest.canary.labels
    assert manifest.canary.labels[:2] == ["no", "yes"]
    assert manifest.metrics["roc_auc_ovr_macro"] == 1.0


def test_numeric_labels_sort_as_numbers():
    y, classes = datasets.encode_labels([10, 2, 1, 2, 10])

    assert classes == ["1", "2", "10"]
    assert y.tolist() == [2, 1, 0, 1, 2]


# --- refusals that write nothing ----------------------------------------------------------------


def test_gate_refuses_before_writing(tmp_path):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.csv"
    # Labels independent of the features: nothing to learn, so macro F1 stays near chance.
    rows = [
        f"{a:.5f},{b:.5f},{c}"
        for (a, b), c in zip(rng.normal(size=(120, 2)), rng.integers(0, 2, 120), strict=True)
    ]
    _write_csv(noise, "a,b,target\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"

    with pytest.raises(GateError) as info:
        train(TrainOptions(dataset=str(noise), out=out, min_f1_macro=0.9))

    assert info.value.metric == "f1_macro"
    assert info.value.threshold == 0.9
    assert info.value.value < 0.9
    assert f"{info.value.value:.4f}" in str(info.value)
    assert not out.exists()


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from orchestrator.training import report

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    out = tmp_path / "deep" / "out"

    with pytest.raises(OSError, match="disk full"):
        train(TrainOptions(dataset="iris", out=out))

    assert not (tmp_path / "deep").exists()


def test_export_disagreeing_with_sklearn_is_refused(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from orchestrator.training.export import export

    X, y = skdatasets.load_iris(return_X_y=True)
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]).fit(X, y)
    assert export(pipeline, X).info["max_probability_diff"] < 1e-5

    # Shift sklearn's side by 1e-4: the check must see the gap whichever side drifted.
    exact = pipeline.predict_proba
    monkeypatch.setattr(pipeline, "predict_proba", lambda rows: exact(rows) + 1e-4)
    with pytest.raises(ArtifactError, match=r"max probability difference 0\.0001"):
        export(pipeline, X)


@pytest.mark.parametrize(
    ("spec", "target", "message"),
    [
        ("mnist", None, "unknown dataset 'mnist': use one of iris, wine, digits"),
        ("missing/data.csv", None, "dataset file not found"),
        ("iris", "species", "--target applies to CSV and Parquet files only"),
    ],
)
def test_bad_dataset_names(spec, target, message):
    with pytest.raises(DatasetError, match=message):
        datasets.load_dataset(spec, target)


def test_too_few_rows_per_class_for_cross_validation(tmp_path):
    csv = _separable_csv(tmp_path / "small.csv", rows_per_class=20)
    with csv.open("a") as fh:
        fh.write("9.0,9.0,yak\n9.1,9.0,yak\n9.2,9.1,yak\n")
    out = tmp_path / "out"

    with pytest.raises(DatasetError, match="class 'yak' has 3 rows"):
        train(TrainOptions(dataset=str(csv), target="species", out=out))
    assert not out.exists()


def test_invalid_options_are_config_errors():
    with pytest.raises(ConfigError, match="--name"):
        TrainOptions(dataset="iris", name="Not A Name")
    with pytest.raises(ConfigError, match="test_size"):
        TrainOptions(dataset="iris", test_size=1.0)
    with pytest.raises(ConfigError, match="folds"):
        TrainOptions(dataset="iris", cv_folds=1)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        TrainOptions(dataset="iris", min_f1_macro=1.5)
