"""Output a user can redirect: real `orchestrator` processes with a 40-column terminal width and
standard output going to a file. Machine-readable output (YAML, JSON) is never wrapped or
decorated; JSON keys clouds the same way in every command and writes times as ISO 8601 UTC;
`health --watch --json` writes one JSON document per line per round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.demo.processes import free_port
from tests.control.test_stacks import STACKS, write

LONG_URL = "https://" + "a" * 60 + ".blob.core.windows.net"


def _run(*args: str, tmp_path: Path, timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, stdout read back from the file it was redirected to, stderr)."""
    out = tmp_path / f"stdout-{time.monotonic_ns()}.txt"
    env = {**os.environ, "COLUMNS": "40", "LINES": "10", "TERM": "xterm-256color"}
    with out.open("w") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    return result.returncode, out.read_text(), result.stderr


def _stacks(tmp_path: Path) -> list[str]:
    azure = {
        **STACKS["azure"],
        "storage_settings": {"account_url": LONG_URL},
        "public_name": "model.example.com",
        "api_token_secrets": {"current": "https://mlvault.vault.azure.net/secrets/api-token/" + "0" * 32},
    }
    aws = {
        **STACKS["aws"],
        "endpoint_url": "https://aws.model.example.com",
        "public_name": "model.example.com",
    }
    gcp = {
        **STACKS["gcp"],
        "endpoint_url": "https://gcp.model.example.com",
        "public_name": "Model.Example.com.",
    }
    return [str(p) for p in write(tmp_path, aws=aws, gcp=gcp, azure=azure, dns=STACKS["dns"])]


def test_from_stacks_redirected_at_40_columns_is_the_same_yaml_as_out(tmp_path: Path) -> None:
    code, printed, stderr = _run("config", "from-stacks", *_stacks(tmp_path), tmp_path=tmp_path)
    assert code == 0, stderr
    target = tmp_path / "orchestrator.yaml"
    code, confirmation, stderr = _run(
        "config", "from-stacks", *_stacks(tmp_path), "--out", str(target), tmp_path=tmp_path
    )
    assert code == 0, stderr
    assert confirmation == ""  # the confirmation is on stderr
    assert "wrote" in stderr
    assert printed == target.read_text()
    data = yaml.safe_load(printed)
    assert data["clouds"]["azure"]["storage_settings"]["account_url"] == LONG_URL
    assert any(line.endswith(LONG_URL) for line in printed.splitlines())  # on one line
    assert data["endpoint"] == {"public_name": "model.example.com"}
    assert data["auth"] == {"token": "env://API_TOKEN"}


def test_config_check_prints_the_yaml_alone_on_stdout_and_the_header_on_stderr(tmp_path: Path) -> None:
    target = tmp_path / "orchestrator.yaml"
    assert _run("config", "from-stacks", *_stacks(tmp_path), "--out", str(target), tmp_path=tmp_path)[0] == 0
    code, printed, stderr = _run("config", "check", "--config", str(target), tmp_path=tmp_path)
    assert code == 0, stderr
    assert "is valid" in stderr
    assert "is valid" not in printed
    effective = yaml.safe_load(printed)
    assert effective["clouds"]["azure"]["storage_settings"]["account_url"] == LONG_URL
    code, as_json, _ = _run("config", "check", "--config", str(target), "--json", tmp_path=tmp_path)
    assert code == 0
    assert json.loads(as_json) == effective


