"""A Docker engine, the real image built from serving/Dockerfile, and loopback registries.

On a laptop without a Docker engine these tests skip, saying so; in CI (``CI=true``) a missing
engine is a failure, because `.ci/run` starts one.
"""

from __future__ import annotations

import gc
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.demo.processes import ManagedProcess, free_port, wait_http

BASE_IMAGE = "python:3.11-slim-bookworm"  # serving/Dockerfile's FROM


def _engine():
    import docker

    # docker-py leaves the socket of a failed version probe to the garbage collector: let it go
    # here, quietly, rather than as an unraisable ResourceWarning at the end of the session.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env()
            client.ping()
            error = None
        except docker.errors.DockerException as exc:
            error = str(exc)
        gc.collect()
    if error is not None:
        message = f"no Docker engine reachable ({error}); start dockerd as .ci/run does for the image tests"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return client


@pytest.fixture(scope="session")
def docker_client():
    client = _engine()
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        pytest.fail(
            f"base image {BASE_IMAGE} is not in the engine: no registry is reachable here, so .ci/run "
            "makes a stand-in with debootstrap and tags it (see scripts/base-image.sh)",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_image(docker_client):
    from orchestrator.image import build

    return build("ml-endpoint:test")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A Docker registry (Debian's docker-registry) on a loopback port; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)", pytrace=False)
    port = free_port()
    config = tmp_path / f"registry-{port}.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / f'registry-{port}'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n"
    )
    process = ManagedProcess(
        "docker-registry", [binary, "serve", str(config)], log_path=tmp_path / "reg.log"
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", timeout=20, process=process)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()
