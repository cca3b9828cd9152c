"""Storage that is slow never stops an endpoint following LATEST."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrator.demo.emulators import MotoServer
from orchestrator.demo.processes import start_endpoint
from orchestrator.publish.sync import sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.publish.conftest import target
from tests.publish.slow_proxy import SlowProxy
from tests.publish.test_serve_from_cloud import wait_for


@pytest.mark.slow
def test_a_version_whose_objects_crawl_does_not_stop_the_next_one(
    moto_server: MotoServer, iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    """v2's model arrives one byte every half second (about 9 minutes): the reload gives up after its
    deadline (2 s here), says so, and v3, published meanwhile, is served."""
    t = target(moto_server, "aws")
    assert sync_artifact(iris_v1.path, [t])[0].ok
    v3 = train(TrainOptions(dataset="iris", seed=2, out=tmp_path / "v3"))
    with SlowProxy(moto_server.endpoint) as proxy:
        ep = start_endpoint(
            f"{t.storage.uri}/models/iris/LATEST",
            log_path=tmp_path / "endpoint.log",
            env={
                **moto_server.env,
                "AWS_ENDPOINT_URL": proxy.url,
                "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            },
            extra_args=["--reload-interval", "0.2", "--reload-timeout", "2"],
        )
        try:
            wait_for(f"{ep.url}/readyz", lambda r: r.get("version") == iris_v1.manifest.version)
            proxy.trickle([f"{iris_v2.manifest.version}/model.onnx"])
            assert sync_artifact(iris_v2.path, [t])[0].ok
            stalled = wait_for(
                f"{ep.url}/readyz", lambda r: "did not finish within 2 s" in (r.get("last_error") or "")
            )
            assert stalled["version"] == iris_v1.manifest.version, "the last good model keeps serving"
            assert sync_artifact(v3.path, [t])[0].ok
            ready = wait_for(
                f"{ep.url}/readyz", lambda r: r.get("version") == v3.manifest.version, timeout=30
            )
            assert ready["last_error"] is None
            assert 'mlorch_model_load_failures_total{reason="timeout"}' in httpx.get(f"{ep.url}/metrics").text
        finally:
            ep.stop()
