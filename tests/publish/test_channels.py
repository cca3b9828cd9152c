"""`promote` and `rollback` from the buckets alone, on the three emulated clouds.

Every version is published with ``sync`` from a copy of its artifact that is then deleted: what the
commands read is only what the buckets hold. Kinds of fault covered: a version missing, incomplete
(no manifest), tampered (an object that differs from its manifest) or unsigned in one cloud; a
version the pointer moved off before (promote); nothing to roll back to, or clouds that disagree
(rollback); names outside the grammar. Each refusal moves nothing anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.artifact.layout import parse_model_uri, read_pointer, version_prefix
from orchestrator.core.errors import ConfigError
from orchestrator.demo.emulators import Azurite, GcsEmulator, MotoServer
from orchestrator.publish.channels import (
    EXIT_REFUSED,
    TargetUnreachable,
    VersionRefused,
    move_channel,
    rollback_version,
)
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainResult
from tests.publish.conftest import target


def _publish(result: TrainResult, targets: list[Target], tmp: Path) -> str:
    """Sync a copy of the artifact, then delete the copy: no local artifact remains."""
    copy = tmp / f"copy-{result.manifest.version}"
    shutil.copytree(result.path, copy)
    assert all(r.ok for r in sync_artifact(copy, targets))
    shutil.rmtree(copy)
    return result.manifest.version


def _channel(targets: list[Target], channel: str = "STABLE") -> dict[str, str | None]:
    out = {}
    for t in targets:
        pointer, _ = read_pointer(t.storage, "iris", channel)
        out[t.name] = pointer.version if pointer else None
    return out


@pytest.fixture
def published(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> tuple[list[Target], str, str]:
    v1 = _publish(iris_v1, three_clouds, tmp_path)
    v2 = _publish(iris_v2, three_clouds, tmp_path)
    return three_clouds, v1, v2


def test_promote_then_rollback_moves_every_cloud(published: tuple[list[Target], str, str]) -> None:
    targets, v1, v2 = published
    results = move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    assert [r.pointer for r in results] == ["moved"] * 3
    assert _channel(targets) == {"aws": v1, "gcp": v1, "azure": v1}
    move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    assert _channel(targets) == {"aws": v2, "gcp": v2, "azure": v2}
    # LATEST is another channel: promote did not touch it.
    assert {read_pointer(t.storage, "iris")[0].version for t in targets} == {v2}  # type: ignore[union-attr]
    assert rollback_version(targets, "iris", channel="STABLE") == v1
    results = move_channel(targets, "iris", v1, channel="STABLE", moved_by="rollback", allow_back=True)
    assert [r.pointer for r in results] == ["moved"] * 3
    for t in targets:
        pointer, _ = read_pointer(t.storage, "iris", "STABLE")
        assert pointer is not None
        assert (pointer.version, pointer.moved_by, pointer.sequence) == (v1, "rollback", 3)
        assert pointer.history == (v2,)  # never its current version
    # A re-run changes nothing (an interrupted run is finished by running it again).
    again = move_channel(targets, "iris", v1, channel="STABLE", moved_by="rollback", allow_back=True)
    assert [r.pointer for r in again] == ["unchanged"] * 3


def test_promote_refuses_a_version_moved_off_before(published: tuple[list[Target], str, str]) -> None:
    targets, v1, v2 = published
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    with pytest.raises(VersionRefused, match=rf"aws: .*STABLE moved off {v1} before.*rollback --to {v1}"):
        move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    assert _channel(targets) == {"aws": v2, "gcp": v2, "azure": v2}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
@pytest.mark.parametrize("fault", ["missing", "incomplete", "tampered"])
def test_refused_when_not_complete_and_verified_in_one_cloud(
    published: tuple[list[Target], str, str], cloud: str, fault: str
) -> None:
    targets, v1, v2 = published
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    broken = next(t for t in targets if t.name == cloud)
    prefix = version_prefix("iris", v2)
    if fault == "missing":
        for info in list(broken.storage.list(prefix)):
            broken.storage.delete(info.key)
    elif fault == "incomplete":
        broken.storage.delete(prefix + "manifest.json")
    else:
        victim = next(i.key for i in broken.storage.list(prefix) if i.key.endswith(".onnx"))
        data = b"not the model"
        broken.storage.put(victim, data, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(VersionRefused, match=rf"iris {v2} is not complete and verified.*{cloud}: ") as err:
        move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    assert err.value.exit_code == EXIT_REFUSED
    assert "nothing moved" in str(err.value)
    assert _channel(targets) == {"aws": v1, "gcp": v1, "azure": v1}  # nothing moved anywhere


def test_rollback_refuses_a_version_not_verified_everywhere(
    published: tuple[list[Target], str, str],
) -> None:
    targets, v1, v2 = published
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    targets[2].storage.delete(version_prefix("iris", v1) + "manifest.json")
    with pytest.raises(VersionRefused, match=rf"azure: models/iris/{v1}/manifest.json: missing"):
        move_channel(targets, "iris", v1, channel="STABLE", moved_by="rollback", allow_back=True)
    assert _channel(targets) == {"aws": v2, "gcp": v2, "azure": v2}


def test_rollback_needs_a_previous_version_the_clouds_agree_on(
    published: tuple[list[Target], str, str],
) -> None:
    targets, v1, v2 = published
    with pytest.raises(ConfigError, match=r"aws: .*models/iris/STABLE does not exist"):
        rollback_version(targets, "iris", channel="STABLE")
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    with pytest.raises(ConfigError, match=rf"records no previous version \(it names {v1}\); pass --to"):
        rollback_version(targets, "iris", channel="STABLE")
    move_channel(targets[:1], "iris", v2, channel="STABLE", moved_by="promote")
    with pytest.raises(ConfigError, match=rf"disagree \(aws: {v2} \(before: {v1}\).*pass --to VERSION"):
        rollback_version(targets, "iris", channel="STABLE")


def test_channel_grammar() -> None:
    assert parse_model_uri("s3://b/models/iris/STABLE").follows_latest
    assert parse_model_uri("s3://b/models/iris/LATEST").follows_latest
    assert not parse_model_uri("s3://b/models/iris/stable").follows_latest  # a version
    with pytest.raises(ConfigError):
        parse_model_uri("s3://b/models/iris/Stable")


# The command as an operator runs it: exit codes and one-line errors.


@pytest.fixture
def cli(
    tmp_path: Path, moto_server: MotoServer, gcs_emulator: GcsEmulator, azurite: Azurite
) -> tuple[Path, list[Target], dict[str, str]]:
    clouds = {
        "aws": (moto_server, moto_server.create_bucket()),
        "gcp": (gcs_emulator, gcs_emulator.create_bucket()),
        "azure": (azurite, azurite.create_bucket()),
    }
    config = {
        "model": {"name": "iris", "channel": "STABLE"},
        "clouds": {
            name: {
                "storage": em.uri(bucket),
                **({"storage_settings": em.settings} if name != "azure" else {}),
            }
            for name, (em, bucket) in clouds.items()
        },
    }
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    from orchestrator.core.storage import NO_WAIT_RETRY, open_storage

    targets = [
        Target(name, open_storage(em.uri(bucket), settings=em.settings, retry=NO_WAIT_RETRY))
        for name, (em, bucket) in clouds.items()
    ]
    return path, targets, {**os.environ, **azurite.env}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_promote_and_rollback(
    cli: tuple[Path, list[Target], dict[str, str]], iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    config, targets, env = cli
    v1 = _publish(iris_v1, targets, tmp_path)
    v2 = _publish(iris_v2, targets, tmp_path)
    done = _run(env, "promote", v1, "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert {t: r["version"] for t, r in json.loads(done.stdout)["targets"].items()} == dict.fromkeys(
        ("aws", "gcp", "azure"), v1
    )
    assert _run(env, "promote", v2, "--config", str(config)).returncode == 0
    back = _run(env, "rollback", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert f"aws: STABLE moved → {v1} (was {v2})" in back.stdout
    assert _channel(targets) == dict.fromkeys(("aws", "gcp", "azure"), v1)
    forward = _run(env, "rollback", "--to", v2, "--config", str(config))
    assert forward.returncode == 0, forward.stderr

    refused = _run(env, "promote", v1, "--config", str(config))
    assert refused.returncode == EXIT_REFUSED
    assert refused.stderr.count("\n") == 1
    assert "rollback --to" in refused.stderr
    unknown = _run(env, "promote", "v-never", "--config", str(config))
    assert unknown.returncode == EXIT_REFUSED
    assert "aws: models/iris/v-never/manifest.json: missing" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    for args in (("promote", "V1"), ("rollback", "--to", "../v1"), ("promote", v1, "--channel", "stable")):
        bad = _run(env, *args, "--config", str(config))
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.startswith("error: ")
        assert bad.stderr.count("\n") == 1
    assert _channel(targets) == dict.fromkeys(("aws", "gcp", "azure"), v2)


def test_direct_buckets_need_no_configuration(
    moto_server: MotoServer, iris_v1: TrainResult, tmp_path: Path
) -> None:
    one = target(moto_server, "aws")
    v1 = _publish(iris_v1, [one], tmp_path)
    env = {**{k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_CONFIG"}, **moto_server.env}
    done = _run(
        env, "promote", v1, "--model", "iris", "--bucket", one.storage.uri, "--channel", "CANARY", "--json"
    )
    assert done.returncode == 0, done.stderr
    pointer, _ = read_pointer(one.storage, "iris", "CANARY")
    assert pointer is not None
    assert (pointer.version, pointer.moved_by) == (v1, "promote")


def test_sync_can_move_another_channel_than_latest(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    assert all(r.ok for r in sync_artifact(iris_v1.path, three_clouds))
    results = sync_artifact(iris_v2.path, three_clouds, channel="CANDIDATE")
    assert [r.pointer for r in results] == ["moved"] * 3
    v1, v2 = iris_v1.manifest.version, iris_v2.manifest.version
    assert _channel(three_clouds, "CANDIDATE") == dict.fromkeys(("aws", "gcp", "azure"), v2)
    assert _channel(three_clouds, "LATEST") == dict.fromkeys(("aws", "gcp", "azure"), v1)  # untouched
    bad = sync_artifact(iris_v2.path, three_clouds[:1], channel="candidate")[0]
    assert not bad.ok
    assert "channel 'candidate' is not valid" in (bad.error or "")


def test_with_a_public_key_an_unsigned_or_foreign_signed_version_is_refused(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    from orchestrator.core.artifact.signing import (
        SignatureVerifier,
        generate_key_pair,
        load_public_key,
        sign_artifact,
    )

    ours, ours_pub = generate_key_pair(tmp_path / "ours")
    theirs, _ = generate_key_pair(tmp_path / "theirs")
    verifier = SignatureVerifier(load_public_key(str(ours_pub), where="test"))
    signed = tmp_path / "signed" / iris_v1.manifest.version
    shutil.copytree(iris_v1.path, signed)
    sign_artifact(signed, ours)
    foreign = tmp_path / "foreign" / iris_v2.manifest.version
    shutil.copytree(iris_v2.path, foreign)
    sign_artifact(foreign, theirs)
    assert all(r.ok for r in sync_artifact(signed, three_clouds))
    assert all(r.ok for r in sync_artifact(foreign, three_clouds))
    v1, v2 = iris_v1.manifest.version, iris_v2.manifest.version
    moved = move_channel(three_clouds, "iris", v1, channel="STABLE", moved_by="promote", verifier=verifier)
    assert [r.pointer for r in moved] == ["moved"] * 3
    with pytest.raises(VersionRefused, match=rf"iris {v2} is not complete and verified.*model.sig"):
        move_channel(three_clouds, "iris", v2, channel="STABLE", moved_by="promote", verifier=verifier)
    assert _channel(three_clouds) == dict.fromkeys(("aws", "gcp", "azure"), v1)


class _RacedBucket:
    """A bucket where another writer moves the pointer to ``theirs`` just before this writer's
    first conditional write (which then loses)."""

    def __init__(self, target: Target, theirs: str) -> None:
        self._target, self._theirs, self._raced = target, theirs, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target.storage, name)

    def put_if(self, key: str, data: bytes, *, token: Any) -> Any:
        if not self._raced:
            self._raced = True
            move_channel([self._target], "iris", self._theirs, channel="STABLE", moved_by="promote")
        return self._target.storage.put_if(key, data, token=token)


def test_a_lost_write_whose_pointer_now_names_another_version_is_a_conflict_not_overwritten(
    published: tuple[list[Target], str, str],
) -> None:
    every, v1, v2 = published
    # S3 and Azure only: the GCS emulator does not enforce a write's precondition (its documented gap).
    targets = [t for t in every if t.name != "gcp"]
    raced = [Target(t.name, _RacedBucket(t, v1)) for t in targets]  # type: ignore[arg-type]
    results = move_channel(raced, "iris", v2, channel="STABLE", moved_by="promote")
    assert [r.pointer for r in results] == ["failed"] * 2
    assert all(f"moved from None to {v1} by another writer" in (r.error or "") for r in results)
    assert _channel(targets) == {"aws": v1, "azure": v1}  # theirs stands
    again = move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    assert [r.pointer for r in again] == ["moved"] * 2


# Checking and rolling back from the buckets alone, whatever else they hold. Kinds: a corrupt LATEST
# (a version named explicitly is checked without it), an unreachable cloud (not "incomplete"), a
# rollback right after a rollback (refused, never re-deploying the version rolled back), a rollback
# interrupted half way (a re-run finishes it), a pointer's history holding its current version.


def test_a_corrupt_latest_does_not_block_moving_another_channel(
    published: tuple[list[Target], str, str],
) -> None:
    targets, v1, _ = published
    targets[2].storage.put(
        "models/iris/LATEST", b"garbage\n", sha256=hashlib.sha256(b"garbage\n").hexdigest()
    )
    results = move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    assert [r.pointer for r in results] == ["moved"] * 3


def test_an_unreachable_cloud_is_not_reported_as_an_incomplete_version(
    published: tuple[list[Target], str, str],
) -> None:
    from orchestrator.core.storage import NO_WAIT_RETRY, open_storage

    targets, v1, _ = published
    dead = open_storage(
        "s3://nowhere",
        settings={"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1", "connect_timeout": "1"},
        retry=NO_WAIT_RETRY,
    )
    with pytest.raises(
        TargetUnreachable, match=r"could not be checked in every target.*nothing moved"
    ) as err:
        move_channel([*targets, Target("oracle", dead)], "iris", v1, channel="STABLE", moved_by="promote")
    assert err.value.exit_code == 1
    assert "not complete" not in str(err.value)
    assert _channel(targets) == dict.fromkeys(("aws", "gcp", "azure"), None)


def test_a_rollback_after_a_rollback_is_refused_and_a_half_done_one_is_finished_by_a_rerun(
    published: tuple[list[Target], str, str],
) -> None:
    targets, v1, v2 = published
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    move_channel(targets, "iris", v2, channel="STABLE", moved_by="promote")
    assert rollback_version(targets, "iris", channel="STABLE") == v1
    # Interrupted half way: two clouds rolled back, the third not.
    move_channel(targets[:2], "iris", v1, channel="STABLE", moved_by="rollback", allow_back=True)
    assert rollback_version(targets, "iris", channel="STABLE") == v1  # the re-run finishes it
    results = move_channel(targets, "iris", v1, channel="STABLE", moved_by="rollback", allow_back=True)
    assert [r.pointer for r in results] == ["unchanged", "unchanged", "moved"]
    for t in targets:
        pointer, _ = read_pointer(t.storage, "iris", "STABLE")
        assert pointer is not None
        assert pointer.version not in pointer.history
    with pytest.raises(ConfigError, match=rf"rolled back already \(from {v2} to {v1}\).*pass --to"):
        rollback_version(targets, "iris", channel="STABLE")
    assert _channel(targets) == dict.fromkeys(("aws", "gcp", "azure"), v1)
