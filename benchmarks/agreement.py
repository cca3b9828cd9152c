"""Agreement of served models with scikit-learn: share of identical labels, max probability difference.

Each artifact's ``model.onnx`` is run with onnxruntime directly (as the endpoint runs it, fed the
contract's inputs) and compared with the scikit-learn model it stands for, on rows it was not
exported from where possible:

- trained: ``train`` on a mixed table (blanks, two text columns, an imbalanced class, text labels
  "NA", "001", "1", "None"; 600 rows) with each ``--model``, and on digits (all numeric, the matrix
  layout); the scikit-learn side is the same search refitted here, compared on the test rows;
- packaged: a ColumnTransformer pipeline saved with skops (compared on every reference row) and a
  random forest converted elsewhere (skl2onnx defaults: float32 input, ZipMap; compared with the
  original ONNX graph and, for information, with scikit-learn itself).

    python benchmarks/agreement.py [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import MODEL_FILE

LABELS = ("NA", "001", "1", "None")
HEADER = ["age", "region", "plan tier", "noise", "segment"]


def mixed_table(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for _ in range(n):
            k = int(rng.choice(4, p=(0.4, 0.3, 0.22, 0.08)))
            region = str(rng.choice(["EU", "US", "AS"]) if k != 1 else rng.choice(["EU", "NA"]))
            plan = (
                ["basic", "pro", "team", "basic"][k]
                if rng.random() < 0.8
                else str(rng.choice(["basic", "pro"]))
            )
            writer.writerow(
                [
                    "" if rng.random() < 0.1 else f"{rng.normal(30 + 10 * k, 4):.2f}",
                    "" if rng.random() < 0.05 else region,
                    plan,
                    f"{rng.normal():.3f}",
                    LABELS[k],
                ]
            )
    return path


def onnx_outputs(artifact: Path, features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and probabilities from the artifact's graph, fed the contract's inputs."""
    import onnxruntime as ort

    manifest = verify_artifact(artifact)
    session = ort.InferenceSession(str(artifact / MODEL_FILE), providers=["CPUExecutionProvider"])
    if manifest.features.layout == "matrix":
        feeds = {"input": np.asarray(features, dtype=np.float64)}
    else:
        feeds = {}
        for c in manifest.features.columns:
            values = np.asarray(features[c.name])
            feeds[str(c.input)] = (
                values.astype(np.float64).reshape(-1, 1)
                if c.kind == "numeric"
                else np.array(values, dtype=object).reshape(-1, 1)
            )
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return np.asarray(labels), np.asarray(probabilities)


def row(what: str, rows: int, same: np.ndarray, diff: float) -> dict[str, Any]:
    return {
        "model": what,
        "rows": rows,
        "identical_labels": float(np.mean(same)),
        "max_probability_diff": diff,
    }


def trained(work: Path) -> list[dict[str, Any]]:
    from orchestrator.training import datasets, models
    from orchestrator.training.pipeline import TrainOptions, train

    results = []
    table = mixed_table(work / "customers.csv")
    cases = [(str(table), "segment", m) for m in ("logreg", "random_forest", "hist_gradient_boosting")]
    cases.append(("digits", None, "logreg"))
    for spec, target, model in cases:
        result = train(TrainOptions(dataset=spec, target=target, model=model, out=work / "trained"))
        dataset = datasets.load_dataset(spec, target)
        split = datasets.split(dataset, test_size=0.25, seed=0, cv_folds=5)
        fitted = models.search(
            dataset.features(split.train),
            dataset.y[split.train],
            kinds=[c.kind for c in dataset.columns],
            names=dataset.feature_names,
            model=model,  # type: ignore[arg-type]
            strategy="multinomial",
            class_weight="none",
            seed=0,
            cv_folds=5,
        ).best_estimator_
        features = dataset.features(split.test)
        labels, probabilities = onnx_outputs(result.path, features)
        diff = float(np.max(np.abs(probabilities - fitted.predict_proba(features))))
        name = f"train {Path(spec).name} --model {model}"
        results.append(row(name, len(labels), labels == fitted.predict(features), diff))
    return results


def packaged(work: Path) -> list[dict[str, Any]]:
    import pandas as pd
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from orchestrator.training.packaging.package import PackageOptions, package

    results = []
    table = mixed_table(work / "reference.csv", seed=1)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    X = frame.drop(columns=["segment"])
    for name in ("age", "noise"):
        X[name] = pd.to_numeric(X[name].replace("", np.nan)).astype(np.float64)
    X = X.astype({"region": object, "plan tier": object})
    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    prepare = ColumnTransformer(
        [
            ("n", numbers, ["age", "noise"]),
            ("c", OneHotEncoder(handle_unknown="ignore"), ["region", "plan tier"]),
        ]
    )
    pipeline = Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=2000))])
    pipeline.fit(X, frame["segment"])
    sio.dump(pipeline, work / "churn.skops")
    skops_file = work / "churn.skops"
    options = PackageOptions(model=skops_file, reference=table, target="segment", out=work / "packaged")
    result = package(options)
    labels, probabilities = onnx_outputs(result.path, X)
    same = np.array(result.manifest.classes)[labels] == pipeline.predict(X)
    diff = float(np.max(np.abs(probabilities - pipeline.predict_proba(X))))
    results.append(row("package churn.skops (ColumnTransformer + LogisticRegression)", len(X), same, diff))

    import onnxruntime as ort

    Xw, yw = load_wine(return_X_y=True)
    kinds = np.array(["barolo", "grignolino", "barbera"])
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(Xw.astype(np.float32), kinds[yw])
    model = work / "wine.onnx"
    model.write_bytes(to_onnx(forest, Xw[:1].astype(np.float32)).SerializeToString())
    reference = work / "wine.parquet"
    pd.DataFrame(Xw, columns=[f"f{i}" for i in range(Xw.shape[1])]).to_parquet(reference)
    result = package(PackageOptions(model=model, reference=reference, out=work / "packaged"))
    labels, probabilities = onnx_outputs(result.path, Xw)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    original_labels, maps = session.run(None, {session.get_inputs()[0].name: Xw.astype(np.float32)})
    original = np.array([[m[k] for k in forest.classes_] for m in maps])
    served = np.array(result.manifest.classes)[labels]
    results.append(
        row(
            "package wine.onnx (float32 + ZipMap) vs the original graph",
            len(Xw),
            served == original_labels,
            float(np.max(np.abs(probabilities - original))),
        )
    )
    results.append(
        row(
            "package wine.onnx vs scikit-learn (the original graph's own float32 gap)",
            len(Xw),
            served == forest.predict(Xw.astype(np.float32)),
            float(np.max(np.abs(probabilities - forest.predict_proba(Xw.astype(np.float32))))),
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        results = trained(work) + packaged(work)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'model':<72} {'rows':>5} {'identical labels':>17} {'max |Δp|':>10}")
    for r in results:
        print(
            f"{r['model']:<72} {r['rows']:>5} {r['identical_labels']:>16.2%} "
            f"{r['max_probability_diff']:>10.2e}"
        )


if __name__ == "__main__":
    main()
