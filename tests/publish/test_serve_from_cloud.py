"""The endpoint loading from each cloud's bucket by URI, and following LATEST as it moves."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from orchestrator.demo.emulators import Emulator
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.publish.conftest import bucket_of, target


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest) -> tuple[str, Emulator]:
    fixture = {"aws": "moto_server", "gcp": "gcs_emulator", "azure": "azurite"}[request.param]
    return request.param, request.getfixturevalue(fixture)


def serve(t: Target, emulator: Emulator, tmp_path: Path, ref: str = "LATEST", *args: str) -> Endpoint:
    return start_endpoint(
        f"{t.storage.uri}/models/iris/{ref}",
        log_path=tmp_path / "endpoint.log",
        env={**emulator.env, "MODEL_CACHE_DIR": str(tmp_path / "cache")},
        extra_args=args,
    )


def wait_for(url: str, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    with httpx.Client(timeout=2) as c:
        while time.monotonic() < deadline:
            try:
                last = c.get(url).json()
                if predicate(last):
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"{url} never satisfied the condition; last answer: {last}")


def test_the_endpoint_loads_from_each_cloud(
    cloud: tuple[str, Emulator], iris_v1: TrainResult, tmp_path: Path
) -> None:
    name, emulator = cloud
    t = target(emulator, name)
    assert sync_artifact(iris_v1.path, [t])[0].ok
    for ref in ("LATEST", iris_v1.manifest.version):
        ep = serve(t, emulator, tmp_path, ref)
        try:
            ready = wait_for(f"{ep.url}/readyz", lambda r: r.get("ready") is True)
            assert ready["version"] == iris_v1.manifest.version
            assert ready["source"].startswith(t.storage.uri)
            body = httpx.post(
                f"{ep.url}/v1/predict", json={"instances": iris_v1.manifest.canary.instances}
            ).json()
            assert body["predictions"] == iris_v1.manifest.canary.labels
        finally:
            ep.stop()


def test_a_tampered_object_is_refused(
    cloud: tuple[str, Emulator], iris_v1: TrainResult, tmp_path: Path
) -> None:
    name, emulator = cloud
    t = target(emulator, name)
    sync_artifact(iris_v1.path, [t])
    key = f"models/iris/{iris_v1.manifest.version}/model.onnx"
    original = (iris_v1.path / "model.onnx").read_bytes()
    emulator.tamper(bucket_of(t), key, original[:-1] + bytes([original[-1] ^ 1]))
    ep = serve(t, emulator, tmp_path)
    try:
        state = wait_for(f"{ep.url}/readyz", lambda r: r.get("reason", "").startswith("model refused"))
        assert "model.onnx" in state["reason"]
        assert "sha256" in state["reason"]
        assert httpx.get(f"{ep.url}/readyz").status_code == 503
    finally:
        ep.stop()


def test_hot_swap_follows_latest_and_a_bad_version_is_refused_while_the_old_one_serves(
    moto_server, iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    t = target(moto_server, "aws")
    sync_artifact(iris_v1.path, [t])
    ep = serve(t, moto_server, tmp_path, "LATEST", "--reload-interval", "0.2")
    try:
        wait_for(f"{ep.url}/readyz", lambda r: r.get("version") == iris_v1.manifest.version)

        assert sync_artifact(iris_v2.path, [t])[0].ok
        wait_for(f"{ep.url}/readyz", lambda r: r.get("version") == iris_v2.manifest.version)

        v3 = train(TrainOptions(dataset="iris", seed=2, out=tmp_path / "v3"))
        assert sync_artifact(v3.path, [t])[0].ok
        # ...but its model is corrupted in the bucket before the endpoint fetched it.
        moto_server.tamper(bucket_of(t), f"models/iris/{v3.manifest.version}/model.onnx", b"\x00" * 10)
        state = wait_for(f"{ep.url}/readyz", lambda r: r.get("last_error") is not None)
        assert state["ready"] is True
        assert state["version"] == iris_v2.manifest.version, "the old model keeps serving"
        assert "model.onnx" in state["last_error"]
        answer = httpx.post(
            f"{ep.url}/v1/predict", json={"instances": iris_v2.manifest.canary.instances}
        ).json()
        assert answer["version"] == iris_v2.manifest.version
        metrics = httpx.get(f"{ep.url}/metrics").text
        assert f'mlorch_model_info{{model="iris",version="{iris_v2.manifest.version}"}} 1.0' in metrics
        assert "mlorch_model_load_failures_total 0.0" not in metrics
    finally:
        ep.stop()


def test_a_malformed_model_uri_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--model", "s3://bucket/not-a-model-path"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "models/NAME/(VERSION|LATEST)" in result.stderr
