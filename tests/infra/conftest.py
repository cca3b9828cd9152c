"""Fixtures for the Pulumi program tests: each stack runs once per session, in parallel.

The program runs under ``pulumi.runtime.set_mocks`` in a fresh process per run
(``tests.infra.harness``, which also holds the ``Mocks`` that answer like the providers), with
the committed ``Pulumi.<stack>.yaml`` as its configuration, plus overrides for the variants:

- ``aws``, ``gcp``, ``azure``: the committed stack files (a public name, HTTPS) with an image
  configured and two API tokens (a rotation: current and previous) set as Pulumi secrets;
- ``aws_first_up``, ``gcp_first_up``, ``azure_first_up``: the committed stack files as the first
  `up` sees them (no image yet, no token; jobs enabled), with deployer principals;
- ``aws_http``: an image, no public name, no token, the health job without ``--apply``;
- ``gcp_job``, ``azure_job``: their health jobs enabled (probe and record only, the default), no
  public name, no token;
- ``gcp_job_apply``, ``azure_job_apply``: enabled with ``--apply``, AWS credentials from the
  cloud's secret store, alert emails;
- ``aws_signed``, ``gcp_signed``, ``azure_signed``: a signing public key configured (and on AWS
  the other clouds' endpoints for the job's allowlist and alert emails; on GCP a list of
  invokers instead of ``allUsers``; on Azure the custom domain's second step, bound);
- ``dns``: the DNS stack, its StackReferences answered with the three cloud runs' real exports.

The endpoint fixtures (``aws_run``, ``gcp_run``, ``azure_run``, ``cloud_runs``...) hold the
endpoint component's resources only (``StackRun.within``): the AWS stack file also enables the
health job, whose resources test_health_job.py checks on the full runs (``runs``).

No cloud account, CLI or provider plugin is involved; the suite-wide ``_no_real_clouds`` fixture
(tests/conftest.py) scrubs credentials from the environment the runs inherit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.infra.harness import DELETE, StackRun, run_stack

# The variants the tests look at; they all start together on first use.
IMAGE = "ghcr.io/example/ml-endpoint@sha256:" + "0123456789abcdef" * 4
PUBLIC_NAME = "model.example.com"  # the committed stack files' placeholder, the dns stack's record
HOSTED_ZONE_ID = "Z0123456789EXAMPLE"
# Two tokens, as during a rotation; test values set as Pulumi secrets (never in a stack file).
TOKENS = {
    "ml-orchestrator:api_token": "current-token-0123456789abcdefghijklmnopqrstuvwxyz",
    "ml-orchestrator:api_token_previous": "previous-token-0123456789abcdefghijklmnopqrstuvwxyz",
}
E = "ml-orchestrator:endpoint"
WITH_IMAGE = {f"{E}.image": IMAGE}
NO_PUBLIC_NAME = {f"{E}.public_name": DELETE}
ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
AWS_DEPLOYER = "arn:aws:iam::123456789012:role/ml-release"
GCP_DEPLOYER = "serviceAccount:release@my-ml-project.iam.gserviceaccount.com"
AZURE_DEPLOYER = "11111111-2222-4333-8444-555555555555"
PRIVATE_INVOKER = "serviceAccount:orchestrator@my-ml-project.iam.gserviceaccount.com"
GCP_AWS_CREDENTIALS = "route53-applier"
AZURE_AWS_CREDENTIALS = (
    "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/secrets"
    "/providers/Microsoft.KeyVault/vaults/ml-secrets/secrets/route53-applier"
)
JOB = "ml-orchestrator:health_job"
# A public key only (a test value; its private half was never kept): the stacks pass it as plain
# configuration to the endpoints, which then serve only versions signed by the matching private key.
SIGNING_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE28/en3HqbMFjKPWLzoXxRIy3gNZ1
etzaSE7YBzVMwXywcraAokyC6EHmnhpZ1ss3V4eeAv5YDQIJABFlJVPTGA==
-----END PUBLIC KEY-----
"""
OTHER_ENDPOINTS = {"gcp": "https://gcp.model.example.com", "azure": "https://azure.model.example.com"}
ENDPOINT_COMPONENTS = {
    "aws": "ml-orchestrator:infra:AwsEndpoint",
    "gcp": "ml-orchestrator:infra:GcpEndpoint",
    "azure": "ml-orchestrator:infra:AzureEndpoint",
}
# name: (stack, overrides, secrets). Each run costs seconds of CPU, so a variant covers several
# independent options where no assertion depends on their combination.
VARIANTS: Mapping[str, tuple[str, Mapping[str, Any], Mapping[str, str]]] = {
    "aws": ("aws", WITH_IMAGE, TOKENS),
    "gcp": ("gcp", WITH_IMAGE, TOKENS),
    "azure": ("azure", WITH_IMAGE, TOKENS),
    # The committed files as the runbook's first `up` sees them (jobs on everywhere), plus the
    # deployer principals that will push the image.
    "aws_first_up": ("aws", {"ml-orchestrator:aws.deployers": [AWS_DEPLOYER]}, {}),
    "gcp_first_up": ("gcp", {f"{JOB}.enabled": True, "ml-orchestrator:gcp.deployers": [GCP_DEPLOYER]}, {}),
    "azure_first_up": (
        "azure",
        {f"{JOB}.enabled": True, "ml-orchestrator:azure.deployers": [AZURE_DEPLOYER]},
        {},
    ),
    # No public name (each platform's own host), no token; the AWS job without --apply.
    "aws_http": (
        "aws",
        {**WITH_IMAGE, **NO_PUBLIC_NAME, "ml-orchestrator:aws.hosted_zone_id": DELETE, f"{JOB}.apply": False},
        {},
    ),
    "gcp_job": ("gcp", {**WITH_IMAGE, **NO_PUBLIC_NAME, f"{JOB}.enabled": True}, {}),
    "azure_job": ("azure", {**WITH_IMAGE, **NO_PUBLIC_NAME, f"{JOB}.enabled": True}, {}),
    "gcp_job_apply": (
        "gcp",
        {
            **WITH_IMAGE,
            f"{JOB}.enabled": True,
            f"{JOB}.apply": True,
            f"{JOB}.aws_credentials_secret": GCP_AWS_CREDENTIALS,
            f"{JOB}.alert_emails": ALERT_EMAILS,
        },
        TOKENS,
    ),
    "azure_job_apply": (
        "azure",
        {
            **WITH_IMAGE,
            f"{JOB}.enabled": True,
            f"{JOB}.apply": True,
            f"{JOB}.aws_credentials_secret": AZURE_AWS_CREDENTIALS,
            f"{JOB}.alert_emails": ALERT_EMAILS,
        },
        TOKENS,
    ),
    # Signing required; the AWS job told the other clouds' endpoints and alerting two addresses;
    # GCP invoked by a list of members; Azure's custom domain bound (its second step).
    "aws_signed": (
        "aws",
        {
            **WITH_IMAGE,
            "ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY,
            f"{JOB}.endpoints": OTHER_ENDPOINTS,
            f"{JOB}.alert_emails": ALERT_EMAILS,
        },
        TOKENS,
    ),
    "gcp_signed": (
        "gcp",
        {
            **WITH_IMAGE,
            "ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY,
            "ml-orchestrator:gcp.invokers": [PRIVATE_INVOKER],
        },
        TOKENS,
    ),
    "azure_signed": (
        "azure",
        {
            **WITH_IMAGE,
            "ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY,
            "ml-orchestrator:azure.certificate_bound": True,
        },
        TOKENS,
    ),
}


