"""`orchestrator rollout` refusing what it cannot do, as an operator runs it: one line, the documented
exit code, nothing moved. Buckets are local directories (file://); no endpoint is contacted before
these refusals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.core.artifact.layout import read_pointer, version_prefix
from orchestrator.core.storage import open_storage
from orchestrator.publish.channels import move_channel
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainResult

CLOUDS = ("aws", "gcp", "azure")


@pytest.fixture
def setup(tmp_path: Path, models: dict[str, TrainResult]) -> tuple[Path, list[Target], str, str]:
    targets = []
    for cloud in CLOUDS:
        (tmp_path / cloud).mkdir()
        targets.append(Target(cloud, open_storage(f"file://{tmp_path / cloud}")))
    for version in ("v1", "v2"):
        assert all(r.ok for r in sync_artifact(models[version].path, targets))
    v1, v2 = (models[v].manifest.version for v in ("v1", "v2"))
    move_channel(targets, "iris", v1, channel="STABLE", moved_by="promote")
    config = {
        "model": {"name": "iris", "channel": "STABLE"},
        "clouds": {
            c: {"endpoint": f"http://127.0.0.1:9/{c}", "storage": f"file://{tmp_path / c}"} for c in CLOUDS
        },
        "routing": {"backend": "file", "file": {"path": str(tmp_path / "routing.json")}},
        "state": {"path": str(tmp_path / "state.db")},
    }
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, targets, v1, v2


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--config", str(config)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def stable(targets: list[Target]) -> set[str]:
    return {read_pointer(t.storage, "iris", "STABLE")[0].version for t in targets}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name the VERSION to roll out (or --abort)"),
        (("V2",), "VERSION: version 'V2' is not valid"),
        (("{v2}", "--order", "aws,oracle"), "--clouds: unknown cloud(s) oracle"),
        (("{v2}", "--order", "aws,gcp"), "rollout order: name each configured cloud once"),
        (("{v2}", "--canary-weight", "0"), "canary_weight: Input should be greater than or equal to 1"),
        (("{v2}", "--bake", "-1"), "bake_s: Input should be greater than or equal to 0"),
        (("{v2}", "--plan", "/nonexistent/plan.yaml"), "/nonexistent/plan.yaml"),
        (("{v1}",), "already names"),
        (("--abort", "{v2}"), "--abort takes no VERSION"),
        (("--abort",), "no rollout in progress to abort"),
    ],
)
def test_usage_errors_exit_2_and_move_nothing(
    setup: tuple[Path, list[Target], str, str], args: tuple[str, ...], message: str
) -> None:
    config, targets, v1, v2 = setup
    result = run(config, "rollout", *(a.format(v1=v1, v2=v2) for a in args))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert stable(targets) == {v1}


def test_clouds_on_different_versions_are_refused(setup: tuple[Path, list[Target], str, str]) -> None:
    config, targets, v1, v2 = setup
    move_channel(targets[1:2], "iris", v2, channel="STABLE", moved_by="promote")
    result = run(config, "rollout", v2)
    assert result.returncode == 2
    assert (
        f"(aws: {v1}, azure: {v1}, gcp: {v2}); `orchestrator promote` or `rollback --to` first"
        in result.stderr
    )


def test_a_version_incomplete_in_one_cloud_exits_6(setup: tuple[Path, list[Target], str, str]) -> None:
    config, targets, v1, v2 = setup
    targets[2].storage.delete(version_prefix("iris", v2) + "manifest.json")
    result = run(config, "rollout", v2)
    assert result.returncode == 6
    assert f"azure: models/iris/{v2}/manifest.json: missing" in result.stderr
    assert stable(targets) == {v1}


def test_a_rollout_in_progress_refuses_another(setup: tuple[Path, list[Target], str, str]) -> None:
    config, _, v1, v2 = setup
    db = config.parent / "state.db"
    assert run(config, "status", "--json").returncode in (0, 4)  # creates the state
    record = {"id": "x", "status": "running", "version": "other", "baseline": v1, "order": list(CLOUDS),
              "plan": {}, "stage": 0, "phase": "bake", "moved": ["aws"], "caps": {"aws": 10},
              "holder": "elsewhere", "heartbeat_at": 9e18}  # fmt: skip
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO rollouts (name, record, at) VALUES ('current', ?, 0)", (json.dumps(record),))
    result = run(config, "rollout", v2)
    assert result.returncode == 2
    assert "a rollout of other is in progress (status running)" in result.stderr
    status = run(config, "status", "--json")
    assert status.stdout, status.stderr
    assert json.loads(status.stdout)["rollout"]["caps"] == {"aws": 10}


def test_a_corrupt_rollout_record_is_named(setup: tuple[Path, list[Target], str, str]) -> None:
    config, _, _, v2 = setup
    assert run(config, "status", "--json").returncode in (0, 4)
    with sqlite3.connect(config.parent / "state.db") as raw:
        raw.execute("INSERT INTO rollouts (name, record, at) VALUES ('current', '[1, 2]', 0)")
    result = run(config, "rollout", v2)
    assert result.returncode == 1
    assert "rollouts.current" in result.stderr
    assert "Traceback" not in result.stderr
