"""Bad configuration fails at program start, before any resource, naming the key.

The end-to-end cases run the real program on a committed stack file with one value broken
(``run_stack``); the pure cases call the parsers directly for the finer rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.specs.aws_options import FARGATE_SIZES, parse_aws_options
from infra.specs.endpoint import parse_endpoint_spec
from infra.specs.fields import ConfigError
from infra.specs.gcp_options import parse_gcp_options
from infra.specs.weighted_dns import parse_dns_spec
from tests.infra.conftest import IMAGE, TOKENS, run_all
from tests.infra.harness import DELETE, StackRun, stack_config

NS = "ml-orchestrator"
E = f"{NS}:endpoint"

# name: (stack, overrides, the key the error must name, a fragment of the reason); overrides
# may carry "secrets": configuration Pulumi holds as secrets.
BAD: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "image_not_pinned": (
        "aws",
        {f"{E}.image": "ghcr.io/example/ml-endpoint:latest"},
        f"{E}.image",
        "pinned by digest",
    ),
    "image_empty_digest": ("gcp", {f"{E}.image": "ghcr.io/example/ml-endpoint@"}, f"{E}.image", "sha256"),
    "digest_malformed": (
        "azure",
        {f"{E}.image": "ghcr.io/example/ml-endpoint@sha256:abc"},
        f"{E}.image",
        "sha256",
    ),
    "aws_region": ("aws", {"aws:region": "US East 1"}, "aws:region", "like us-east-1"),
    "gcp_region_is_a_zone": ("gcp", {"gcp:region": "us-central1-a"}, "gcp:region", "like us-central1"),
    "azure_region_display_name": (
        "azure",
        {"azure-native:location": "West Europe"},
        "azure-native:location",
        "westeurope",
    ),
    "region_missing": ("aws", {"aws:region": DELETE}, "aws:region", "is required"),
    "min_above_max": (
        "azure",
        {f"{E}.min_instances": 5, f"{E}.max_instances": 2},
        f"{E}.min_instances",
        "more than max_instances",
    ),
    "fargate_pair": ("aws", {f"{E}.memory": 16}, f"{E}.memory", "not a Fargate size"),
    "fargate_cpu": ("aws", {f"{E}.cpu": 3, f"{E}.memory": 6}, f"{E}.cpu", "Fargate offers"),
    "cloud_run_memory_needs_cpu": ("gcp", {f"{E}.memory": 8}, f"{E}.cpu", "at least 2 vCPU"),
    "container_apps_ratio": ("azure", {f"{E}.memory": 3}, f"{E}.memory", "exactly 2 GiB"),
    "typo": ("gcp", {f"{E}.max_instance": 4}, f"{E}.max_instance", "not a known key"),
    "secret_in_environment": (
        "azure",
        {f"{E}.environment": {"DB_PASSWORD": "x"}},
        f"{E}.environment.DB_PASSWORD",
        "secret",
    ),
    # A public name on AWS needs the zone its certificate is validated in.
    "public_name_without_zone": (
        "aws",
        {f"{NS}:aws.hosted_zone_id": DELETE},
        f"{NS}:aws.hosted_zone_id",
        "is required with endpoint.public_name",
    ),
    "public_name_not_a_name": (
        "gcp",
        {f"{E}.public_name": "https://model.example.com"},
        f"{E}.public_name",
        "DNS name",
    ),
    # Secrets by value shape, whatever the key, at any depth of any object.
    "aws_key_in_environment": (
        "aws",
        {f"{E}.environment": {"NOTE": "AKIAABCDEFGHIJKLMNOP"}},
        f"{E}.environment.NOTE",
        "an AWS access key id",
    ),
    "private_key_as_signing_key": (
        "gcp",
        {
            f"{E}.signing_public_key": (
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"
            )
        },
        f"{E}.signing_public_key",
        "a PEM private key",
    ),
    "connection_string_in_azure_options": (
        "azure",
        {f"{NS}:azure.container": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc=="},
        f"{NS}:azure.container",
        "connection string",
    ),
    "random_token_in_job_endpoints": (
        "aws",
        {
            f"{NS}:health_job.endpoints": {
                "gcp": "https://gcp.example.com/?key=Zx81kQ2mN7pL4rT9vW3yB6cD0fH5jS8a"
            }
        },
        f"{NS}:health_job.endpoints.gcp",
        "random token",
    ),
    "password_in_url": (
        "dns",
        {f"{NS}:dns.stacks": {"aws": "https://user:hunter2@example.com/aws"}},
        f"{NS}:dns.stacks.aws",
        "a URL with a password",
    ),
    "jwt_in_alert_emails": (
        "gcp",
        {f"{NS}:health_job.alert_emails": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJl"]},
        f"{NS}:health_job.alert_emails[0]",
        "a JSON Web Token",
    ),
    # The API token: a Pulumi secret or nothing.
    "token_in_plain_text": (
        "aws",
        {f"{NS}:api_token": TOKENS[f"{NS}:api_token"]},
        f"{NS}:api_token",
        "stored in plain text",
    ),
    "previous_token_alone": (
        "gcp",
        {"secrets": {f"{NS}:api_token_previous": TOKENS[f"{NS}:api_token_previous"]}},
        f"{NS}:api_token",
        "is required with api_token_previous",
    ),
    "short_token": ("azure", {"secrets": {f"{NS}:api_token": "short"}}, f"{NS}:api_token", "at least 32"),
    "provider_key_in_plain_text": (
        "dns",
        {"aws:secretKey": "x"},
        "aws:secretKey",
        "stored in plain text",
    ),
    "alert_email_malformed": (
        "aws",
        {f"{NS}:health_job.alert_emails": ["ops at example.com"]},
        f"{NS}:health_job.alert_emails",
        "not an email address",
    ),
    "aws_deployer_not_an_arn": (
        "aws",
        {f"{NS}:aws.deployers": ["ml-release"]},
        f"{NS}:aws.deployers",
        "not an IAM role or user ARN",
    ),
    "gcp_deployer_is_everyone": (
        "gcp",
        {f"{NS}:gcp.deployers": ["allUsers"]},
        f"{NS}:gcp.deployers",
        "not one identity",
    ),
    "azure_deployer_not_an_object_id": (
        "azure",
        {f"{NS}:azure.deployers": ["alice@example.com"]},
        f"{NS}:azure.deployers",
        "not an Entra object id",
    ),
    "gcp_project_missing": ("gcp", {"gcp:project": DELETE}, "gcp:project", "is required"),
    "dns_all_zero": (
        "dns",
        {f"{NS}:dns.weights": {"aws": 0, "gcp": 0}},
        f"{NS}:dns.weights",
        "cannot all be 0",
    ),
    "dns_weight_range": ("dns", {f"{NS}:dns.weights": {"aws": 300}}, f"{NS}:dns.weights.aws", "0 to 255"),
    "unknown_cloud": ("aws", {f"{NS}:cloud": "oracle"}, f"{NS}:cloud", "not one of aws, gcp, azure, dns"),
    # The committed AWS job applies routing: without the record it may change, nothing is created.
    "health_job_without_route53": (
        "aws",
        {f"{NS}:health_job.route53": DELETE},
        f"{NS}:health_job.route53",
        "is required with apply",
    ),
}


@pytest.fixture(scope="module")
def bad_runs() -> dict[str, StackRun]:
    scenarios = {}
    for name, (stack, overrides, _, _) in BAD.items():
        plain = {key: value for key, value in overrides.items() if key != "secrets"}
        scenarios[name] = (
            stack,
            {f"{E}.image": IMAGE, **plain} if stack != "dns" else plain,
            overrides.get("secrets", {}),
        )
    return run_all(scenarios)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_configuration_fails_at_start_naming_the_key(bad_runs: dict[str, StackRun], case: str) -> None:
    _, _, key, reason = BAD[case]
    run = bad_runs[case]
    assert run.error is not None, f"{case}: the program accepted it"
    assert run.error.startswith(f"ConfigError: configuration {key}: "), run.error
    assert reason in run.error
    # The message names the key, never the value it refused.
    for value in _secret_values(BAD[case][1]):
        assert value not in run.error
    # At program start: nothing was registered, not even the component.
    assert run.resources == []


def _secret_values(overrides: dict[str, Any]) -> list[str]:
    values = [*overrides.get("secrets", {}).values()]
    for key, value in overrides.items():
        if key in (f"{NS}:api_token", "aws:secretKey"):
            values.append(value)
    return [v for v in values if len(v) > 1]


# --- the parsers, directly ---------------------------------------------------------------------


def _endpoint(**changes: Any) -> dict[str, Any]:
    endpoint = dict(stack_config("aws")[E])
    endpoint.update(changes)
    return endpoint


@pytest.mark.parametrize(("cpu", "memories"), FARGATE_SIZES.items())
def test_every_fargate_size_is_accepted(cpu: float, memories: tuple[float, ...]) -> None:
    for memory in memories:
        spec = parse_endpoint_spec("aws", _endpoint(cpu=cpu, memory=memory), "us-east-1", namespace=NS)
        assert (spec.cpu, spec.memory_gib) == (cpu, memory)


@pytest.mark.parametrize(
    ("cloud", "region", "changes", "key"),
    [
        ("gcp", "us-central1", {"cpu": 0.5, "memory": 1, "concurrency": 80}, f"{E}.concurrency"),
        ("gcp", "us-central1", {"cpu": 0.5, "memory": 2, "concurrency": 1}, f"{E}.memory"),
        ("gcp", "us-central1", {"cpu": 3}, f"{E}.cpu"),
        ("gcp", "us-central1", {"cpu": 4, "memory": 1}, f"{E}.memory"),
        ("gcp", "us-central1", {"memory": 0.25}, f"{E}.memory"),
        ("azure", "westeurope", {"cpu": 0.3, "memory": 0.5}, f"{E}.cpu"),
        ("azure", "westeurope", {"cpu": 8, "memory": 16}, f"{E}.cpu"),
        ("aws", "us-east-1", {"min_instances": 0}, f"{E}.min_instances"),
        ("aws", "us-east-1", {"port": 70000}, f"{E}.port"),
        ("aws", "us-east-1", {"readiness_path": "readyz"}, f"{E}.readiness_path"),
        ("aws", "us-east-1", {"memory": 2.0001}, f"{E}.memory"),
        ("aws", "us-east-1", {"cpu": "1"}, f"{E}.cpu"),
        ("aws", "us-east-1", {"environment": {"PORT": "9000"}}, f"{E}.environment.PORT"),
        ("aws", "us-east-1", {"model_name": "Digits"}, f"{E}.model_name"),
    ],
)
def test_endpoint_rules(cloud: Any, region: str, changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_endpoint_spec(cloud, _endpoint(**changes), region, namespace=NS)
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("cloud", "region", "changes"),
    [
        ("gcp", "europe-west4", {"cpu": 0.5, "memory": 1, "concurrency": 1}),
        ("gcp", "us-central1", {"cpu": 2, "memory": 8}),
        ("gcp", "northamerica-northeast1", {"cpu": 8, "memory": 32}),
        ("azure", "eastus2", {"cpu": 0.25, "memory": 0.5}),
        ("azure", "westeurope", {"cpu": 4, "memory": 8, "min_instances": 0}),
        ("aws", "us-gov-west-1", {"cpu": 16, "memory": 120}),
    ],
)
def test_sizes_each_platform_accepts(cloud: Any, region: str, changes: dict[str, Any]) -> None:
    spec = parse_endpoint_spec(cloud, _endpoint(**changes), region, namespace=NS)
    assert spec.region == region


def test_aws_zone_without_a_public_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="only used with") as caught:
        parse_aws_options({"hosted_zone_id": "Z0123456789EXAMPLE"}, "us-east-1", namespace=NS)
    assert caught.value.key == f"{NS}:aws.hosted_zone_id"


def test_the_first_up_needs_no_image() -> None:
    spec = parse_endpoint_spec("gcp", _endpoint(image=None), "us-central1", namespace=NS)
    assert (spec.image, spec.digest, spec.image_name) == (None, None, "ml-endpoint")


def test_gcp_invokers_must_be_iam_members() -> None:
    with pytest.raises(ConfigError, match="not an IAM member") as caught:
        parse_gcp_options({"invokers": ["alice@example.com"]}, "my-ml-project", namespace=NS)
    assert caught.value.key == f"{NS}:gcp.invokers"


def test_dns_stacks_default_to_the_organization_and_project() -> None:
    spec = parse_dns_spec(stack_config("dns")[f"{NS}:dns"], namespace=NS, organization="acme", project="p")
    assert dict(spec.stacks) == {"aws": "acme/p/aws", "gcp": "acme/p/gcp", "azure": "acme/p/azure"}
    assert spec.record_name == "model.example.com"