def run_all(
    scenarios: Mapping[str, tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, str]]],
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, StackRun]:
    """Run several scenarios at once, one process each (a run is mostly CPU: one per core);
    a scenario is ``(stack, overrides)`` or ``(stack, overrides, secret configuration)``."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures: dict[str, Future[StackRun]] = {
            name: pool.submit(run_stack, scenario[0], scenario[1], references, *scenario[2:])
            for name, scenario in scenarios.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def runs() -> dict[str, StackRun]:
    return run_all(VARIANTS)


@pytest.fixture(scope="session")
def aws_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["aws"].ok().within(ENDPOINT_COMPONENTS["aws"])


@pytest.fixture(scope="session")
def aws_http_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["aws_http"].ok().within(ENDPOINT_COMPONENTS["aws"])


@pytest.fixture(scope="session")
def gcp_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp"].ok().within(ENDPOINT_COMPONENTS["gcp"])


@pytest.fixture(scope="session")
def gcp_private_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp_signed"].ok().within(ENDPOINT_COMPONENTS["gcp"])


@pytest.fixture(scope="session")
def azure_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["azure"].ok().within(ENDPOINT_COMPONENTS["azure"])


@pytest.fixture(scope="session")
def gcp_http_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp_job"].ok().within(ENDPOINT_COMPONENTS["gcp"])


@pytest.fixture(scope="session")
def azure_http_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["azure_job"].ok().within(ENDPOINT_COMPONENTS["azure"])


@pytest.fixture(scope="session")
def cloud_runs(aws_run: StackRun, gcp_run: StackRun, azure_run: StackRun) -> dict[str, StackRun]:
    return {"aws": aws_run, "gcp": gcp_run, "azure": azure_run}


@pytest.fixture(scope="session")
def dns_runs(cloud_runs: dict[str, StackRun]) -> dict[str, StackRun]:
    """The DNS stack over the three clouds, and over two (azure left out of the weights)."""
    references = {cloud: run.exports for cloud, run in cloud_runs.items()}
    return run_all(
        {
            "dns": ("dns", {}),
            "dns_two_clouds": ("dns", {"ml-orchestrator:dns.weights": {"aws": 70, "gcp": 30}}),
        },
        references,
    )
