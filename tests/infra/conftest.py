"""Fixtures for the Pulumi program tests: each stack runs once per session, in parallel.

The program runs under ``pulumi.runtime.set_mocks`` in a fresh process per run
(``tests.infra.harness``, which also holds the ``Mocks`` that answer like the providers), with
the committed ``Pulumi.<stack>.yaml`` as its configuration, plus overrides for the variants:

- ``aws``, ``gcp``, ``azure``: the committed stack files as they are;
- ``aws_https``: the AWS stack with a certificate, domain and hosted zone configured;
- ``gcp_private``: the GCP stack with a list of invokers instead of ``allUsers``;
- ``aws_job_no_apply``: the AWS health job without ``--apply``;
- ``gcp_job``, ``azure_job``: their health jobs enabled (probe and record only, the default);
- ``gcp_job_apply``, ``azure_job_apply``: enabled with ``--apply`` and AWS credentials from the
  cloud's secret store;
- ``aws_signed``, ``gcp_signed``, ``azure_signed``: a signing public key configured (and, on AWS,
  the other clouds' endpoints for the job's allowlist);
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

from tests.infra.harness import StackRun, run_stack

# The variants the tests look at; they all start together on first use.
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
HTTPS_DOMAIN = "aws.model.example.com"
HOSTED_ZONE_ID = "Z0123456789AWSZONE"
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
VARIANTS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "aws": ("aws", {}),
    "gcp": ("gcp", {}),
    "azure": ("azure", {}),
    "aws_https": (
        "aws",
        {
            "ml-orchestrator:aws.certificate_arn": CERTIFICATE_ARN,
            "ml-orchestrator:aws.domain": HTTPS_DOMAIN,
            "ml-orchestrator:aws.hosted_zone_id": HOSTED_ZONE_ID,
        },
    ),
    "gcp_private": ("gcp", {"ml-orchestrator:gcp.invokers": [PRIVATE_INVOKER]}),
    "aws_job_no_apply": ("aws", {f"{JOB}.apply": False}),
    "gcp_job": ("gcp", {f"{JOB}.enabled": True}),
    "gcp_job_apply": (
        "gcp",
        {f"{JOB}.enabled": True, f"{JOB}.apply": True, f"{JOB}.aws_credentials_secret": GCP_AWS_CREDENTIALS},
    ),
    "azure_job": ("azure", {f"{JOB}.enabled": True}),
    # Signing required, and the AWS job told the other clouds' endpoints.
    "aws_signed": (
        "aws",
        {
            "ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY,
            f"{JOB}.endpoints": OTHER_ENDPOINTS,
        },
    ),
    "gcp_signed": ("gcp", {"ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY}),
    "azure_signed": ("azure", {"ml-orchestrator:endpoint.signing_public_key": SIGNING_PUBLIC_KEY}),
    "azure_job_apply": (
        "azure",
        {
            f"{JOB}.enabled": True,
            f"{JOB}.apply": True,
            f"{JOB}.aws_credentials_secret": AZURE_AWS_CREDENTIALS,
        },
    ),
}


def run_all(
    scenarios: Mapping[str, tuple[str, Mapping[str, Any]]],
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, StackRun]:
    """Run several scenarios at once, one process each (a run is mostly CPU: one per core)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures: dict[str, Future[StackRun]] = {
            name: pool.submit(run_stack, stack, overrides, references)
            for name, (stack, overrides) in scenarios.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def runs() -> dict[str, StackRun]:
    return run_all(VARIANTS)


@pytest.fixture(scope="session")
def aws_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["aws"].ok().within(ENDPOINT_COMPONENTS["aws"])


@pytest.fixture(scope="session")
def aws_https_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["aws_https"].ok().within(ENDPOINT_COMPONENTS["aws"])


@pytest.fixture(scope="session")
def gcp_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp"].ok().within(ENDPOINT_COMPONENTS["gcp"])


@pytest.fixture(scope="session")
def gcp_private_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp_private"].ok().within(ENDPOINT_COMPONENTS["gcp"])


@pytest.fixture(scope="session")
def azure_run(runs: dict[str, StackRun]) -> StackRun:
    return runs["azure"].ok().within(ENDPOINT_COMPONENTS["azure"])


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
