"""The expected version is not chosen by one bucket's writer: the version a majority of the buckets'
LATEST pointers name wins over a single higher sequence, and with a public key configured a
pointer counts only if its version is signed by that key in that bucket (and the canary comes
from a verified manifest only). Local buckets, real artifacts, real signatures.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.control.config import Config, load_config
from orchestrator.control.health.expect import expected_model
from orchestrator.core.artifact.signing import generate_key_pair, sign_artifact
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import Storage, open_storage
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainResult

CLOUDS = ("aws", "gcp", "azure")


@pytest.fixture
def world(tmp_path: Path, models: dict[str, TrainResult]) -> dict[str, Path]:
    """Copies of v1 and v2 (so they can be signed), three empty buckets, two key pairs."""
    paths: dict[str, Path] = {}
    for version, result in models.items():
        paths[version] = Path(shutil.copytree(result.path, tmp_path / "artifacts" / version))
    for cloud in CLOUDS:
        (tmp_path / "buckets" / cloud).mkdir(parents=True)
    paths["key"], paths["pub"] = generate_key_pair(tmp_path / "keys", "ours")
    paths["other_key"], paths["other_pub"] = generate_key_pair(tmp_path / "keys", "theirs")
    return paths


def bucket(tmp_path: Path, cloud: str) -> Storage:
    return open_storage(f"file://{tmp_path / 'buckets' / cloud}")


def publish(tmp_path: Path, artifact: Path, *clouds: str) -> None:
    results = sync_artifact(artifact, [Target(c, bucket(tmp_path, c)) for c in clouds])
    assert all(r.ok for r in results), results


def config(tmp_path: Path, public_key: Path | None = None) -> Config:
    data: dict[str, object] = {
        "model": {"name": "iris"},
        "clouds": {
            c: {"endpoint": f"https://{c}.example.net", "storage": f"file://{tmp_path / 'buckets' / c}"}
            for c in CLOUDS
        },
    }
    if public_key is not None:
        data["signing"] = {"public_key": str(public_key)}
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def expected(tmp_path: Path, public_key: Path | None = None) -> str | None:
    buckets = {c: bucket(tmp_path, c) for c in CLOUDS}
    return expected_model(config(tmp_path, public_key), buckets, clock=time.time).version


def version_of(artifact: Path) -> str:
    import json

    return str(json.loads((artifact / "manifest.json").read_text())["version"])


def test_the_version_most_buckets_name_wins_over_one_higher_sequence(
    tmp_path: Path, world: dict[str, Path]
) -> None:
    v1, v2 = version_of(world["v1"]), version_of(world["v2"])
    publish(tmp_path, world["v1"], *CLOUDS)
    publish(tmp_path, world["v2"], "aws")  # one bucket's writer moves its LATEST alone
    assert expected(tmp_path) == v1
    publish(tmp_path, world["v2"], "gcp")  # a rollout reaching a majority of the buckets
    assert expected(tmp_path) == v2


def test_without_a_majority_the_newest_pointer_decides(tmp_path: Path, world: dict[str, Path]) -> None:
    publish(tmp_path, world["v1"], "aws", "gcp")
    publish(tmp_path, world["v2"], "gcp")  # gcp's pointer: sequence 2
    assert expected(tmp_path) == version_of(world["v2"])  # one against one: the higher sequence


def test_an_unsigned_version_is_ignored_even_in_a_majority(tmp_path: Path, world: dict[str, Path]) -> None:
    sign_artifact(world["v1"], world["key"])
    publish(tmp_path, world["v1"], *CLOUDS)
    publish(tmp_path, world["v2"], "aws", "gcp")  # unsigned, in two buckets of three
    assert expected(tmp_path) == version_of(world["v2"])  # no key configured: the majority
    assert expected(tmp_path, world["pub"]) == version_of(world["v1"])  # with the key: only signed


def test_a_version_signed_by_another_key_is_ignored(tmp_path: Path, world: dict[str, Path]) -> None:
    sign_artifact(world["v1"], world["key"])
    sign_artifact(world["v2"], world["other_key"])
    publish(tmp_path, world["v1"], *CLOUDS)
    publish(tmp_path, world["v2"], "aws", "gcp")  # a majority of pointers, signed by another key
    assert expected(tmp_path, world["pub"]) == version_of(world["v1"])
    assert expected(tmp_path, world["other_pub"]) == version_of(world["v2"])


def test_the_key_is_read_from_the_endpoints_variable(
    tmp_path: Path, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_artifact(world["v1"], world["key"])
    publish(tmp_path, world["v1"], *CLOUDS)
    publish(tmp_path, world["v2"], "aws", "gcp")
    monkeypatch.setenv("MODEL_SIGNING_PUBLIC_KEY", str(world["pub"]))
    assert expected(tmp_path) == version_of(world["v1"])


def test_nothing_signed_is_a_clear_error(tmp_path: Path, world: dict[str, Path]) -> None:
    publish(tmp_path, world["v1"], *CLOUDS)
    with pytest.raises(
        ConfigError, match=r"no bucket's LATEST names a version signed by the configured public key.*unsigned"
    ):
        expected(tmp_path, world["pub"])


def test_a_key_that_is_not_a_key_names_the_setting(tmp_path: Path, world: dict[str, Path]) -> None:
    publish(tmp_path, world["v1"], *CLOUDS)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match=r"signing\.public_key: not a PEM public key"):
        expected(tmp_path, junk)
