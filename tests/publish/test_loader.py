"""The endpoint's loader against a real bucket: its cache, and failures that are not the content's."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.artifact.signing import (
    SignatureError,
    SignatureVerifier,
    generate_key_pair,
    load_public_key,
    sign_artifact,
)
from orchestrator.core.errors import ArtifactError
from orchestrator.demo.emulators import MotoServer
from orchestrator.publish.sync import sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from serving.cache import ModelCache
from serving.loader import make_loader
from tests.publish.conftest import target


@pytest.fixture
def moto_env(moto_server: MotoServer) -> Iterator[None]:
    """The loader opens its storage from the standard variables, as the endpoint does."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in moto_server.env.items():
            mp.setenv(name, value)
        yield


def test_the_cache_keeps_only_the_versions_in_use(
    moto_server: MotoServer, moto_env: None, iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    """Every version ever loaded stayed in the cache: on Cloud Run /tmp is memory, so a long-lived
    endpoint following frequent publications grew until it was killed. The cache keeps the version
    serving and the one it replaced."""
    v3 = train(TrainOptions(dataset="iris", seed=2, out=tmp_path / "v3"))
    t = target(moto_server, "aws")
    cache = tmp_path / "cache"
    loader = make_loader(f"{t.storage.uri}/models/iris/LATEST", cache_dir=cache)
    current = None
    for result in (iris_v1, iris_v2, v3):
        assert sync_artifact(result.path, [t])[0].ok
        current = loader(current)
        assert current.version == result.manifest.version
    stale = cache / "iris" / ".old-0123abcd"
    stale.mkdir()  # a download a crashed process left behind: kept until it is a day old
    current = loader(current)
    assert sorted(p.name for p in (cache / "iris").iterdir()) == sorted(
        [".old-0123abcd", iris_v2.manifest.version, v3.manifest.version]
    )


@pytest.mark.parametrize(("length", "accepted"), [(200, True), (201, False)])
def test_entry_names_fit_the_cache_with_room_for_a_download(
    moto_server: MotoServer, moto_env: None, iris_v1: TrainResult, tmp_path: Path, length: int, accepted: bool
) -> None:
    """A 250-character entry failed while downloading, with a local staging path as the error: the
    download writes a temporary name 15 characters longer, past the file system's 255. Entries are
    at most 200 characters, refused by the manifest's grammar beyond."""
    artifact = tmp_path / "artifact"
    shutil.copytree(iris_v1.path, artifact)
    name = "a" * length
    (artifact / name).write_bytes(b"x")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"].append({"path": name, "sha256": hashlib.sha256(b"x").hexdigest(), "size": 1})
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    t = target(moto_server, "aws")
    for path in sorted(artifact.iterdir()):
        t.storage.put(
            f"models/iris/{iris_v1.manifest.version}/{path.name}",
            path,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    loader = make_loader(
        f"{t.storage.uri}/models/iris/{iris_v1.manifest.version}", cache_dir=tmp_path / "cache"
    )
    if accepted:
        assert loader(None).version == iris_v1.manifest.version
    else:
        with pytest.raises(ArtifactError, match="is not a plain file name"):
            loader(None)


def test_a_local_failure_is_not_remembered_as_a_refusal(
    moto_server: MotoServer, moto_env: None, iris_v1: TrainResult, tmp_path: Path
) -> None:
    """The cache directory unusable (disk full, a file where a directory should be, another endpoint
    installing the same version): the environment's fault, not the content's. The version is tried
    again at the next reload, without waiting for LATEST to change."""
    t = target(moto_server, "aws")
    assert sync_artifact(iris_v1.path, [t])[0].ok
    cache = ModelCache(tmp_path / "cache").root
    (cache / "iris").write_text("not a directory")
    loader = make_loader(f"{t.storage.uri}/models/iris/LATEST", cache_dir=cache)
    with pytest.raises(OSError) as caught:
        loader(None)
    message = str(caught.value)  # the bucket object and the cache, never a staging directory
    assert message.startswith(f"{t.storage.uri}/models/iris/{iris_v1.manifest.version}"), message
    assert f"model cache {cache}" in message
    (cache / "iris").unlink()
    assert loader(None).version == iris_v1.manifest.version


@pytest.mark.parametrize("signature", ["theirs", "none", "another version's"])
def test_an_unsigned_version_is_refused_before_its_files_are_downloaded(
    moto_server: MotoServer,
    moto_env: None,
    iris_v1: TrainResult,
    iris_v2: TrainResult,
    tmp_path: Path,
    signature: str,
) -> None:
    """Whoever writes the bucket without the key could list a model of gigabytes, honestly hashed:
    the endpoint downloaded it all (filling the disk, or on Cloud Run the memory that /tmp is)
    before the signature refused it. The signature is checked first, from two small objects."""
    ours = generate_key_pair(tmp_path / "keys", "ours")
    theirs = generate_key_pair(tmp_path / "keys", "theirs")
    verifier = SignatureVerifier(load_public_key(str(ours[1]), where="test"))
    t = target(moto_server, "aws")
    good = tmp_path / "good"
    shutil.copytree(iris_v1.path, good)
    sign_artifact(good, ours[0])
    assert sync_artifact(good, [t], verifier=verifier)[0].ok

    hostile = tmp_path / "hostile"
    shutil.copytree(iris_v2.path, hostile)
    big = b"\0" * (8 * 1024 * 1024)  # the model a writer without the key lists (a gigabyte in earnest)
    (hostile / "model.onnx").write_bytes(big)
    manifest = json.loads((hostile / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "model.onnx":
            entry["sha256"], entry["size"] = hashlib.sha256(big).hexdigest(), len(big)
    (hostile / "manifest.json").write_text(json.dumps(manifest))
    if signature == "theirs":
        sign_artifact(hostile, theirs[0])
    elif signature == "another version's":
        shutil.copy(good / "model.sig", hostile / "model.sig")  # made by our key, for other bytes
    assert sync_artifact(hostile, [t], force=True)[0].ok  # the writer moves LATEST to it

    loader = make_loader(
        f"{t.storage.uri}/models/iris/LATEST", cache_dir=tmp_path / "cache", verifier=verifier
    )
    storage = loader.storage  # type: ignore[attr-defined]
    before = dict(storage.stats)
    with pytest.raises(SignatureError, match=r"unsigned|does not verify"):
        loader(None)
    gets = storage.stats["get"] - before.get("get", 0)
    assert gets <= 3, f"{gets} objects read: the pointer, the manifest and the signature at most"


def test_a_signed_version_loads_after_the_early_check(
    moto_server: MotoServer, moto_env: None, iris_v1: TrainResult, tmp_path: Path
) -> None:
    ours = generate_key_pair(tmp_path / "keys", "ours")
    verifier = SignatureVerifier(load_public_key(str(ours[1]), where="test"))
    good = tmp_path / "good"
    shutil.copytree(iris_v1.path, good)
    sign_artifact(good, ours[0])
    t = target(moto_server, "aws")
    assert sync_artifact(good, [t], verifier=verifier)[0].ok
    loader = make_loader(
        f"{t.storage.uri}/models/iris/LATEST", cache_dir=tmp_path / "cache", verifier=verifier
    )
    assert loader(None).version == iris_v1.manifest.version
