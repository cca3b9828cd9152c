"""The real endpoint image: built from serving/Dockerfile, run by a Docker engine, pushed by digest."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.demo.processes import free_port, wait_http
from orchestrator.image import ImageError, push
from orchestrator.training.pipeline import TrainOptions, train


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory):
    return train(TrainOptions(dataset="iris", out=tmp_path_factory.mktemp("image-model")))


def test_the_image_is_slim_non_root_and_labelled(built_image, docker_client) -> None:
    config = docker_client.images.get(built_image.tag).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "serving"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Labels"]["org.opencontainers.image.version"]
    assert config["Labels"]["org.opencontainers.image.source"]
    probe = "import importlib.util as u; print(u.find_spec('sklearn'))"
    pip = docker_client.containers.run(
        built_image.tag, entrypoint=["python", "-c", probe], remove=True, network_mode="host"
    )
    assert pip.strip() == b"None", "no training libraries in the serving image"


def test_the_container_serves_verified_predictions_as_a_non_root_user(
    built_image, docker_client, artifact
) -> None:
    port = free_port()
    container = docker_client.containers.run(
        built_image.tag,
        detach=True,
        network_mode="host",
        environment={"MODEL_URI": "/model", "PORT": str(port), "HOST": "127.0.0.1"},
        volumes={str(artifact.path): {"bind": "/model", "mode": "ro"}},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["version"] == artifact.manifest.version
        canary = artifact.manifest.canary
        body = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": canary.instances}).json()
        assert body["predictions"] == canary.labels
        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid == "10001"
        processes = container.top()["Processes"]
        assert all(row[0] != "root" and row[0] != "0" for row in processes), processes
    finally:
        container.remove(force=True)


def test_one_digest_in_every_registry(built_image, registry, tmp_path_factory) -> None:
    # Three registries stand in for ECR, Artifact Registry and ACR: the same repository path on
    # three loopback servers would be three clouds; here one server with three repositories.
    registries = {cloud: f"{registry}/{cloud}/ml-endpoint" for cloud in ("aws", "gcp", "azure")}
    result = push(built_image.tag, registries, tag="test")
    assert result.digest is not None
    assert result.digest.startswith("sha256:")
    assert set(result.digests.values()) == {result.digest}
    assert result.references["gcp"] == f"{registry}/gcp/ml-endpoint@{result.digest}"
    manifest = httpx.get(
        f"http://{registry}/v2/aws/ml-endpoint/manifests/test",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert manifest.headers["Docker-Content-Digest"] == result.digest


def test_a_registry_reporting_another_digest_is_an_error(built_image, registry, monkeypatch) -> None:
    import orchestrator.image as image

    digests = iter(["sha256:" + "a" * 64, "sha256:" + "b" * 64])
    monkeypatch.setattr(image, "_push_one", lambda client, cloud, repo, tag: next(digests))
    with pytest.raises(ImageError, match="different digests"):
        push(built_image.tag, {"aws": f"{registry}/a/x", "gcp": f"{registry}/g/x"}, tag="test")