def _fleet_config(tmp_path: Path) -> Path:
    """Three clouds whose endpoints refuse connections: every probe fails at once."""
    clouds = {cloud: {"endpoint": f"http://127.0.0.1:{free_port()}"} for cloud in ("aws", "gcp", "azure")}
    data = {
        "model": {"name": "iris"},
        "clouds": clouds,
        "health": {"interval_s": 0.2, "timeout_s": 0.2, "jitter": 0.0, "startup_grace_s": 0},
        "routing": {"backend": "file", "file": {"path": str(tmp_path / "routing.json")}},
        "state": {"path": str(tmp_path / "state.db")},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _is_utc_time(value: object) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() == timedelta(0)


def _is_time_key(key: str) -> bool:
    """The documented rule: `at`, any `*_at` and any `*_until` key holds a time."""
    return key == "at" or key.endswith(("_at", "_until"))


def _times(data: Any) -> list[object]:
    """Every value of a time key (`at`, `*_at`, `*_until`) in a JSON document."""
    found: list[object] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if _is_time_key(key) and value is not None:
                found.append(value)
            found += _times(value)
    elif isinstance(data, list):
        for item in data:
            found += _times(item)
    return found


def test_json_outputs_key_clouds_alike_and_write_utc_times(tmp_path: Path) -> None:
    config = str(_fleet_config(tmp_path))
    code, health, stderr = _run(
        "health", "--once", "--apply", "--json", "--config", config, tmp_path=tmp_path
    )
    assert code == 2, stderr  # no cloud is healthy
    code2, status, stderr = _run("status", "--json", "--config", config, tmp_path=tmp_path)
    assert code2 in (0, 4), stderr
    code3, route, stderr = _run("route", "--json", "--config", config, tmp_path=tmp_path)
    assert code3 == 2, stderr  # no routable cloud: a panic
    documents = [json.loads(health), json.loads(status), json.loads(route)]
    for document in documents:
        times = _times(document)
        assert all(_is_utc_time(t) for t in times), times
    assert _times(documents[0])  # probes and flips carry times
    assert _times(documents[1])
    for clouds in (
        documents[0]["clouds"],
        documents[0]["decision"]["clouds"],
        documents[1]["clouds"],
        documents[1]["decision"]["clouds"],
        documents[2]["clouds"],
    ):
        assert sorted(clouds) == ["aws", "azure", "gcp"]
        assert all(isinstance(entry, dict) and "cloud" not in entry for entry in clouds.values())


def test_the_vantage_points_lease_and_observations_carry_utc_times(tmp_path: Path) -> None:
    # The leader lease's expiry (and each copy's) is a time like the probes' `at`: a vantage
    # point's JSON must not fall back to unix seconds for keys nobody listed.
    config = _fleet_config(tmp_path)
    for name in ("a", "b", "c"):  # each point's home, as a bucket: not created on demand
        (tmp_path / name).mkdir()
    data = yaml.safe_load(config.read_text())
    data["vantage"] = {
        "id": "a",
        "min_voters": 1,
        "points": {name: {"storage": (tmp_path / name).as_uri()} for name in ("a", "b", "c")},
    }
    config.write_text(yaml.safe_dump(data))
    code, health, stderr = _run(
        "health", "--once", "--apply", "--json", "--config", str(config), tmp_path=tmp_path
    )
    assert code == 2, stderr
    code, status, stderr = _run("status", "--json", "--config", str(config), tmp_path=tmp_path)
    assert code in (0, 4), stderr
    assert json.loads(health)["vantage"]["lease"]["holder"] == "a"
    for document in (json.loads(health), json.loads(status)):
        lease = document["vantage"]["lease"]  # released at the job's exit: status sees no holder
        assert all(_is_utc_time(copy["expires_at"]) for copy in lease["copies"].values()), lease
        assert lease["expires_at"] is None or _is_utc_time(lease["expires_at"]), lease
        assert all(_is_utc_time(t) for t in _times(document)), _times(document)


def test_health_watch_json_prints_one_json_document_per_line(tmp_path: Path) -> None:
    config = str(_fleet_config(tmp_path))
    out = tmp_path / "watch.jsonl"
    env = {**os.environ, "COLUMNS": "40"}
    with out.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "health", "--watch", "--json", "--config", config],
            stdout=handle,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while len(out.read_text().splitlines()) < 3:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "no three rounds within 60 s"
                time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=30)
            if process.stderr:
                process.stderr.close()
    lines = out.read_text().splitlines()
    complete = lines if out.read_text().endswith("\n") else lines[:-1]
    assert len(complete) >= 3
    for line in complete:
        report = json.loads(line)
        assert sorted(report["clouds"]) == ["aws", "azure", "gcp"]
        assert all(_is_utc_time(t) for t in _times(report))


@pytest.mark.parametrize("command", [["status"], ["route"], ["config", "check"]])
def test_errors_go_to_stderr_and_leave_stdout_empty(tmp_path: Path, command: list[str]) -> None:
    code, printed, stderr = _run(*command, "--config", str(tmp_path / "missing.yaml"), tmp_path=tmp_path)
    assert code == 2
    assert printed == ""
    assert "missing.yaml" in stderr
