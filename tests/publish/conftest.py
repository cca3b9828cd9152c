"""Fixtures for publishing: small real artifacts and one fresh bucket per cloud emulator."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.demo.emulators import Azurite, Emulator, GcsEmulator, MotoServer
from orchestrator.publish.sync import Target
from orchestrator.training.pipeline import TrainOptions, TrainResult, train


@pytest.fixture(scope="session")
def iris_v1(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(TrainOptions(dataset="iris", out=tmp_path_factory.mktemp("v1")))


@pytest.fixture(scope="session")
def iris_v2(iris_v1: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A later, different version of the same model (another seed; created after v1)."""
    return train(TrainOptions(dataset="iris", seed=1, out=tmp_path_factory.mktemp("v2")))


def target(emulator: Emulator, name: str) -> Target:
    bucket = emulator.create_bucket()
    return Target(
        name=name, storage=open_storage(emulator.uri(bucket), settings=emulator.settings, retry=NO_WAIT_RETRY)
    )


@pytest.fixture
def three_clouds(moto_server: MotoServer, gcs_emulator: GcsEmulator, azurite: Azurite) -> list[Target]:
    return [target(moto_server, "aws"), target(gcs_emulator, "gcp"), target(azurite, "azure")]


def bucket_of(t: Target) -> str:
    return t.storage.uri.split("://", 1)[1].split("/", 1)[0]


def rewritten(artifact: Path, dest: Path, path: str, data: bytes) -> Path:
    """A copy of ``artifact`` with one file's bytes replaced and the manifest updated to match."""
    shutil.copytree(artifact, dest)
    (dest / path).write_bytes(data)
    manifest = json.loads((dest / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == path:
            entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


def sign_as_anyone(root: Path, key: Path) -> None:
    """Sign whatever ``root`` holds with model-signing itself, as someone with a key but not our
    tools would (``sign_artifact`` refuses hostile manifests)."""
    from model_signing import hashing, signing

    ignore = hashing.Config().set_ignored_paths(paths=["model.sig"])
    signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(ignore).sign(
        root, root / "model.sig"
    )
