"""Fixtures for the endpoint: a trained artifact and real `orchestrator serve` processes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainOptions, TrainResult, train

StartEndpoint = Callable[..., Endpoint]


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The digits model: 64 features, 10 classes, as in the benchmark and the demo."""
    return train(TrainOptions(dataset="digits", out=tmp_path_factory.mktemp("artifacts")))


@pytest.fixture
def artifact_copy(digits_model: TrainResult, tmp_path: Path) -> Path:
    """A private copy of the artifact that a test may tamper with."""
    copy = tmp_path / "artifact"
    shutil.copytree(digits_model.path, copy)
    return copy


@pytest.fixture(scope="module")
def endpoint(digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A real endpoint process on a loopback port, ready, with a 1 MiB body limit."""
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    ep = start_endpoint(str(digits_model.path), log_path=log, extra_args=["--max-body-mb", "1"])
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


@pytest.fixture
def serve_artifact(tmp_path: Path) -> Iterator[StartEndpoint]:
    """Start endpoints on any artifact directory (not waiting for ready); all stopped after the test."""
    started: list[Endpoint] = []

    def start(model: Path, *args: str) -> Endpoint:
        ep = start_endpoint(str(model), log_path=tmp_path / f"serve-{len(started)}.log", extra_args=args)
        started.append(ep)
        return ep

    yield start
    for ep in started:
        ep.stop()
