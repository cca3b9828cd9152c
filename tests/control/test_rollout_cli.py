"""`orchestrator rollout` refusing what it cannot do, as an operator runs it: one line, the documented
exit code, nothing moved. Buckets are local directories (file://); no endpoint is contacted before
these refusals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.control.config import load_config
from orchestrator.control.health.expect import expected_model
from orchestrator.control.plane import ControlPlane
from orchestrator.control.rollout.record import RolloutTakenOver
from orchestrator.control.rollout.runner import Rollout
from orchestrator.control.wiring import open_plane, open_store
from orchestrator.core.artifact.layout import read_pointer, version_prefix
from orchestrator.core.artifact.signing import generate_key_pair
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import open_storage
from orchestrator.publish.channels import move_channel
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train

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
        (
            ("{v2}", "--plan", "/nonexistent/plan.yaml"),
            "/nonexistent/plan.yaml: rollout plan (--plan) not found",
        ),
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


# A rollout owns the pointers it moves (promote, rollback and sync refuse while it is active; its
# own moves and its rollback touch only what is still its own). Kinds: an operator's command during
# a rollout (promote, rollback --to, rollback, sync), a channel the rollout does not move (allowed),
# a rollout that ended (allowed); the rollback meeting a pointer someone else moved; the rollout's
# own write landing after the rollout was aborted; pointers saying "moved by a rollout" with no
# active rollout in the store.


def _record(v1: str, v2: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "r17", "model": "iris", "channel": "STABLE", "version": v2, "baseline": v1,
        "order": list(CLOUDS), "plan": {"bake_s": 1, "probe_interval_s": 0.1}, "status": "running",
        "stage": 0, "phase": "bake", "moved": ["aws"], "caps": {"aws": 10}, "before": {}, "probes": 0,
        "probe_failures": [], "verdicts": [], "holder": "elsewhere", "heartbeat_at": 9e18,
        "started_at": 0.0, "phase_started_at": 0.0, "finished_at": None, "reason": None,
        "failed_at": None, "rolled_back_at": None,
    }  # fmt: skip
    record.update(changes)
    return record


def _save_record(config: Path, record: dict[str, Any]) -> None:
    store = open_store(load_config(str(config)))
    try:
        store.atomically(lambda: store.save_rollout(record))
    finally:
        store.close()


def test_promote_rollback_and_sync_refuse_while_a_rollout_of_the_channel_is_active(
    setup: tuple[Path, list[Target], str, str], models: dict[str, TrainResult]
) -> None:
    config, targets, v1, v2 = setup
    _save_record(config, _record(v1, v2))
    for args in (
        ("promote", v2),
        ("rollback", "--to", v2),
        ("rollback",),
        ("sync", "--model", str(models["v2"].path), "--channel", "STABLE"),
    ):
        result = run(config, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
        assert "refused: rollout r17 of iris" in result.stderr
        assert "rollout --abort" in result.stderr
        assert stable(targets) == {v1}
    # Another channel is not the rollout's: a candidate nothing serves can still be moved.
    assert run(config, "promote", v2, "--channel", "CANDIDATE").returncode == 0
    # Once the rollout ended, the channel is the operator's again.
    _save_record(config, _record(v1, v2, status="rolled-back", phase="done"))
    done = run(config, "promote", v2)
    assert done.returncode == 0, done.stderr
    assert stable(targets) == {v2}


def _plane_of(config: Path) -> ControlPlane:
    return open_plane(load_config(str(config)))


def test_the_rollback_moves_back_only_pointers_that_still_name_the_rollouts_version(
    setup: tuple[Path, list[Target], str, str], tmp_path: Path
) -> None:
    config, targets, v1, v2 = setup
    v3 = train(TrainOptions(dataset="iris", seed=2, out=tmp_path / "v3"))
    assert all(r.ok for r in sync_artifact(v3.path, targets, channel="CANDIDATE"))
    version3 = v3.manifest.version
    move_channel(targets[:2], "iris", v2, channel="STABLE", moved_by="rollout", allow_back=True)
    # While the rollout bakes, gcp's pointer is moved by someone else (an operator without the state).
    move_channel(targets[1:2], "iris", version3, channel="STABLE", moved_by="promote")
    with _plane_of(config) as plane:
        record = _record(v1, v2, status="rolling-back", moved=["aws", "gcp"], holder=plane.holder)
        plane.store.atomically(lambda: plane.store.save_rollout(record))
        rollout = Rollout(plane, holder=plane.holder, record=record, targets={t.name: t for t in targets})
        final = rollout.step()
    assert final["status"] == "rolled-back"
    pointers = {t.name: read_pointer(t.storage, "iris", "STABLE")[0] for t in targets}
    assert {c: (p.version, p.moved_by) for c, p in pointers.items() if p} == {
        "aws": (v1, "rollback"),
        "gcp": (version3, "promote"),  # theirs, left alone
        "azure": (v1, "promote"),
    }


class _AbortedDuringTheWrite:
    """A bucket whose pointer write lands only after an operator aborted the rollout (the abort
    found the pointer still on the baseline and had nothing to move back)."""

    def __init__(self, storage: Any, abort: Any) -> None:
        self._storage, self._abort = storage, abort

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def put_if(self, key: str, data: bytes, *, token: Any) -> Any:
        if key.endswith("/STABLE"):
            self._abort()
        return self._storage.put_if(key, data, token=token)


def test_a_move_that_lands_after_an_abort_is_undone_by_its_mover(
    setup: tuple[Path, list[Target], str, str],
) -> None:
    config, targets, v1, v2 = setup
    with _plane_of(config) as plane:
        record = _record(v1, v2, phase="move", moved=[], caps={}, holder=plane.holder)
        plane.store.atomically(lambda: plane.store.save_rollout(record))

        def abort() -> None:
            aborted = _record(v1, v2, status="rolled-back", phase="done", moved=["aws"], holder="operator")
            plane.store.atomically(lambda: plane.store.save_rollout(aborted))

        slow = [Target("aws", _AbortedDuringTheWrite(targets[0].storage, abort)), *targets[1:]]  # type: ignore[arg-type]
        rollout = Rollout(plane, holder=plane.holder, record=record, targets={t.name: t for t in slow})
        with pytest.raises(RolloutTakenOver):
            rollout.step()
    pointer = read_pointer(targets[0].storage, "iris", "STABLE")[0]
    assert pointer is not None
    assert (pointer.version, pointer.moved_by) == (v1, "rollback")
    assert stable(targets) == {v1}


def test_pointers_moved_by_a_rollout_count_as_one_only_while_the_store_holds_it_active(
    setup: tuple[Path, list[Target], str, str],
) -> None:
    config, targets, v1, v2 = setup
    move_channel(targets[:1], "iris", v2, channel="STABLE", moved_by="rollout", allow_back=True)
    cfg = load_config(str(config))
    buckets = {t.name: t.storage for t in targets}
    alone = expected_model(cfg, buckets, clock=time.time)
    assert (alone.version, alone.previous) == (v1, None)  # no rollout recorded: v2 is not expected
    active = expected_model(cfg, buckets, clock=time.time, rollout=_record(v1, v2, moved=["aws"]))
    assert (active.version, active.previous.version if active.previous else None) == (v2, v1)
    other = expected_model(cfg, buckets, clock=time.time, rollout=_record(v1, "other", moved=["aws"]))
    assert other.previous is None  # an active rollout of another version says nothing of these pointers
    # The control plane reads the record from its store before each round's probes.
    with _plane_of(config) as plane:
        plane.prober.probe()
        assert plane.prober.expected is not None
        assert plane.prober.expected.previous is None
        plane.store.atomically(lambda: plane.store.save_rollout(_record(v1, v2, moved=["aws"])))
        plane.prober.probe()
        assert plane.prober.expected is not None
        assert plane.prober.expected.version == v2
        assert plane.prober.expected.previous is not None
        assert plane.prober.expected.previous.version == v1


# No rollout stays running forever, and none is taken over while its command lives. Kinds: waiting
# for the endpoint to serve (the record is written at every step); a step that keeps failing (rolled
# back once it has failed for serve_timeout_s, also when the health job runs the steps); a plan whose
# takeover_after_s the heartbeat cannot meet (refused before anything moves); the configured public
# key ignored by one command (every command uses it).


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_record_is_written_while_waiting_for_the_endpoint_to_serve(
    setup: tuple[Path, list[Target], str, str],
) -> None:
    config, targets, v1, v2 = setup
    clock = _Clock()
    with open_plane(load_config(str(config)), clock=clock) as plane:
        record = _record(v1, v2, phase="serve", caps={"aws": 0}, holder=plane.holder,
                         heartbeat_at=clock.now, phase_started_at=clock.now)  # fmt: skip
        plane.store.atomically(lambda: plane.store.save_rollout(record))
        rollout = Rollout(plane, holder=plane.holder, record=record, targets={t.name: t for t in targets})
        for _ in range(3):
            clock.now += 5
            rollout.step()  # the endpoint does not answer: still waiting
            stored = plane.store.atomically(plane.store.rollout)
            assert stored is not None
            assert (stored["phase"], stored["heartbeat_at"]) == ("serve", clock.now)


def test_steps_that_keep_failing_roll_the_rollout_back_after_serve_timeout_s(
    setup: tuple[Path, list[Target], str, str],
) -> None:
    config, targets, v1, v2 = setup
    move_channel(targets[:1], "iris", v2, channel="STABLE", moved_by="rollout", allow_back=True)
    for t in targets:  # every step of the serve phase now fails: no bucket holds v2's manifest
        t.storage.delete(version_prefix("iris", v2) + "manifest.json")
    clock = _Clock()
    with open_plane(load_config(str(config)), clock=clock) as plane:
        plan = {"serve_timeout_s": 20.0, "probe_interval_s": 1.0}
        record = _record(v1, v2, phase="serve", caps={"aws": 0}, holder=plane.holder, plan=plan,
                         heartbeat_at=clock.now, phase_started_at=clock.now)  # fmt: skip
        plane.store.atomically(lambda: plane.store.save_rollout(record))
        rollout = Rollout(plane, holder=plane.holder, record=record, targets={t.name: t for t in targets})
        for _ in range(2):
            with pytest.raises(ConfigError, match="no bucket holds a readable manifest"):
                rollout.step()
            clock.now += 11
        final = rollout.step()  # 22 s of failing steps: over the budget
    assert final["status"] == "rolled-back"
    assert final["reason"].startswith("step: aws: steps kept failing for 22 s")
    assert stable(targets) == {v1}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"probe_interval_s": 2, "takeover_after_s": 6}, "must exceed three probe intervals"),
        ({"probe_interval_s": 0.2, "takeover_after_s": 3}, "plus the longest step"),
    ],
)
def test_a_takeover_the_heartbeat_cannot_meet_is_refused(
    setup: tuple[Path, list[Target], str, str], plan: dict[str, float], message: str
) -> None:
    config, targets, v1, v2 = setup
    path = config.parent / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    result = run(config, "rollout", v2, "--plan", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert stable(targets) == {v1}


def test_the_configured_public_key_is_used_by_every_command(
    setup: tuple[Path, list[Target], str, str], tmp_path: Path
) -> None:
    config, targets, v1, v2 = setup
    _, public = generate_key_pair(tmp_path / "key")
    data = yaml.safe_load(config.read_text())
    data["signing"] = {"public_key": str(public)}
    config.write_text(yaml.safe_dump(data))
    for args in (("promote", v2), ("rollback", "--to", v2), ("rollout", v2)):
        result = run(config, *args)
        assert result.returncode == 6, (args, result.stderr)
        assert "model.sig" in result.stderr
    verify = run(config, "verify", "--model", f"iris@{v2}")
    assert verify.returncode == 1, verify.stderr
    assert "model.sig" in verify.stdout + verify.stderr
    assert stable(targets) == {v1}
