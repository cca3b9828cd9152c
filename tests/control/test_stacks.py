"""`orchestrator config from-stacks`: Pulumi stack outputs become a valid orchestrator.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.control.config import load_config

DIGEST = "sha256:" + "a" * 64
COMMON = {"image": f"ghcr.io/example/ml-endpoint@{DIGEST}", "cpu": 1, "min_instances": 1, "max_instances": 4}
STACKS = {
    "aws": {
        **COMMON,
        "cloud": "aws",
        "region": "us-east-1",
        "endpoint_url": "http://ml-alb-123.us-east-1.elb.amazonaws.com",
        "model_uri": "s3://ml-artifacts-abc/models/digits/LATEST",
        "registry": "123.dkr.ecr.us-east-1.amazonaws.com/ml",
        "memory": "2Gi",
    },
    "gcp": {
        **COMMON,
        "cloud": "gcp",
        "region": "us-central1",
        "endpoint_url": "https://ml-endpoint-xyz-uc.a.run.app/",
        "model_uri": "gs://ml-artifacts-def/models/digits/LATEST",
        "registry": "us-central1-docker.pkg.dev/p/ml",
        "memory": "2Gi",
    },
    "azure": {
        **COMMON,
        "cloud": "azure",
        "region": "eastus",
        "endpoint_url": "https://ml-endpoint.eastus.azurecontainerapps.io",
        "model_uri": "az://models/models/digits/LATEST",
        "registry": "mlacr.azurecr.io",
        "memory": 2048,
        "concurrency": 50,
        "storage_settings": {"account_url": "https://mlartifacts.blob.core.windows.net"},
    },
    "dns": {
        "record_name": "model.example.com.",
        "zone_id": "Z123EXAMPLE",
        "ttl": 20,
        "health_check_ids": {"aws": "hc-aws-1", "gcp": "hc-gcp-2", "azure": "hc-azure-3"},
    },
}


def write(tmp_path: Path, **stacks: dict) -> list[Path]:
    paths = []
    for name, outputs in stacks.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(outputs))
        paths.append(path)
    return paths


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "config", "from-stacks", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_four_stacks_make_a_valid_configuration(tmp_path: Path) -> None:
    out = tmp_path / "orchestrator.yaml"
    result = run(*map(str, write(tmp_path, **STACKS)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = load_config(out)
    assert config.model.name == "digits"
    assert config.clouds["aws"].storage == "s3://ml-artifacts-abc"
    assert config.clouds["gcp"].endpoint == "https://ml-endpoint-xyz-uc.a.run.app"
    assert config.clouds["azure"].storage == "az://models"
    assert config.clouds["azure"].size.memory_gib == 2.0, "2048 (MiB) and 2Gi agree"
    assert config.clouds["aws"].capacity_rps == 400
    assert config.clouds["azure"].size.concurrency == 50
    assert config.clouds["azure"].storage_settings == {
        "account_url": "https://mlartifacts.blob.core.windows.net"
    }
    assert config.routing.backend == "route53"
    assert config.routing.route53 is not None
    assert config.routing.route53.hosted_zone_id == "Z123EXAMPLE"
    # What the route53 backend needs to create a record the stack's way, should one be missing.
    assert config.routing.route53.ttl == 20
    assert config.routing.route53.health_check_ids == {
        "aws": "hc-aws-1",
        "gcp": "hc-gcp-2",
        "azure": "hc-azure-3",
    }


def test_endpoints_following_another_channel_set_model_channel(tmp_path: Path) -> None:
    stable = {
        c: {**STACKS[c], "model_uri": STACKS[c]["model_uri"].replace("LATEST", "STABLE")}
        for c in ("aws", "gcp")
    }
    result = run(*map(str, write(tmp_path, **stable)))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"] == {"name": "digits", "channel": "STABLE"}
    latest = run(*map(str, write(tmp_path, aws=STACKS["aws"])))
    assert yaml.safe_load(latest.stdout)["model"] == {"name": "digits"}  # LATEST, the default


def test_without_a_dns_stack_routing_is_the_file_backend(tmp_path: Path) -> None:
    result = run(*map(str, write(tmp_path, aws=STACKS["aws"])))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["routing"] == {"backend": "file"}


@pytest.mark.parametrize(
    ("stacks", "message"),
    [
        ({"aws": {**STACKS["aws"], "endpoint_url": ""}}, "aws.json: stack output 'endpoint_url' is missing"),
        ({"aws": {**STACKS["aws"], "model_uri": "s3://b/digits"}}, "aws.json: stack output 'model_uri'"),
        ({"aws": {**STACKS["aws"], "memory": "lots"}}, "aws.json: stack output 'memory'"),
        (
            {"aws": STACKS["aws"], "gcp": {**STACKS["gcp"], "model_uri": "gs://b/models/iris/LATEST"}},
            "different models",
        ),
        (
            {"aws": STACKS["aws"], "gcp": {**STACKS["gcp"], "model_uri": "gs://b/models/digits/STABLE"}},
            "follow different channels: LATEST, STABLE",
        ),
        (
            {"aws": {**STACKS["aws"], "model_uri": "s3://b/models/digits/Stable"}},
            "aws.json: stack output 'model_uri'",
        ),
        ({"aws": STACKS["aws"], "again": STACKS["aws"]}, "a second stack for cloud 'aws'"),
        ({"dns": STACKS["dns"]}, "no endpoint stack"),
    ],
)
def test_bad_outputs_name_the_file_and_the_key(tmp_path: Path, stacks: dict, message: str) -> None:
    result = run(*map(str, write(tmp_path, **stacks)))
    assert result.returncode == 2
    assert message in result.stderr


def test_a_file_that_is_not_stack_output_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "aws.json"
    bad.write_text("Current stack outputs (10):")
    result = run(str(bad))
    assert result.returncode == 2
    assert "aws.json: not JSON" in result.stderr


def test_a_masked_secret_is_refused_naming_the_output_and_the_flag(tmp_path: Path) -> None:
    masked = {**STACKS["azure"], "storage_settings": {"account_url": "[secret]"}}
    out = tmp_path / "orchestrator.yaml"
    result = run(*map(str, write(tmp_path, azure=masked)), "--out", str(out))
    assert result.returncode == 2
    assert "azure.json: stack output 'storage_settings.account_url' is a masked secret" in result.stderr
    assert "--show-secrets" in result.stderr
    assert not out.exists(), "nothing written as if the mask were the value"


def test_an_invalid_output_is_named_without_its_value(tmp_path: Path) -> None:
    secretish = "sv=2024&sig=TOPSECRETSIGNATURE"
    bad = {**STACKS["gcp"], "endpoint_url": f"ftp://{secretish}"}
    result = run(*map(str, write(tmp_path, gcp=bad)))
    assert result.returncode == 2
    assert "gcp.json: stack output 'endpoint_url' is not valid (clouds.gcp.endpoint)" in result.stderr
    assert "TOPSECRET" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def _named(cloud: str, name: str = "model.example.com", **extra: object) -> dict:
    return {
        **STACKS[cloud],
        "endpoint_url": f"https://{cloud}.model.example.com",
        "public_name": name,
        **extra,
    }


def test_the_public_name_and_the_token_reference_come_from_the_stacks(tmp_path: Path) -> None:
    token = {"current": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ml-api-token-AbCdEf"}
    stacks = {
        "aws": _named("aws", api_token_secrets=token),
        "gcp": _named("gcp", "Model.Example.com."),
        "azure": _named("azure", api_token_secrets={}),
        "dns": STACKS["dns"],
    }
    result = run(*map(str, write(tmp_path, **stacks)))
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["endpoint"] == {"public_name": "model.example.com"}
    # Every cloud's job gets the token from its own cloud's store in API_TOKEN, by reference.
    assert data["auth"] == {"token": "env://API_TOKEN"}
    assert "secretsmanager" not in result.stdout


def test_without_a_public_name_or_tokens_the_keys_are_left_out(tmp_path: Path) -> None:
    result = run(*map(str, write(tmp_path, aws=STACKS["aws"], gcp={**STACKS["gcp"], "public_name": None})))
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert "endpoint" not in data
    assert "auth" not in data


@pytest.mark.parametrize(
    ("stacks", "message"),
    [
        (
            {"aws": _named("aws"), "gcp": _named("gcp", "other.example.com")},
            "gcp.json: stack output 'public_name' differs from",
        ),
        (
            {"aws": _named("aws"), "dns": {**STACKS["dns"], "record_name": "other.example.com."}},
            "'record_name' (dns) is not the cloud stacks' public_name",
        ),
        (
            {"aws": {**STACKS["aws"], "public_name": "model.example.com"}},
            "aws.json: stack output 'endpoint_url' is not valid (clouds.aws.endpoint)",
        ),
        ({"aws": _named("aws", api_token_secrets="arn:x")}, "'api_token_secrets' is not an object"),
    ],
)
def test_stacks_that_disagree_on_the_public_name_are_refused(
    tmp_path: Path, stacks: dict, message: str
) -> None:
    result = run(*map(str, write(tmp_path, **stacks)))
    assert result.returncode == 2
    assert message in result.stderr
