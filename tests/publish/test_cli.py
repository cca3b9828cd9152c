"""`orchestrator sync` and `verify` as an operator runs them: a config file, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.demo.emulators import Azurite, GcsEmulator, MotoServer
from orchestrator.training.pipeline import TrainResult


@pytest.fixture
def config(tmp_path: Path, moto_server: MotoServer, gcs_emulator: GcsEmulator, azurite: Azurite) -> Path:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    "aws": {
                        "storage": moto_server.uri(moto_server.create_bucket(), "prod"),
                        "storage_settings": moto_server.settings,
                    },
                    "gcp": {
                        "storage": gcs_emulator.uri(gcs_emulator.create_bucket()),
                        "storage_settings": gcs_emulator.settings,
                    },
                    # The Azure connection string carries a key: it comes from the environment.
                    "azure": {"storage": azurite.uri(azurite.create_bucket())},
                },
            },
            sort_keys=False,
        )
    )
    return path


@pytest.fixture
def run(azurite: Azurite):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        import os

        env = {**os.environ, **azurite.env}
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    return run


def test_sync_then_verify_then_resync_from_a_config_file(run, config: Path, iris_v1: TrainResult) -> None:
    first = run("sync", "--model", str(iris_v1.path), "--config", str(config), "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["ok"]
    # Each cloud is an object keyed by the cloud, as in every other --json document.
    assert list(doc["targets"]) == ["aws", "gcp", "azure"]
    assert all(t["pointer"] == "moved" and "target" not in t for t in doc["targets"].values())

    checked = run("verify", "--config", str(config), "--deep", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = json.loads(checked.stdout)
    assert verified["ok"]
    assert list(verified["targets"]) == ["aws", "gcp", "azure"]
    assert all(t["ok"] and "target" not in t for t in verified["targets"].values())

    again = json.loads(run("sync", "--model", str(iris_v1.path), "--config", str(config), "--json").stdout)
    assert all(t["uploaded"] == [] and "put" not in t["requests"] for t in again["targets"].values())

    text = run("sync", "--model", str(iris_v1.path), "--config", str(config), "--clouds", "aws")
    assert text.returncode == 0
    assert "unchanged" in text.stdout


def test_verify_exits_nonzero_naming_cloud_and_object(run, config: Path, iris_v1: TrainResult) -> None:
    run("sync", "--model", str(iris_v1.path), "--config", str(config))
    gcs_uri = yaml.safe_load(config.read_text())["clouds"]["gcp"]
    from orchestrator.core.storage import open_storage

    open_storage(gcs_uri["storage"], settings=gcs_uri["storage_settings"]).delete(
        f"models/iris/{iris_v1.manifest.version}/report.md"
    )
    result = run("verify", "--config", str(config))
    assert result.returncode == 1
    assert f"gcp: models/iris/{iris_v1.manifest.version}/report.md: missing" in result.stdout


def test_an_older_version_is_refused_with_exit_1(
    run, config: Path, iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    assert run("sync", "--model", str(iris_v1.path), "--config", str(config)).returncode == 0
    assert run("sync", "--model", str(iris_v2.path), "--config", str(config)).returncode == 0
    result = run("sync", "--model", str(iris_v1.path), "--config", str(config), "--clouds", "aws")
    assert result.returncode == 1
    assert "--force" in result.stdout
    assert iris_v2.manifest.version in result.stdout


def test_dry_run_changes_nothing(run, config: Path, iris_v1: TrainResult) -> None:
    result = run("sync", "--model", str(iris_v1.path), "--config", str(config), "--dry-run", "--json")
    doc = json.loads(result.stdout)
    every_file = len(iris_v1.manifest.files) + 1  # and the manifest
    assert all(
        t["pointer"] == "not moved (dry run)" and len(t["uploaded"]) == every_file
        for t in doc["targets"].values()
    )
    verify = run("verify", "--config", str(config), "--json")
    assert verify.returncode == 1
    assert "never published" in verify.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {"name": "iris"}, "clouds": {"aws": {"storage": "http://x"}}}, "clouds.aws.storage"),
        ({"model": {"name": "iris"}, "clouds": {"mars": {"storage": "s3://bkt"}}}, "clouds.mars"),
        ({"clouds": {"aws": {"storage": "s3://bkt"}}}, "model"),
        (
            {"model": {"name": "iris"}, "clouds": {"aws": {"storage": "s3://bkt", "regoin": "x"}}},
            "clouds.aws.regoin",
        ),
        (
            {
                "model": {"name": "iris"},
                "clouds": {"azure": {"storage": "az://cnt", "storage_settings": {"connection_string": "k"}}},
            },
            "must not be written in the configuration file",
        ),
    ],
)
def test_a_bad_config_names_file_and_key(run, tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    result = run("verify", "--config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert message in result.stderr


def test_unknown_cloud_and_missing_config_are_named(run, config: Path, tmp_path: Path) -> None:
    unknown = run("verify", "--config", str(config), "--clouds", "aws,ibm")
    assert unknown.returncode == 2
    assert "ibm" in unknown.stderr
    missing = run("verify", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr
    assert "not found" in missing.stderr


def test_price_overrides_take_numbers_and_billing_modes(run, tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    "aws": {
                        "storage": "s3://bkt",
                        "price": {"egress_usd_per_gb": 0.05, "billing": "in_flight"},
                    }
                },
            }
        )
    )
    result = run("config", "check", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["clouds"]["aws"]["price"] == {
        "egress_usd_per_gb": 0.05,
        "billing": "in_flight",
    }


def test_the_configuration_can_live_in_a_bucket(moto_server: MotoServer) -> None:
    """How the scheduled job reads it in the cloud: ORCHESTRATOR_CONFIG names an object."""
    import hashlib
    import os

    from orchestrator.core.storage import open_storage

    bucket = moto_server.create_bucket()
    text = yaml.safe_dump(
        {"model": {"name": "iris"}, "clouds": {"aws": {"storage": f"s3://{bucket}"}}}
    ).encode()
    storage = open_storage(f"s3://{bucket}/orchestrator", settings=moto_server.settings)
    storage.put("orchestrator.yaml", text, sha256=hashlib.sha256(text).hexdigest())

    def check(uri: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **moto_server.env,
            "ORCHESTRATOR_CONFIG": uri,
            "ORCHESTRATOR_STATE": "s3://bkt/state.json",
        }
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "config", "check", "--json"],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip

    found = check(f"s3://{bucket}/orchestrator/orchestrator.yaml")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["state"]["path"] == "s3://bkt/state.json", "ORCHESTRATOR_STATE wins"
    missing = check(f"s3://{bucket}/orchestrator/nope.yaml")
    assert missing.returncode == 2
    assert "configuration object not found" in missing.stderr


def test_orchestrator_state_keeps_the_files_settings_for_a_store_of_the_same_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.control.config import load_config

    path = tmp_path / "orchestrator.yaml"
    state = {"path": "s3://shared/state.json", "settings": {"endpoint_url": "http://127.0.0.1:9"}}
    path.write_text(yaml.safe_dump({"model": {"name": "iris"}, "clouds": {"aws": {}}, "state": state}))
    monkeypatch.setenv("ORCHESTRATOR_STATE", "s3://aws-job/state.json")
    config = load_config(path)
    assert config.state.path == "s3://aws-job/state.json"
    assert config.state.settings == {"endpoint_url": "http://127.0.0.1:9"}
    monkeypatch.setenv("ORCHESTRATOR_STATE", "gs://gcp-job/state.json")
    assert load_config(path).state.settings == {}, "S3 settings do not apply to GCS"


@pytest.mark.parametrize(
    ("allowed", "status", "message"),
    [
        (None, 0, ""),
        ({"aws": "https://aws.example.com/", "gcp": "https://gcp.example.com"}, 0, ""),
        ({"aws": "https://aws.example.com"}, 2, "clouds.gcp.endpoint: gcp is not among the endpoints"),
        (
            {"aws": "https://aws.example.com", "gcp": "https://proxy.attacker.example"},
            2,
            "https://gcp.example.com is not the endpoint the gcp stack exported (https://proxy.attacker.example)",
        ),
        ("not json", 2, "ORCHESTRATOR_ENDPOINTS: not JSON"),
    ],
)
def test_the_job_refuses_endpoints_its_stacks_did_not_export(
    tmp_path: Path, allowed: object, status: int, message: str
) -> None:
    """What a bucket writer could do with the job's configuration: point a cloud elsewhere."""
    import os

    path = tmp_path / "orchestrator.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    "aws": {"endpoint": "https://aws.example.com"},
                    "gcp": {"endpoint": "https://gcp.example.com"},
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_ENDPOINTS"}
    if allowed is not None:
        env["ORCHESTRATOR_ENDPOINTS"] = allowed if isinstance(allowed, str) else json.dumps(allowed)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "config", "check", "--config", str(path)],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    if status:
        assert result.stderr.count("\n") == 1, "one line"
