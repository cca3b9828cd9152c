"""`sync` and `verify` against the three emulators: the publishing protocol's promises."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from orchestrator.core.artifact.layout import read_pointer
from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.demo.emulators import Azurite, GcsEmulator, MotoServer, start_azurite, start_moto
from orchestrator.publish.sync import SyncEvent, Target, sync_artifact
from orchestrator.publish.verify import verify_targets
from orchestrator.training.pipeline import TrainResult
from tests.publish.conftest import bucket_of, rewritten, target

ALL_FILES = {
    "model.onnx",
    "report.md",
    "confusion_matrix.png",
    "roc_ovr.png",
    "precision_recall.png",
    "reliability.png",
    "permutation_importance.png",
    "coefficients.png",
    "partial_dependence.png",
    "manifest.json",
}


def test_cold_sync_publishes_everything_everywhere_then_moves_latest(
    three_clouds: list[Target], iris_v1: TrainResult
) -> None:
    results = sync_artifact(iris_v1.path, three_clouds)
    for r in results:
        assert r.ok, r.error
        assert set(r.uploaded) == ALL_FILES
        assert r.uploaded[-1] == "manifest.json", "the commit marker is written last"
        assert r.pointer == "moved"
    for t in three_clouds:
        pointer, _ = read_pointer(t.storage, "iris")
        assert pointer is not None
        assert pointer.version == iris_v1.manifest.version
    checked, disagreements = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked), [str(d) for c in checked for d in c.drift]
    assert disagreements == []


def test_a_no_change_resync_sends_no_put_and_one_list(
    three_clouds: list[Target], iris_v1: TrainResult
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    again = sync_artifact(iris_v1.path, three_clouds)
    for r in again:
        assert r.ok
        assert r.uploaded == []
        assert r.pointer == "unchanged"
        assert r.requests.get("put", 0) == 0, r.requests
        assert r.requests.get("list", 0) == 1, r.requests


def test_a_changed_file_is_reuploaded_alone(
    three_clouds: list[Target], iris_v1: TrainResult, tmp_path: Path
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    changed = rewritten(iris_v1.path, tmp_path / "changed", "report.md", b"# a corrected report\n")
    for r in sync_artifact(changed, three_clouds):
        assert r.ok, r.error
        assert r.uploaded == ["report.md", "manifest.json"]
        assert r.bytes_uploaded == len(b"# a corrected report\n") + (changed / "manifest.json").stat().st_size
    checked, _ = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked)


def test_latest_never_points_at_an_incomplete_version(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    by_name = {t.name: t for t in three_clouds}
    seen: list[str] = []

    def check(event: SyncEvent) -> None:
        # At every step of the v2 sync, every reader following LATEST still sees a complete v1.
        pointer, _ = read_pointer(by_name[event.target].storage, "iris")
        assert pointer is not None
        if event.kind != "pointer":
            assert pointer.version == iris_v1.manifest.version, f"{event}: LATEST moved early"
        seen.append(event.kind)

    results = sync_artifact(iris_v2.path, three_clouds, on_event=check)
    assert all(r.ok and r.pointer == "moved" for r in results), [r.error for r in results]
    assert seen.count("pointer") == 3
    assert "upload" in seen


def test_moving_back_to_an_earlier_publication_is_refused_unless_forced(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    """ "Never backwards" by the publisher's own sequence: v1 then v2 published, v1 again is a step
    back (it is in the pointer's history), whatever the artifacts' created_at say."""
    sync_artifact(iris_v1.path, three_clouds)
    sync_artifact(iris_v2.path, three_clouds)
    refused = sync_artifact(iris_v1.path, three_clouds)
    for r in refused:
        assert not r.ok
        assert r.pointer == "refused"
        assert iris_v2.manifest.version in (r.error or "")
        assert "--force" in (r.error or "")
        pointer, _ = read_pointer(next(t for t in three_clouds if t.name == r.target).storage, "iris")
        assert pointer is not None
        assert (pointer.version, pointer.sequence) == (iris_v2.manifest.version, 2)
    forced = sync_artifact(iris_v1.path, three_clouds, force=True)
    assert all(r.ok and r.pointer == "moved" and r.sequence == 3 for r in forced)
    pointer, _ = read_pointer(three_clouds[0].storage, "iris")
    assert pointer is not None
    assert pointer.history == (iris_v2.manifest.version,)  # never its current version


def test_the_pointer_names_the_version_it_replaced(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    """What health checks accept during a rollout's grace period (orchestrator.control.health.expect)."""
    sync_artifact(iris_v1.path, three_clouds)
    sync_artifact(iris_v2.path, three_clouds)
    sync_artifact(iris_v2.path, three_clouds)  # a no-op re-sync keeps the pointer as it is
    for t in three_clouds:
        pointer, _ = read_pointer(t.storage, "iris")
        assert pointer is not None
        assert (pointer.version, pointer.previous) == (iris_v2.manifest.version, iris_v1.manifest.version)


def test_verify_deep_catches_bytes_changed_behind_our_back(
    three_clouds: list[Target], iris_v1: TrainResult, moto_server, gcs_emulator, azurite
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    emulators = {"aws": moto_server, "gcp": gcs_emulator, "azure": azurite}
    key = f"models/iris/{iris_v1.manifest.version}/model.onnx"
    original = (iris_v1.path / "model.onnx").read_bytes()
    corrupt = bytes([original[0] ^ 0xFF]) + original[1:]  # same size, same metadata, other bytes
    for t in three_clouds:
        emulators[t.name].tamper(bucket_of(t), key, corrupt)

    shallow, _ = verify_targets(three_clouds, "iris")
    assert all(c.ok for c in shallow), "metadata still claims the old sha256: only --deep can tell"
    deep, _ = verify_targets(three_clouds, "iris", deep=True)
    for c in deep:
        assert [d.key for d in c.drift] == [key]
        assert "sha256 (content)" in c.drift[0].problem


def test_verify_names_missing_unexpected_and_disagreeing(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    aws, gcp, azure = three_clouds
    prefix = f"models/iris/{iris_v1.manifest.version}/"
    aws.storage.delete(prefix + "roc_ovr.png")
    gcp.storage.put(
        prefix + "extra.bin", b"x", sha256="2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    )
    sync_artifact(iris_v2.path, [azure])

    results, disagreements = verify_targets(three_clouds, "iris")
    by_name = {r.target: r for r in results}
    assert [(d.key, d.problem) for d in by_name["aws"].drift] == [(prefix + "roc_ovr.png", "missing")]
    assert by_name["gcp"].drift[0].problem.startswith("unexpected object")
    assert by_name["azure"].ok
    assert {d.target for d in disagreements} == {"aws", "gcp", "azure"}


def kill_after(emulator_name: str, uploads: int, action) -> object:
    """An on_event hook that runs ``action`` once the given cloud has verified ``uploads`` objects."""
    seen = 0

    def hook(event: SyncEvent) -> None:
        nonlocal seen
        if event.target == emulator_name and event.kind == "verified":
            seen += 1
            if seen == uploads:
                action()

    return hook


def test_an_emulator_killed_mid_sync_fails_only_its_cloud_and_a_rerun_completes(
    tmp_path: Path, gcs_emulator: GcsEmulator, azurite: Azurite, iris_v1: TrainResult
) -> None:
    moto = start_moto(tmp_path)
    try:
        clouds = [target(moto, "aws"), target(gcs_emulator, "gcp"), target(azurite, "azure")]
        results = {
            r.target: r for r in sync_artifact(iris_v1.path, clouds, on_event=kill_after("aws", 2, moto.kill))
        }
        assert results["gcp"].ok
        assert results["azure"].ok
        assert not results["aws"].ok
        assert results["aws"].pointer == "not moved"
        assert f"127.0.0.1:{moto.port}" in (results["aws"].error or ""), "the error names the endpoint"

        # moto keeps its state in memory: the restarted server is empty, and the re-run publishes all.
        port = moto.port
        moto = start_moto(tmp_path, port=port)
        moto.create_bucket(bucket_of(clouds[0]))
        rerun = sync_artifact(iris_v1.path, [clouds[0]])[0]
        assert rerun.ok, rerun.error
        assert rerun.pointer == "moved"
        checked, disagreements = verify_targets(clouds, "iris", deep=True)
        assert all(c.ok for c in checked)
        assert disagreements == []
    finally:
        moto.stop()


def test_a_frozen_emulator_fails_its_cloud_and_a_rerun_sends_only_what_is_missing(
    tmp_path: Path, moto_server: MotoServer, iris_v1: TrainResult
) -> None:
    """Azurite frozen (SIGSTOP) mid-sync: requests time out. Thawed, it still holds what landed."""
    azure_emu = start_azurite(tmp_path)
    try:
        bucket = azure_emu.create_bucket()
        frozen = open_storage(
            azure_emu.uri(bucket),
            settings={**azure_emu.settings, "read_timeout": "1", "connect_timeout": "1"},
            retry=NO_WAIT_RETRY,
        )
        clouds = [target(moto_server, "aws"), Target("azure", frozen)]
        hook = kill_after("azure", 2, lambda: azure_emu.process.send_signal(signal.SIGSTOP))
        results = {r.target: r for r in sync_artifact(iris_v1.path, clouds, on_event=hook)}
        assert results["aws"].ok
        assert not results["azure"].ok
        assert results["azure"].pointer == "not moved"

        azure_emu.process.send_signal(signal.SIGCONT)
        pointer, _ = read_pointer(frozen, "iris")
        assert pointer is None, "LATEST was never written for the interrupted version"
        rerun = sync_artifact(iris_v1.path, [clouds[1]])[0]
        assert rerun.ok, rerun.error
        # Requests queued in the frozen server may complete after the thaw (even the commit marker,
        # which is only sent once every file verified); nothing that landed is sent twice.
        assert len(rerun.skipped) >= 2, "what landed before the freeze is not sent again"
        assert set(rerun.uploaded).isdisjoint(rerun.skipped)
        assert rerun.pointer == "moved"
        checked, _ = verify_targets([clouds[1]], "iris", deep=True)
        assert checked[0].ok
    finally:
        if azure_emu.process is not None:
            azure_emu.process.send_signal(signal.SIGCONT)
        azure_emu.stop()


def test_a_bad_local_artifact_sends_nothing(
    three_clouds: list[Target], iris_v1: TrainResult, tmp_path: Path
) -> None:
    from orchestrator.core.errors import ArtifactError

    broken = tmp_path / "broken"
    shutil.copytree(iris_v1.path, broken)
    (broken / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"model\.onnx"):
        sync_artifact(broken, three_clouds)
    for t in three_clouds:
        assert list(t.storage.list("")) == []
