"""The signing public key reaches every cloud's endpoint as plain configuration, and the health job
is told the only endpoints it may use; both validated before any resource exists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.specs.endpoint import parse_endpoint_spec
from infra.specs.fields import ConfigError
from infra.specs.health_job import parse_health_job_spec
from tests.infra.conftest import ENDPOINT_COMPONENTS, OTHER_ENDPOINTS, SIGNING_PUBLIC_KEY
from tests.infra.harness import StackRun

NS = "ml-orchestrator"


def endpoint_env(run: StackRun) -> dict[str, str]:
    endpoint = run.ok().within(ENDPOINT_COMPONENTS[run.stack])
    if run.stack == "aws":
        (container,) = json.loads(
            endpoint.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"]
        )
        return {e["name"]: e["value"] for e in container["environment"]}
    if run.stack == "gcp":
        (container,) = endpoint.one("gcp:cloudrunv2/service:Service")["template"]["containers"]
        return {e["name"]: e["value"] for e in container["envs"] if "value" in e}
    (container,) = endpoint.one("azure-native:app:ContainerApp")["template"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_public_key_reaches_the_endpoint_as_plain_configuration(
    runs: dict[str, StackRun], cloud: str
) -> None:
    signed = runs[f"{cloud}_signed"]
    assert endpoint_env(signed)["MODEL_SIGNING_PUBLIC_KEY"] == SIGNING_PUBLIC_KEY
    assert "MODEL_SIGNING_PUBLIC_KEY" not in endpoint_env(runs[cloud]), "no key configured: none passed"
    # Plain: a public key is no secret, and nothing marks it as one.
    assert not [
        path for r in signed.resources for path in r.secrets if "MODEL_SIGNING" in json.dumps(r.inputs)
    ]


def test_the_aws_job_is_told_every_allowed_endpoint(runs: dict[str, StackRun]) -> None:
    run = runs["aws_signed"].ok()
    job = run.within("ml-orchestrator:infra:AwsHealthJob")
    (container,) = json.loads(job.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert json.loads(env["ORCHESTRATOR_ENDPOINTS"]) == {
        **OTHER_ENDPOINTS,
        "aws": run.exports["endpoint_url"],
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n", "private key"),
        ("/keys/signing.pub", "PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----", "PEM public key"),
    ],
)
def test_a_signing_key_that_is_not_a_public_pem_is_refused(value: str, reason: str) -> None:
    raw = {
        "image": "r.example.com/ml-endpoint@sha256:" + "0" * 64,
        "model_name": "digits",
        "signing_public_key": value,
    }
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        parse_endpoint_spec("aws", raw, "us-east-1", namespace=NS)
    assert caught.value.key == f"{NS}:endpoint.signing_public_key"


def test_the_key_cannot_be_smuggled_through_environment() -> None:
    raw = {
        "image": "r.example.com/ml-endpoint@sha256:" + "0" * 64,
        "model_name": "digits",
        "environment": {"MODEL_SIGNING_PUBLIC_KEY": "x"},
    }
    with pytest.raises(ConfigError, match="set by this program"):
        parse_endpoint_spec("aws", raw, "us-east-1", namespace=NS)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"endpoints": {"aws": "https://a.example.com"}}, "endpoints.aws", "this stack's own endpoint"),
        ({"endpoints": {"ibm": "https://a.example.com"}}, "endpoints.ibm", "is not a cloud"),
        ({"endpoints": {"gcp": "ftp://a.example.com"}}, "endpoints.gcp", "not an endpoint URL"),
        ({"endpoints": {"gcp": "https://a.example.com/x?y=1"}}, "endpoints.gcp", "not an endpoint URL"),
    ],
)
def test_job_endpoint_rules(raw: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        parse_health_job_spec("aws", raw, namespace=NS)
    assert caught.value.key == f"{NS}:health_job.{key}"
