"""A model trained outside the project reaches the endpoint: packaged, synced to an emulated
bucket, served from it, and answering exactly as the original model."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from skl2onnx import to_onnx
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from orchestrator.demo.processes import start_endpoint
from orchestrator.publish.sync import sync_artifact
from orchestrator.training.packaging.package import PackageOptions, package
from tests.publish.conftest import target

pytestmark = pytest.mark.emulator
KINDS = np.array(["barolo", "grignolino", "barbera"])


def ready(url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                last = client.get(f"{url}/readyz").json()
                if last.get("ready") is True:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"the endpoint never became ready; last answer: {last}")


def original_onnx(model_path, X):
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels, maps = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    return labels.tolist(), maps


@pytest.mark.parametrize("source", ["onnx", "skops"])
def test_a_packaged_model_is_served_from_a_bucket_and_answers_as_the_original(moto_server, tmp_path, source):
    X, y = load_wine(return_X_y=True)
    reference = tmp_path / "wine.parquet"
    pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).to_parquet(reference)
    if source == "onnx":  # converted elsewhere: skl2onnx's defaults (float32 input, ZipMap)
        forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(X.astype(np.float32), KINDS[y])
        model = tmp_path / "wine.onnx"
        model.write_bytes(to_onnx(forest, X[:1].astype(np.float32)).SerializeToString())
        expected, maps = original_onnx(model, X)
        expected_proba = np.array([[row[k] for k in forest.classes_] for row in maps])
    else:  # a scikit-learn pipeline fitted on a matrix, saved with skops
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, KINDS[y])
        model = tmp_path / "wine.skops"
        sio.dump(pipeline, model)
        expected, expected_proba = pipeline.predict(X).tolist(), pipeline.predict_proba(X)

    result = package(PackageOptions(model=model, reference=reference, out=tmp_path / "out"))
    bucket = target(moto_server, "aws")
    assert sync_artifact(result.path, [bucket])[0].ok
    endpoint = start_endpoint(
        f"{bucket.storage.uri}/models/wine/LATEST",
        log_path=tmp_path / "endpoint.log",
        env={**moto_server.env, "MODEL_CACHE_DIR": str(tmp_path / "cache")},
    )
    try:
        state = ready(endpoint.url)  # the endpoint verified it and replayed its canary
        answer = httpx.post(f"{endpoint.url}/v1/predict", json={"instances": X.tolist()}, timeout=30).json()
    finally:
        endpoint.stop()

    assert state["version"] == result.manifest.version
    assert answer["predictions"] == expected  # every row
    assert np.max(np.abs(np.array(answer["probabilities"]) - expected_proba)) <= 1e-6
