"""The README's first command, run as a user would: `orchestrator demo`, non-interactively, with --json.

One full run is shared by the assertions on its figures (it takes about half a minute); a second
run is interrupted with Ctrl-C (SIGINT) mid-story and must leave nothing behind either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

STEPS = ["emulators", "train", "sync", "endpoints", "route", "traffic", "failover", "failback", "manual",
         "rollout", "rollback", "drift", "summary"]  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "demo.json"
    argv = ["demo", "--json", str(out), "--report", str(tmp / "report"), "--workdir", str(tmp / "work")]
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", *argv],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures: dict[str, Any] = json.loads(out.read_text())
    figures["_stdout"] = result.stdout
    return figures


def test_every_step_of_the_story_happened_in_order(demo: dict[str, Any]) -> None:
    assert demo["ok"] is True
    assert demo["steps"] == STEPS
    kinds = [e["kind"] for e in demo["events"]]
    for kind in ("sign", "kill", "detect", "failover", "restart", "failback", "manual_failover",
                 "manual_failback", "rollout", "hot_swap", "canary", "shutdown"):  # fmt: skip
        assert kind in kinds, f"no {kind} event"
    story = ("kill", "failover", "restart", "failback", "manual_failover", "rollout")
    order = [kinds.index(k) for k in story]
    assert order == sorted(order)


def test_routing_spread_traffic_by_cost_and_dns_followed_every_change(demo: dict[str, Any]) -> None:
    weights = demo["decision"]["weights"]
    assert sum(weights.values()) == 100
    assert sum(1 for w in weights.values() if w) >= 2, "capacity forces more than one cloud"
    rows = demo["decision"]["clouds"]  # keyed by cloud, as every JSON output keys its clouds
    cheapest = min(rows.values(), key=lambda r: r["cost_per_million_usd"])
    assert cheapest["weight"] == max(weights.values()), "the cheapest cloud gets the largest share"
    seen = [w["weights"] for w in demo["weights_seen"]]
    assert any(w["aws"] == 0 for w in seen), "clients saw aws drained"
    assert any(w["gcp"] == 0 for w in seen), "clients saw gcp drained by the operator"
    assert seen[-1]["aws"] > 0
    assert seen[-1]["gcp"] > 0


def test_failover_within_the_bound_and_no_request_failed_after_it(demo: dict[str, Any]) -> None:
    f = demo["failover"]
    assert 0 < f["detected_after_s"] <= f["applied_after_s"] <= f["bound_s"]
    assert f["within_bound"] is True
    assert f["weights"]["aws"] == 0
    assert f["failed_after_applied"] == 0
    assert demo["traffic"]["failed"] == 0, "one retry on another cloud covers every error"
    assert demo["traffic"]["per_cloud"]["aws"]["errors"] > 0, "requests did hit the dead aws endpoint"
    assert demo["traffic"]["accuracy"] > 0.9
    b = demo["failback"]
    assert b["weights"]["aws"] > 0
    assert b["readmitted_after_s"] > 0
    assert b["readmitted_at"] >= b["hold_until"], "not back before its hold-down ended"
    assert b["restarted_at"] < b["hold_until"], "the restart came during the hold-down"


def test_the_operator_commands_ran_for_real(demo: dict[str, Any]) -> None:
    manual = demo["manual"]
    assert manual["failover"]["weights"]["gcp"] == 0
    assert manual["failover"]["flips"][0]["actor"] == "demo-operator"
    assert manual["failback"]["weights"]["gcp"] > 0
    assert "$ orchestrator failover --from gcp" in demo["_stdout"]


def test_both_versions_were_served_and_the_rollout_passed_its_canaries(demo: dict[str, Any]) -> None:
    v1, v2 = demo["versions"]["v1"], demo["versions"]["v2"]
    assert v1 != v2
    served: dict[str, int] = {}
    for row in demo["traffic"]["per_cloud"].values():
        for version, n in row["versions"].items():
            served[version] = served.get(version, 0) + n
    assert served.get(v1, 0) > 0
    assert served.get(v2, 0) > 0
    assert set(demo["rollout"]["swapped_after_s"]) == {"aws", "gcp", "azure"}
    assert demo["rollout"]["canary_ok_after_s"] >= max(demo["rollout"]["swapped_after_s"].values())


def test_a_bad_version_was_rolled_back_on_its_own_without_weight(demo: dict[str, Any]) -> None:
    bad = demo["bad_rollout"]
    assert bad["status"] == "rolled-back"
    assert bad["reason"].startswith("serve: ")  # its endpoint refused it: the canary failed at load
    assert len(bad["moved"]) == 1  # caught in the first stage
    assert bad["max_weight_given"] == 0
    served = {v for row in demo["traffic"]["per_cloud"].values() for v in row["versions"]}
    assert bad["version"] not in served  # no request was answered by it
    kinds = [e["kind"] for e in demo["events"]]
    assert kinds.index("bad_rollout") < kinds.index("rolled_back")
    assert any(e.get("label") == "rolled back" for e in demo["events"])
    from orchestrator.demo.report import MARKED

    assert {"bad_rollout", "rolled_back"} <= MARKED  # lines in the plot


def test_v2_passed_the_champion_challenger_gate_on_rows_neither_model_trained_on(
    demo: dict[str, Any],
) -> None:
    gate = demo["gate"]
    assert gate["decision"] == "accepted"
    assert 0 < gate["rows"] < 450  # digits' test split is 450 rows; v1 trained on some of v2's
    assert any(e["kind"] == "gate" for e in demo["events"])


def test_the_shifted_cloud_and_its_pixels_are_named_by_the_drift_report(demo: dict[str, Any]) -> None:
    drift = demo["drift"]
    assert drift["shifted"] == "gcp"
    assert drift["status"]["gcp"] in ("warn", "alarm")
    assert drift["status"]["aws"] in ("ok", "warn")
    assert drift["status"]["azure"] in ("ok", "warn")
    assert drift["worst"]["feature"].startswith("pixel_")
    assert drift["worst"]["psi"] >= 0.25
    report = Path(drift["report"])
    assert report.is_file()
    assert "gcp" in report.read_text()
    markdown = Path(demo["report"]["markdown"]).read_text()
    assert "drift/drift.md" in markdown
    from orchestrator.demo.report import MARKED

    assert "drift" in MARKED


def test_both_versions_were_signed_and_the_endpoints_required_it(demo: dict[str, Any]) -> None:
    work = Path(demo["report"]["markdown"]).parent.parent / "work"
    for version in demo["versions"].values():
        assert (work / "artifacts" / demo["model"] / version / "model.sig").is_file()
    for cloud in ("aws", "gcp", "azure"):
        log = (work / "logs" / f"endpoint-{cloud}.log").read_text()
        assert '"event":"signatures required"' in log
        assert "signatures are not checked" not in log


def test_the_report_and_nothing_left_running(demo: dict[str, Any]) -> None:
    report = demo["report"]
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Timeline" in Path(report["markdown"]).read_text()
    assert len(demo["processes"]["started"]) >= 7, "3 emulators, 3 endpoints, the restarted one"
    assert demo["processes"]["left"] == []
    assert not [pid for pid in demo["processes"]["started"] if alive(pid)]


def test_ctrl_c_mid_story_stops_everything(tmp_path: Path) -> None:
    argv = ["demo", "--json", str(tmp_path / "demo.json"), "--report", str(tmp_path / "report")]
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: set[int] = set()
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:
            started.update(children(process.pid))
            if "predictions/s" in line or time.monotonic() > deadline:
                break
        started.update(children(process.pid))
        assert len(started) >= 6, f"the clouds were up before the interrupt: {started}"
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    figures = json.loads((tmp_path / "demo.json").read_text())
    assert figures["interrupted"] is True
    assert figures["processes"]["left"] == []
    assert not [pid for pid in started if alive(pid)], "every child process is gone"
