"""Identity federation for the GCP and Azure health jobs, under mocks: no AWS key anywhere.

Three runs of their own (so the shared variants stay as they are): the AWS stack trusting the GCP
job's service account and the Azure job's managed identity (``health_job.federation``), and the
GCP and Azure stacks whose jobs assume those roles (``health_job.aws_role_arn``). Asserted: each
role's trust policy (issuer, audience, subject: research notes, AWS's keys for web identity
federation), the exact permissions (the weighted record and its fence, the vantage objects),
the jobs' environment (the role, the token source, no shared-credentials file, no secret mount),
and the exports each stack gives the other.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.specs.fields import ConfigError
from infra.specs.health_job import parse_health_job_spec
from tests.infra.conftest import AZURE_AWS_CREDENTIALS, JOB, WITH_IMAGE, run_all
from tests.infra.harness import StackRun
from tests.infra.test_health_job import ONLY_THE_RECORD_AND_ITS_FENCE, ZONE_ARN, _grants, _job, _job_container

GCP_ACCOUNT_ID = "112233445566778899001"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PRINCIPAL = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ROLE_ARN = "arn:aws:iam::123456789012:role/ml-endpoint-health-from-gcp"
FEDERATION = {
    "gcp": {"service_account_id": GCP_ACCOUNT_ID},
    "azure": {"tenant_id": TENANT, "principal_id": PRINCIPAL},
}


@pytest.fixture(scope="module")
def fed() -> dict[str, StackRun]:
    return run_all(
        {
            "aws": ("aws", {**WITH_IMAGE, f"{JOB}.federation": FEDERATION}),
            "gcp": (
                "gcp",
                {**WITH_IMAGE, f"{JOB}.enabled": True, f"{JOB}.apply": True, f"{JOB}.aws_role_arn": ROLE_ARN},
            ),
            "azure": (
                "azure",
                {**WITH_IMAGE, f"{JOB}.enabled": True, f"{JOB}.apply": True, f"{JOB}.aws_role_arn": ROLE_ARN},
            ),
        }
    )


def _roles(run: StackRun) -> dict[str, Any]:
    return {r.name: r for r in _job(run).of_type("aws:iam/role:Role")}


def test_the_gcp_job_may_assume_its_role_with_its_service_accounts_id_token_only(
    fed: dict[str, StackRun],
) -> None:
    role = _roles(fed["aws"])["ml-endpoint-health-from-gcp"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Federated": "accounts.google.com"}
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"] == {
        "StringEquals": {
            "accounts.google.com:aud": GCP_ACCOUNT_ID,
            "accounts.google.com:sub": GCP_ACCOUNT_ID,
            "accounts.google.com:oaud": "sts.amazonaws.com",
        }
    }
    assert role.inputs["maxSessionDuration"] == 3600
    # AWS trusts Google natively: an OIDC provider for accounts.google.com would break the trust.
    providers = fed["aws"].of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert [p.inputs["url"] for p in providers] == [f"https://sts.windows.net/{TENANT}/"]


def test_the_azure_job_may_assume_its_role_with_its_managed_identitys_token_only(
    fed: dict[str, StackRun],
) -> None:
    (provider,) = fed["aws"].of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["clientIdLists"] == ["api://ml-orchestrator-aws"]
    role = _roles(fed["aws"])["ml-endpoint-health-from-azure"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Federated": provider.outputs["arn"]}
    assert trust["Condition"] == {
        "StringEquals": {
            f"sts.windows.net/{TENANT}/:aud": "api://ml-orchestrator-aws",
            f"sts.windows.net/{TENANT}/:sub": PRINCIPAL,
        }
    }


def test_the_federated_roles_move_only_the_record_and_read_only_the_vantage_objects(
    fed: dict[str, StackRun],
) -> None:
    run = fed["aws"]
    roles = _roles(run)
    control_arn = _job(run).one("aws:s3/bucket:Bucket").outputs["arn"]
    policies = {r["role"]: _grants(r["policy"]) for r in _job(run).of_type("aws:iam/rolePolicy:RolePolicy")}
    expected = {
        ("s3:ListBucket", control_arn, None),
        ("s3:GetObject", f"{control_arn}/orchestrator/vantage/*", None),
        ("s3:GetObject", f"{control_arn}/orchestrator/leader-lease.json", None),
        ("s3:PutObject", f"{control_arn}/orchestrator/leader-lease.json", None),
        ("route53:ChangeResourceRecordSets", ZONE_ARN, ONLY_THE_RECORD_AND_ITS_FENCE),
        ("route53:ListResourceRecordSets", ZONE_ARN, None),
    }
    for cloud in ("gcp", "azure"):
        assert policies[roles[f"ml-endpoint-health-from-{cloud}"].outputs["id"]] == expected, cloud
    exported = run.exports["health_job"]["federated_roles"]
    assert exported == {c: roles[f"ml-endpoint-health-from-{c}"].outputs["arn"] for c in ("gcp", "azure")}


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_the_jobs_assume_the_role_with_no_stored_key(fed: dict[str, StackRun], cloud: str) -> None:
    run = fed[cloud].ok()
    _, _, env = _job_container(run)
    assert env["ORCHESTRATOR_AWS_ROLE_ARN"] == ROLE_ARN
    assert env["ORCHESTRATOR_AWS_WEB_IDENTITY"] == cloud
    assert env["ORCHESTRATOR_VANTAGE"] == cloud
    assert "AWS_SHARED_CREDENTIALS_FILE" not in env
    if cloud == "azure":
        assert env["ORCHESTRATOR_AWS_AUDIENCE"] == "api://ml-orchestrator-aws"
    dump = json.dumps([r.inputs for r in _job(run).resources])
    assert "aws-credentials" not in dump  # no secret mount, no grant on a credentials secret
    identity = run.exports["health_job"]["identity"]
    if cloud == "gcp":
        assert (
            identity
            == _job(run)
            .named("gcp:serviceaccount/account:Account", "ml-endpoint-health-runtime")
            .outputs["uniqueId"]
        )
    else:
        assert (
            identity
            == _job(run).one("azure-native:managedidentity:UserAssignedIdentity").outputs["principalId"]
        )


H = "ml-orchestrator:health_job"


@pytest.mark.parametrize(
    ("cloud", "raw", "key", "reason"),
    [
        ("aws", {"aws_role_arn": ROLE_ARN}, f"{H}.aws_role_arn", "task role"),
        ("gcp", {"apply": True, "aws_role_arn": "route53"}, f"{H}.aws_role_arn", "not an IAM role ARN"),
        ("gcp", {"aws_role_arn": ROLE_ARN}, f"{H}.aws_role_arn", "only used with apply"),
        (
            "azure",
            {
                "apply": True,
                "aws_role_arn": ROLE_ARN,
                "aws_credentials_secret": AZURE_AWS_CREDENTIALS,
            },
            f"{H}.aws_credentials_secret",
            "choose one",
        ),
        ("gcp", {"federation": FEDERATION}, f"{H}.federation", "is for aws"),
        (
            "aws",
            {"federation": {"gcp": {"service_account_id": "sa@x"}}},
            f"{H}.federation.gcp.service_account_id",
            "unique id",
        ),
        (
            "aws",
            {"federation": {"azure": {"tenant_id": "t", "principal_id": PRINCIPAL}}},
            f"{H}.federation.azure.tenant_id",
            "GUID",
        ),
        ("aws", {"federation": {"oci": {}}}, f"{H}.federation.oci", ""),
    ],
)
def test_federation_configuration_rules(cloud: Any, raw: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_health_job_spec(cloud, raw, namespace="ml-orchestrator")
    assert caught.value.key == key
    assert reason in str(caught.value)
