"""`sync` and `verify` against the three emulators: the publishing protocol's promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.registry import read_pointer
from orchestrator.sync import SyncEvent, Target, sync_artifact
from orchestrator.verify import verify_targets
from serving.train import TrainResult
from tests.emulators import Azurite, GcsEmulator, MotoServer, free_port
from tests.sync.conftest import bucket_of, rewritten, target

ALL_FILES = {"model.onnx", "report.md", "confusion_matrix.png", "roc_ovr.png", "manifest.json"}


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


def test_an_older_version_is_refused_unless_forced(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    sync_artifact(iris_v2.path, three_clouds)
    refused = sync_artifact(iris_v1.path, three_clouds)
    for r in refused:
        assert not r.ok
        assert r.pointer == "refused"
        assert iris_v2.manifest.version in (r.error or "")
        assert "--force" in (r.error or "")
        pointer, _ = read_pointer(next(t for t in three_clouds if t.name == r.target).storage, "iris")
        assert pointer is not None
        assert pointer.version == iris_v2.manifest.version
    forced = sync_artifact(iris_v1.path, three_clouds, force=True)
    assert all(r.ok and r.pointer == "moved" for r in forced)


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


class DiskGcs(GcsEmulator):
    """gcp-storage-emulator storing on disk (in ``workdir``), so it can be killed and restarted with
    its objects intact. Azurite cannot serve here: it keeps blob metadata in memory and saves it
    every few seconds, so a SIGKILL loses the recent writes a resumed sync is about."""

    def __init__(self, port: int, log_path: Path, workdir: Path) -> None:
        super().__init__(port, log_path)
        self.workdir = workdir

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                "--port", str(self.port), "--quiet"]  # fmt: skip

    def start(self) -> DiskGcs:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self._wait_ready()
        return self


def test_one_cloud_killed_mid_sync_does_not_stop_the_others_and_a_rerun_completes(
    tmp_path: Path, moto_server: MotoServer, azurite: Azurite, iris_v1: TrainResult
) -> None:
    port = free_port()
    gcs = DiskGcs(port, tmp_path / "gcs.log", tmp_path / "gcs").start()
    try:
        clouds = [target(moto_server, "aws"), target(gcs, "gcp"), target(azurite, "azure")]
        uploads = 0

        def kill_gcs_midway(event: SyncEvent) -> None:
            nonlocal uploads
            if event.target == "gcp" and event.kind == "verified":
                uploads += 1
                if uploads == 2:
                    gcs.kill()

        results = {r.target: r for r in sync_artifact(iris_v1.path, clouds, on_event=kill_gcs_midway)}
        assert results["aws"].ok
        assert results["azure"].ok
        assert not results["gcp"].ok
        assert results["gcp"].pointer == "not moved"
        assert f"127.0.0.1:{port}" in (results["gcp"].error or ""), results["gcp"].error

        gcs = DiskGcs(port, tmp_path / "gcs.log", tmp_path / "gcs").start()
        storage = clouds[1].storage
        pointer, _ = read_pointer(storage, "iris")
        assert pointer is None, "LATEST was never written for the interrupted version"
        rerun = sync_artifact(iris_v1.path, [clouds[1]])[0]
        assert rerun.ok, rerun.error
        assert len(rerun.skipped) >= 2, "what landed before the crash is not sent again"
        assert rerun.uploaded
        assert "manifest.json" in rerun.uploaded
        assert rerun.pointer == "moved"
        checked, _ = verify_targets(clouds, "iris", deep=True)
        assert all(c.ok for c in checked)
    finally:
        gcs.stop()


def test_a_bad_local_artifact_sends_nothing(
    three_clouds: list[Target], iris_v1: TrainResult, tmp_path: Path
) -> None:
    from orchestrator.errors import ArtifactError

    broken = tmp_path / "broken"
    shutil.copytree(iris_v1.path, broken)
    (broken / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"model\.onnx"):
        sync_artifact(broken, three_clouds)
    for t in three_clouds:
        assert list(t.storage.list("")) == []
