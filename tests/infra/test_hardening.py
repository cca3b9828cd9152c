"""Hardening a reviewer asks for: no shared keys on Azure storage, access logs for the model
buckets, read-only root filesystems where the platform has the setting, deployer identities with
exactly what `orchestrator sync` and `image push` need, and secrets recognised by their shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.components.endpoint import writable_paths
from infra.specs.endpoint import parse_endpoint_spec
from infra.specs.fields import ConfigError, refuse_secret_values
from infra.specs.secret_shapes import secret_shape
from tests.infra.conftest import (
    AWS_DEPLOYER,
    AZURE_DEPLOYER,
    ENDPOINT_COMPONENTS,
    GCP_DEPLOYER,
    SIGNING_PUBLIC_KEY,
)
from tests.infra.harness import ROOT, SUBSCRIPTION_ID, StackRun, stack_config

NS = "ml-orchestrator"
ROLE = f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"


# --- Azure storage without shared keys; access logs ---------------------------------------------


def test_azure_storage_takes_no_shared_key_and_logs_blob_access(runs: dict[str, StackRun]) -> None:
    run = runs["azure"].ok().within(ENDPOINT_COMPONENTS["azure"])
    account = run.one("azure-native:storage:StorageAccount")
    assert account["allowSharedKeyAccess"] is False
    assert account["defaultToOAuthAuthentication"] is True
    # Every reader uses an identity: the storage settings name the account URL, never a key.
    assert set(runs["azure"].exports["storage_settings"]) == {"account_url"}
    setting = run.one("azure-native:monitor:DiagnosticSetting")
    assert setting["resourceUri"] == f"{account.outputs['id']}/blobServices/default"
    assert setting["workspaceId"] == run.one("azure-native:operationalinsights:Workspace").outputs["id"]
    assert setting["logs"] == [
        {"category": c, "enabled": True} for c in ("StorageRead", "StorageWrite", "StorageDelete")
    ]


def test_gcp_logs_who_reads_and_writes_objects(runs: dict[str, StackRun]) -> None:
    run = runs["gcp"].ok().within(ENDPOINT_COMPONENTS["gcp"])
    audit = run.one("gcp:projects/iAMAuditConfig:IAMAuditConfig")
    assert (audit["project"], audit["service"]) == ("my-ml-project", "storage.googleapis.com")
    assert audit["auditLogConfigs"] == [{"logType": "DATA_READ"}, {"logType": "DATA_WRITE"}]


# --- read-only root filesystems ------------------------------------------------------------------


def test_aws_containers_run_with_a_read_only_root_and_writable_tmp(runs: dict[str, StackRun]) -> None:
    run = runs["aws"].ok()
    tasks = run.of_type("aws:ecs/taskDefinition:TaskDefinition")
    assert len(tasks) == 2  # the endpoint and the health job
    for task in tasks:
        (container,) = json.loads(task["containerDefinitions"])
        assert container["readonlyRootFilesystem"] is True, task.name
        assert container["mountPoints"] == [
            {"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}
        ]
        # A task volume without a host path: Fargate's ephemeral task storage.
        assert task["volumes"] == [{"name": "scratch"}], task.name


def test_a_model_cache_outside_tmp_gets_a_volume_of_its_own() -> None:
    raw = {**stack_config("aws")[f"{NS}:endpoint"], "model_cache_dir": "/var/cache/models"}
    spec = parse_endpoint_spec("aws", raw, "us-east-1", namespace=NS)
    assert writable_paths(spec) == {"scratch": "/tmp", "model-cache": "/var/cache/models"}
    raw["model_cache_dir"] = "/tmp/models"
    assert writable_paths(parse_endpoint_spec("aws", raw, "us-east-1", namespace=NS)) == {"scratch": "/tmp"}


# --- deployers -------------------------------------------------------------------------------------


def test_aws_deployer_role_can_publish_models_and_push_images_only(runs: dict[str, StackRun]) -> None:
    run = runs["aws_first_up"].ok()
    role = run.named("aws:iam/role:Role", "ml-endpoint-deployer")
    (trust,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"AWS": [AWS_DEPLOYER]}, "Action": "sts:AssumeRole"}
    (policy,) = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p["role"] == role.outputs["id"]]
    bucket = run.named("aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["arn"]
    repository = run.one("aws:ecr/repository:Repository").outputs["arn"]
    grants = {
        (action, resource)
        for statement in json.loads(policy["policy"])["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        for resource in [statement["Resource"]]
    }
    assert grants == {
        ("s3:ListBucket", bucket),
        ("s3:GetObject", f"{bucket}/models/*"),
        ("s3:PutObject", f"{bucket}/models/*"),
        ("s3:DeleteObject", f"{bucket}/models/*"),
        ("ecr:GetAuthorizationToken", "*"),
        *(
            (action, repository)
            for action in (
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:CompleteLayerUpload",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
            )
        ),
    }
    assert not runs["aws"].ok().of_type("aws:iam/role:Role") or "ml-endpoint-deployer" not in {
        r.name for r in runs["aws"].of_type("aws:iam/role:Role")
    }


def test_gcp_deployer_can_publish_models_and_push_images_only(runs: dict[str, StackRun]) -> None:
    run = runs["gcp_first_up"].ok()
    bucket = run.within(ENDPOINT_COMPONENTS["gcp"]).one("gcp:storage/bucket:Bucket").outputs["name"]
    repository = run.one("gcp:artifactregistry/repository:Repository")
    mine = sorted(
        (r.type, r.get("bucket") or r.get("repository"), r["role"])
        for r in run.resources
        if r.get("member") == GCP_DEPLOYER or GCP_DEPLOYER in r.get("members", [])
    )
    assert mine == [
        (
            "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
            repository.outputs["name"],
            "roles/artifactregistry.writer",
        ),
        ("gcp:storage/bucketIAMMember:BucketIAMMember", bucket, "roles/storage.objectUser"),
    ]


def test_azure_deployer_can_publish_models_and_push_images_only(runs: dict[str, StackRun]) -> None:
    run = runs["azure_first_up"].ok()
    container = (
        run.within(ENDPOINT_COMPONENTS["azure"]).one("azure-native:storage:BlobContainer").outputs["id"]
    )
    registry = run.one("azure-native:containerregistry:Registry").outputs["id"]
    mine = sorted(
        (a["roleDefinitionId"], a["scope"])
        for a in run.of_type("azure-native:authorization:RoleAssignment")
        if a["principalId"] == AZURE_DEPLOYER
    )
    assert mine == sorted([(ROLE + STORAGE_BLOB_DATA_CONTRIBUTOR, container), (ROLE + ACR_PUSH, registry)])


# --- secrets by shape --------------------------------------------------------------------------------

PLANTED = {
    "aws key id": "AKIAIOSFODNN7EXAMPLE",
    "aws secret key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "pem private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
    "openssh private key": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "azure connection string": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9v;",
    "azure service bus key": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey=abc",
    "sas url": "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=AbCdEf%2Bgh",
    "gcp key file": '{"type": "service_account", "private_key_id": "abc"}',
    "github token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack token": "xoxb-123456789012-abcdefghij",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
    "url password": "postgres://admin:s3cr3t@db.example.com/app",
    "base64 token": "Zx81kQ2mN7pL4rT9vW3yB6cD0fH5jS8aQ1",
    "hex token": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
}
BENIGN = {
    "image by digest": "ghcr.io/example/ml-endpoint@sha256:" + "0123456789abcdef" * 4,
    "public key": SIGNING_PUBLIC_KEY,
    "key vault resource id": (
        "/subscriptions/6b3c2a1e-9f8d-4c7b-a6e5-d4c3b2a1f0e9/resourceGroups/MyResourceGroup-Prod2"
        "/providers/Microsoft.KeyVault/vaults/kv1/secrets/aws"
    ),
    "iam role arn": "arn:aws:iam::123456789012:role/GitHubActionsDeployerRole2024Production",
    "service account member": "serviceAccount:orchestrator@my-ml-project.iam.gserviceaccount.com",
    "object id": "11111111-2222-4333-8444-555555555555",
    "url": "https://gcp.model.example.com",
    "schedule": "cron(0/5 * * * ? *)",
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_secret_shapes_are_recognised(kind: str) -> None:
    found = secret_shape(PLANTED[kind])
    assert found is not None, kind
    assert PLANTED[kind] not in found  # the description never quotes the value


@pytest.mark.parametrize("kind", list(BENIGN))
def test_configuration_values_that_are_not_secrets_pass(kind: str) -> None:
    assert secret_shape(BENIGN[kind]) is None


def test_a_secret_is_found_at_any_depth_and_named_by_its_key() -> None:
    raw: dict[str, Any] = {"a": {"b": [{"c": "ok"}, {"d": PLANTED["aws key id"]}]}}
    with pytest.raises(ConfigError) as caught:
        refuse_secret_values(f"{NS}:x", raw)
    assert caught.value.key == f"{NS}:x.a.b[1].d"
    assert PLANTED["aws key id"] not in str(caught.value)
    # A key that is itself a credential is refused too.
    with pytest.raises(ConfigError):
        refuse_secret_values(f"{NS}:x", {"environment": {PLANTED["github token"]: "1"}})


def test_the_committed_stack_files_pass_the_scanner() -> None:
    for path in sorted(Path(ROOT).glob("Pulumi*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        for key, value in (document.get("config") or {}).items():
            refuse_secret_values(key, value if isinstance(value, dict) else {"value": value})
