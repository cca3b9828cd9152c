"""Loading refuses anything that does not verify, and a refused reload keeps the old model serving."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.core.artifact.integrity import hash_file
from orchestrator.core.errors import ArtifactError
from orchestrator.training.pipeline import TrainResult
from serving.batching import MicroBatcher
from serving.model import load_verified
from serving.reload import LoadOutcome, ModelHolder
from serving.telemetry import Metrics


def rewrite_manifest(root: Path, **changes: object) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_a_verified_artifact_loads(digits_model: TrainResult) -> None:
    predictor = load_verified(digits_model.path)
    assert predictor.version == digits_model.manifest.version
    assert predictor.n_features == 64


def test_a_flipped_byte_is_refused_naming_the_file(artifact_copy: Path) -> None:
    path = artifact_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx sha256"):
        load_verified(artifact_copy)


def test_a_missing_file_is_refused(artifact_copy: Path) -> None:
    (artifact_copy / "confusion_matrix.png").unlink()
    with pytest.raises(ArtifactError, match=r"confusion_matrix\.png is missing"):
        load_verified(artifact_copy)


def test_a_manifest_path_may_not_escape_the_artifact(artifact_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    sha, size = hash_file(outside)
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    manifest["files"].append({"path": "../outside.bin", "sha256": sha, "size": size})
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    # Refused by the manifest's path grammar before any file is opened.
    with pytest.raises(ArtifactError, match=r"segment '\.\.' is not a plain file name"):
        load_verified(artifact_copy)


def test_a_model_that_does_not_reproduce_its_canary_is_refused(artifact_copy: Path) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    canary = manifest["canary"]
    canary["probabilities"][0][0] += 1e-3
    rewrite_manifest(artifact_copy, canary=canary)
    with pytest.raises(ArtifactError, match="canary probabilities differ"):
        load_verified(artifact_copy)


def test_a_manifest_that_disagrees_with_the_model_on_features_is_refused(artifact_copy: Path) -> None:
    # Consistent in itself (canary rows of 2 values), inconsistent with the model.
    canary = json.loads((artifact_copy / "manifest.json").read_text())["canary"]
    canary["instances"] = [row[:2] for row in canary["instances"]]
    rewrite_manifest(artifact_copy, features={"names": ["a", "b"], "count": 2}, canary=canary)
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    del manifest["reference_profile"]  # it describes 64 features: consistent in itself means without it
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="takes 64 features, manifest says 2"):
        load_verified(artifact_copy)


def test_a_refused_reload_keeps_the_previous_model(digits_model: TrainResult, artifact_copy: Path) -> None:
    sources = [digits_model.path, artifact_copy]
    holder = ModelHolder(loader=lambda _current: load_verified(sources[0]), metrics=Metrics())
    assert holder.load() is LoadOutcome.SERVING
    good = holder.current
    assert good is not None

    (artifact_copy / "model.onnx").write_bytes(b"not a model")
    sources[0] = artifact_copy
    assert holder.load() is LoadOutcome.FAILED
    assert holder.current is good, "the old model keeps serving"
    assert holder.last_error is not None
    assert "model.onnx" in holder.last_error


def test_concurrent_calls_in_one_tick_share_one_model_call(digits_model: TrainResult) -> None:
    predictor = load_verified(digits_model.path)
    rows = np.asarray(digits_model.manifest.canary.instances)
    batcher = MicroBatcher()

    async def fire() -> list[tuple[np.ndarray, np.ndarray]]:
        return await asyncio.gather(*(batcher.predict(predictor, rows[i : i + 1]) for i in range(len(rows))))

    results = asyncio.run(fire())
    assert batcher.calls == 1
    assert batcher.requests == len(rows)
    labels, probabilities = predictor.predict(rows)
    for i, (label, proba) in enumerate(results):
        assert label.tolist() == [labels[i]]
        np.testing.assert_allclose(proba, probabilities[i : i + 1], atol=1e-12)


def test_a_failing_batch_fails_every_request_in_it(digits_model: TrainResult) -> None:
    predictor = load_verified(digits_model.path)
    batcher = MicroBatcher()
    bad = np.zeros((1, 3))  # wrong width: ONNX Runtime raises for the whole concatenated batch

    async def fire() -> list[object]:
        return await asyncio.gather(
            batcher.predict(predictor, bad), batcher.predict(predictor, bad), return_exceptions=True
        )

    results = asyncio.run(fire())
    assert all(isinstance(r, Exception) for r in results)
