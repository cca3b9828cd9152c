"""Progressive rollouts on the three emulated clouds with real endpoints following the STABLE channel.

Each cloud has its bucket on its emulator (moto, the GCS emulator, Azurite) and an `orchestrator
serve` process following ``models/iris/STABLE`` there (reloading every half second). The control
plane uses a SQLite state and the routing file. Cases: a good version through every stage; a
version that fails its canary in the first cloud (the endpoint refuses it) never given weight; a
gate failing in the second stage (its endpoint dies mid-bake) rolling both moved clouds back; a
version not verified everywhere refused before anything moves; the rollout command killed
mid-stage and finished by the next health rounds, or rolled back by ``rollout --abort``; outside a
rollout, a cloud serving another version than its channel's gets no weight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.control.plane import ControlPlane
from orchestrator.control.rollout.plan import GateBounds, RolloutPlan
from orchestrator.control.rollout.start import start_rollout
from orchestrator.core.artifact.layout import version_prefix
from orchestrator.demo.emulators import Azurite, Emulator, GcsEmulator, MotoServer
from orchestrator.publish.channels import EXIT_REFUSED, VersionRefused, move_channel
from tests.rollout_world import CLOUDS, DriftFront, World, make_versions, running_world

# Short stages: a bake of a second with probes every 0.2 s gives each gate a handful of probes.
FAST = {"bake_s": 1.0, "probe_interval_s": 0.2, "serve_timeout_s": 20.0, "gates": GateBounds(min_requests=3)}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_versions(tmp_path_factory.mktemp("rollout-models"))


@pytest.fixture
def world(
    tmp_path: Path,
    versions: dict[str, Path],
    moto_server: MotoServer,
    gcs_emulator: GcsEmulator,
    azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    for key, value in azurite.env.items():  # the Azure connection string, from the environment
        monkeypatch.setenv(key, value)
    emulators: dict[str, Emulator] = {"aws": moto_server, "gcp": gcs_emulator, "azure": azurite}
    with running_world(tmp_path, versions, emulators) as w:
        yield w


def _healthy(plane: ControlPlane) -> None:
    report = plane.health_round(apply=True)
    assert {r.machine.state.value for r in report.records.values()} == {"healthy"}, report.notes


def test_a_good_version_goes_through_every_stage(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v2 = world.names["v2"]
    weights: list[tuple[str, str, dict[str, int]]] = []
    caps: list[tuple[str, int, dict[str, int]]] = []

    def seen(what: str, record: Any) -> None:
        caps.append((what, record["stage"], dict(record["caps"])))
        desired = plane.store.atomically(plane.store.desired)
        weights.append(
            (what, record["order"][min(record["stage"], 2)], dict(desired.weights) if desired else {})
        )

    rollout = start_rollout(plane, v2, RolloutPlan(canary_weight=10, **FAST), holder=plane.holder)
    rollout.on_event = seen
    final = rollout.run()
    assert final["status"] == "succeeded", final["reason"]
    order = final["order"]
    assert order == sorted(CLOUDS, key=lambda c: (plane.costs[c].total, c))  # the cheapest first
    assert world.channel() == dict.fromkeys(CLOUDS, (v2, "rollout"))
    world.wait_served(v2)
    # The first cloud had no weight while it loaded the version, then the canary weight.
    first = order[0]
    moved = next(w for what, c, w in weights if what == "moved" and c == first)
    assert moved.get(first) == 0
    serving = next(w for what, c, w in weights if what == "serving" and c == first)
    assert 0 < serving[first] <= 10
    # Once its stage passed, the first cloud is no longer held at the canary weight.
    passed = next(c for what, stage, c in caps if what == "stage passed" and stage == 1)
    assert first not in passed
    # Every stage was judged by every gate; none failed.
    stages = {(v["stage"], v["gate"]): v["status"] for v in final["verdicts"]}
    assert {s for s, _ in stages} == {0, 1, 2}
    assert "fail" not in stages.values()
    assert stages[(0, "prediction-distribution")] == "no-data"  # no drift answer on these endpoints
    # The caps are lifted: the router's weights, as without a rollout.
    desired = plane.store.atomically(plane.store.desired)
    assert desired is not None
    assert desired.weights == plane.store.atomically(lambda: plane.decide(plane.records())).weights
    status = plane.status()
    assert status["rollout"]["status"] == "succeeded"


def test_a_version_failing_its_canary_in_the_first_cloud_never_gets_weight(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v1, bad = world.names["v1"], world.names["bad-canary"]
    plan = RolloutPlan(**{**FAST, "serve_timeout_s": 4.0})
    rollout = start_rollout(plane, bad, plan, holder=plane.holder)
    first = rollout.record["order"][0]
    given: list[tuple[str, int]] = []
    rollout.on_event = lambda what, _r: given.append(
        (what, plane.store.atomically(plane.store.desired).weights.get(first, 0))  # type: ignore[union-attr]
    )
    final = rollout.run()
    assert final["status"] == "rolled-back"
    assert final["reason"].startswith("serve: ")
    # No weight from the moment its pointer moved until it was back on v1 (then the router's).
    assert [w for what, w in given if what != "rolled back"] == [0, 0]
    assert [what for what, _ in given] == ["moved", "gate failed", "rolled back"]
    assert final["moved"] == [first]
    assert world.channel()[first] == (v1, "rollback")
    assert {c: v for c, (v, _) in world.channel().items()} == dict.fromkeys(CLOUDS, v1)
    flips = plane.store.atomically(lambda: plane.store.recent_flips(cloud=first))
    assert flips[0].actor == "rollout"
    assert f"rollout of {bad} rolled back: serve:" in flips[0].reason
    assert world.served() == dict.fromkeys(CLOUDS, v1)


def test_a_gate_failing_in_a_later_stage_rolls_back_every_moved_cloud(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v1, v2 = world.names["v1"], world.names["v2"]
    rollout = start_rollout(
        plane,
        v2,
        RolloutPlan(bake_s=3.0, **{k: v for k, v in FAST.items() if k != "bake_s"}),
        holder=plane.holder,
    )
    second = rollout.record["order"][1]
    events: list[str] = []

    def on_event(what: str, record: Any) -> None:
        events.append(f"{what}:{record['stage']}")
        if what == "serving" and record["stage"] == 1:
            world.endpoints[second].process.signal(signal.SIGKILL)  # the moved cloud dies mid-bake

    rollout.on_event = on_event
    final = rollout.run()
    assert final["status"] == "rolled-back", events
    assert final["reason"].startswith(("canary: ", "error-rate: ")), final["reason"]
    assert final["moved"] == final["order"][:2]
    assert {c: v for c, (v, _) in world.channel().items()} == dict.fromkeys(CLOUDS, v1)
    for cloud in final["moved"]:
        assert world.channel()[cloud] == (v1, "rollback")
        flips = plane.store.atomically(lambda c=cloud: plane.store.recent_flips(cloud=c))
        assert any(f.actor == "rollout" and "rolled back" in f.reason for f in flips)
    assert final["rolled_back_at"] >= final["failed_at"]
    assert plane.store.atomically(plane.store.rollout)["caps"] == {}  # type: ignore[index]


def test_a_version_not_verified_everywhere_is_refused_before_anything_moves(world: World) -> None:
    plane = world.plane()
    v2 = world.names["v2"]
    world.target("azure").storage.delete(version_prefix("iris", v2) + "manifest.json")
    with pytest.raises(VersionRefused, match=rf"azure: models/iris/{v2}/manifest.json: missing") as err:
        start_rollout(plane, v2, RolloutPlan(**FAST), holder=plane.holder)
    assert err.value.exit_code == EXIT_REFUSED
    assert plane.store.atomically(plane.store.rollout) is None
    assert {v for v, _ in world.channel().values()} == {world.names["v1"]}


def _run_cli(world: World, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **world.emulators["azure"].env}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args, "--config", str(world.config())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_record(plane: ControlPlane, predicate: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = plane.store.atomically(plane.store.rollout)
        if record is not None and predicate(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"the rollout record never got there: {plane.store.atomically(plane.store.rollout)}")


def _plan_file(world: World, **values: Any) -> str:
    path = world.root / "plan.yaml"
    plan = {"bake_s": 2.0, "probe_interval_s": 0.2, "serve_timeout_s": 20, "gates": {"min_requests": 3},
            **values}  # fmt: skip
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def test_a_killed_rollout_is_finished_by_the_next_health_rounds(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v2 = world.names["v2"]
    command = _run_cli(world, "rollout", v2, "--plan", _plan_file(world))
    try:
        _wait_record(plane, lambda r: r["phase"] == "bake" and r["stage"] == 0)
    finally:
        command.send_signal(signal.SIGKILL)  # no cleanup: the record says "running"
        command.communicate(timeout=30)
    dead = plane.store.atomically(plane.store.rollout)
    assert dead is not None
    assert dead["status"] == "running"
    dead["heartbeat_at"] = 0.0  # it died longer than takeover_after_s ago
    plane.store.atomically(lambda: plane.store.save_rollout(dead))
    notes = []
    for _ in range(200):
        report = plane.health_round(apply=True)
        notes += [n for n in report.notes if "rollout" in n]
        record = plane.store.atomically(plane.store.rollout)
        assert record is not None
        if record["status"] not in ("running", "rolling-back"):
            break
        time.sleep(0.2)
    assert record["status"] == "succeeded", (record["reason"], notes)
    assert record["holder"] == plane.holder
    assert any(n.startswith("took over the rollout") for n in notes)
    assert world.channel() == dict.fromkeys(CLOUDS, (v2, "rollout"))
    world.wait_served(v2)


def test_abort_rolls_back_a_rollout_at_once(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v1, v2 = world.names["v1"], world.names["v2"]
    command = _run_cli(world, "rollout", v2, "--plan", _plan_file(world, bake_s=60.0))
    try:
        _wait_record(plane, lambda r: r["phase"] == "bake" and r["stage"] == 0)
        aborted = _run_cli(world, "rollout", "--abort", "--json")
        out, err = aborted.communicate(timeout=60)
        assert aborted.returncode == 7, err
        assert json.loads(out)["status"] == "rolled-back"
        assert (
            err.strip()
            == f"error: rollout of {v2} rolled back: abort: aborted by an operator (rollout --abort)"
        )
        # The command that ran the rollout sees it is no longer its own, and stops.
        _, command_err = command.communicate(timeout=30)
        assert command.returncode == 1
        assert "no longer this process's to run" in command_err
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    assert {c: v for c, (v, _) in world.channel().items()} == dict.fromkeys(CLOUDS, v1)
    again = _run_cli(world, "rollout", "--abort")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2
    assert "no rollout in progress" in err


def test_outside_a_rollout_a_cloud_off_its_channel_gets_no_weight(world: World) -> None:
    plane = world.plane()
    _healthy(plane)
    v2 = world.names["v2"]
    # A hand-moved pointer in one cloud (not by a rollout): that cloud serves v2, the others v1.
    odd = "gcp"
    move_channel([world.target(odd)], "iris", v2, channel="STABLE", moved_by="promote")
    deadline = time.monotonic() + 20
    while world.served()[odd] != v2 and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(3):
        report = plane.health_round(apply=True)
    assert report.records[odd].machine.state.value != "healthy"
    assert report.weights is not None
    assert report.weights[odd] == 0


def test_shifted_predictions_are_caught_by_the_drift_gate_and_rolled_back_everywhere(world: World) -> None:
    v1, v2 = world.names["v1"], world.names["v2"]
    fronts = {c: DriftFront(world.endpoints[c].url, shifted=v2) for c in CLOUDS}
    try:
        world.fronts = {c: f.url for c, f in fronts.items()}
        plane = world.plane()
        _healthy(plane)
        rollout = start_rollout(plane, v2, RolloutPlan(**FAST), holder=plane.holder)
        final = rollout.run()
    finally:
        for front in fronts.values():
            front.stop()
    assert final["status"] == "rolled-back"
    assert final["reason"].startswith("prediction-distribution: ")
    assert "drifted from the old version's predictions" in final["reason"]
    verdicts = {v["gate"]: v for v in final["verdicts"] if v["stage"] == 0}
    assert verdicts["prediction-distribution"]["status"] == "fail"
    assert verdicts["canary"]["status"] == "pass"  # its canary passed: only the traffic tells
    assert final["moved"] == final["order"][:1]
    assert {c: v for c, (v, _) in world.channel().items()} == dict.fromkeys(CLOUDS, v1)


def test_a_dead_rollout_whose_stage_cannot_be_judged_is_rolled_back_by_the_health_job(world: World) -> None:
    """The continuation rule's other branch: the command died in a bake whose /metrics baseline was
    never recorded (an endpoint's /metrics did not answer at the bake's start, say)."""
    plane = world.plane()
    _healthy(plane)
    v1, v2 = world.names["v1"], world.names["v2"]
    rollout = start_rollout(plane, v2, RolloutPlan(**FAST), holder="dead:1")
    while rollout.record["phase"] != "bake":
        rollout.step()
        time.sleep(0.2)
    rollout._save(lambda r: r.update(before={}))  # its last write, then it died
    record = plane.store.atomically(plane.store.rollout)
    assert record is not None
    record["heartbeat_at"] = 0.0
    plane.store.atomically(lambda: plane.store.save_rollout(record))
    time.sleep(FAST["bake_s"])  # type: ignore[arg-type]
    notes: list[str] = []
    for _ in range(50):
        notes += [n for n in plane.health_round(apply=True).notes if "rollout" in n]
        record = plane.store.atomically(plane.store.rollout)
        assert record is not None
        if record["status"] not in ("running", "rolling-back"):
            break
    assert record["status"] == "rolled-back", notes
    assert "no /metrics baseline was recorded" in record["reason"]
    assert notes[0].startswith("took over the rollout")
    assert {c: v for c, (v, _) in world.channel().items()} == dict.fromkeys(CLOUDS, v1)
