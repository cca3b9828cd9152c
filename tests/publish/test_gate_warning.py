"""`sync` warns, in one line and without failing, when it publishes a version whose manifest records
no champion-challenger gate against the version it replaces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.artifact.manifest import MANIFEST_NAME
from orchestrator.core.storage import open_storage
from orchestrator.publish.sync import Target, gated_against, sync_artifact, ungated_warnings
from orchestrator.training.pipeline import TrainResult


def gated(artifact: Path, dest: Path, against: str) -> Path:
    """A copy of ``artifact`` whose manifest records a gate against version ``against`` (the
    manifest lists no file of its own, so the copy still verifies)."""
    shutil.copytree(artifact, dest)
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    manifest["gate"] = {"against": {"version": against}, "decision": "accepted"}
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return dest


@pytest.fixture
def bucket(tmp_path: Path) -> Target:
    root = tmp_path / "bucket"
    root.mkdir()
    return Target(name="local", storage=open_storage(root.as_uri()))


def test_a_version_replacing_another_without_a_gate_against_it_is_flagged(
    iris_v1: TrainResult, iris_v2: TrainResult, bucket: Target, tmp_path: Path
):
    [first] = sync_artifact(iris_v1.path, [bucket])
    assert first.ok
    assert first.gated is None  # the first publication replaces nothing
    assert ungated_warnings(iris_v1.manifest, [first]) == []

    [second] = sync_artifact(iris_v2.path, [bucket])
    assert second.ok
    assert second.previous_version == iris_v1.manifest.version
    assert second.gated is False
    [warning] = ungated_warnings(iris_v2.manifest, [second])
    assert iris_v1.manifest.version in warning
    assert "no champion-challenger gate" in warning

    # A version gated against the one it replaces (v2): nothing to say (a rollback, hence force).
    [third] = sync_artifact(
        gated(iris_v1.path, tmp_path / "v1-gated", iris_v2.manifest.version), [bucket], force=True
    )
    assert third.ok
    assert third.gated is True

    [unchanged] = sync_artifact(
        gated(iris_v1.path, tmp_path / "v1-again", iris_v2.manifest.version), [bucket]
    )
    assert unchanged.gated is None  # LATEST already names this version: nothing is replaced


def test_gated_against_reads_only_a_well_formed_record(iris_v1: TrainResult):
    assert gated_against(iris_v1.manifest) is None
    for broken in ({"gate": "yes"}, {"gate": {"against": "v1"}}, {"gate": {"against": {"version": 3}}}):
        manifest = iris_v1.manifest.model_copy(update=broken)
        assert gated_against(manifest) is None


def test_the_cli_warns_in_one_line_and_succeeds(iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path):
    (tmp_path / "bucket").mkdir()
    uri = (tmp_path / "bucket").as_uri()

    def sync(artifact: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "sync", "--model", str(artifact), "--to", uri],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert "warning" not in sync(iris_v1.path).stderr
    result = sync(iris_v2.path)

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert iris_v1.manifest.version in warnings[0]
    assert "--against" in warnings[0]
