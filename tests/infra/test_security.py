"""Security properties, checked on the policy documents, role bindings and resource inputs.

- model buckets are private, encrypted and versioned;
- transport is TLS-only where the platform lets us choose;
- each endpoint identity can read its own bucket and nothing else (every statement, binding
  and assignment that names the identity is accounted for, not just the expected one found);
- no registry admin user;
- no secret in the committed stack files (the scanner is tested on planted secrets first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.harness import ROOT, SUBSCRIPTION_ID, StackRun

STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def _statements(document: str) -> list[dict[str, Any]]:
    policy = json.loads(document)
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# --- buckets -------------------------------------------------------------------------------------


def _of_bucket(run: StackRun, typ: str, bucket: str) -> Any:
    (found,) = [r for r in run.of_type(typ) if r["bucket"] == bucket]
    return found


@pytest.mark.parametrize("bucket_name", ["ml-endpoint-models", "ml-endpoint-access-logs"])
def test_aws_buckets_are_private_and_encrypted(aws_run: StackRun, bucket_name: str) -> None:
    bucket = aws_run.named("aws:s3/bucket:Bucket", bucket_name)
    name = bucket.outputs["bucket"]
    block = _of_bucket(aws_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
    assert all(
        block[k] is True
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    ownership = _of_bucket(aws_run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", name)
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}  # ACLs disabled
    assert "acl" not in bucket.inputs
    assert "policy" not in bucket.inputs
    encryption = _of_bucket(
        aws_run,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        name,
    )
    # SSE-S3: the only default encryption S3 server access log delivery accepts.
    assert encryption["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    policy = _of_bucket(aws_run, "aws:s3/bucketPolicy:BucketPolicy", name)
    assert block.urn in policy.depends_on  # S3 refuses concurrent changes to one bucket
    allows = [s for s in _statements(policy["policy"]) if s["Effect"] == "Allow"]
    if bucket_name == "ml-endpoint-models":
        # The model bucket's policy only denies: it grants nobody anything; it is versioned.
        assert allows == []
        versioning = _of_bucket(aws_run, "aws:s3/bucketVersioning:BucketVersioning", name)
        assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    else:
        # The log bucket: only the S3 logging service, only for this account, only under s3-access/.
        assert allows == [
            {
                "Sid": "S3ServerAccessLogsPolicy",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{bucket.outputs['arn']}/s3-access/*",
                "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
            }
        ]
        (expiry,) = aws_run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        assert expiry["bucket"] == name
        assert expiry["rules"][0]["expiration"] == {"days": 365}


def test_aws_model_bucket_access_is_logged(runs: dict[str, StackRun]) -> None:
    """Who wrote or read which object: S3 server access logs of the model bucket (and the health
    job's control bucket) go to the log bucket, which does not log itself."""
    run = runs["aws"].ok()
    logs = run.named("aws:s3/bucket:Bucket", "ml-endpoint-access-logs").outputs["bucket"]
    logged = {r["bucket"]: r for r in run.of_type("aws:s3/bucketLogging:BucketLogging")}
    models = run.named("aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["bucket"]
    control = run.named("aws:s3/bucket:Bucket", "ml-endpoint-health-control").outputs["bucket"]
    assert set(logged) == {models, control}
    for bucket, logging in logged.items():
        assert logging["targetBucket"] == logs, bucket
        assert logging["targetPrefix"].startswith("s3-access/"), bucket
    assert logs not in logged


def test_gcp_bucket_is_private_encrypted_and_versioned(gcp_run: StackRun) -> None:
    bucket = gcp_run.one("gcp:storage/bucket:Bucket")
    assert bucket["uniformBucketLevelAccess"] is True  # IAM only, no object ACLs
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    # GCS always encrypts at rest with Google-managed keys; no CMEK is configured (and none needed).
    assert "encryption" not in bucket.inputs
    assert bucket.get("forceDestroy") in (None, False)
    # Nobody is granted anything on the bucket but the endpoint's account.
    members = [r["member"] for r in gcp_run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")]
    assert members == [gcp_run.one("gcp:serviceaccount/account:Account").outputs["member"]]


def test_azure_storage_is_private_encrypted_and_versioned(azure_run: StackRun) -> None:
    account = azure_run.one("azure-native:storage:StorageAccount")
    assert account["allowBlobPublicAccess"] is False
    assert account["allowCrossTenantReplication"] is False
    assert account["encryption"] == {
        "keySource": "Microsoft.Storage",
        "services": {"blob": {"enabled": True, "keyType": "Account"}},
    }
    container = azure_run.one("azure-native:storage:BlobContainer")
    assert container["publicAccess"] == "None"
    assert container["accountName"] == account.outputs["name"]
    service = azure_run.one("azure-native:storage:BlobServiceProperties")
    assert service["accountName"] == account.outputs["name"]
    assert service["isVersioningEnabled"] is True
    assert service["deleteRetentionPolicy"]["enabled"] is True


# --- transport -----------------------------------------------------------------------------------


def test_aws_bucket_refuses_requests_without_tls(aws_run: StackRun) -> None:
    bucket = aws_run.named("aws:s3/bucket:Bucket", "ml-endpoint-models")
    bucket_arn = bucket.outputs["arn"]
    statements = _statements(
        _of_bucket(aws_run, "aws:s3/bucketPolicy:BucketPolicy", bucket.outputs["bucket"])["policy"]
    )
    conditions = {json.dumps(s["Condition"], sort_keys=True): s for s in statements}
    insecure = conditions[json.dumps({"Bool": {"aws:SecureTransport": "false"}}, sort_keys=True)]
    old_tls = conditions[json.dumps({"NumericLessThan": {"s3:TlsVersion": "1.2"}}, sort_keys=True)]
    for statement in (insecure, old_tls):
        assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
        assert sorted(statement["Resource"]) == sorted([bucket_arn, f"{bucket_arn}/*"])


def test_aws_load_balancer_uses_tls_12_or_later_when_https(aws_run: StackRun) -> None:
    aws_https_run = aws_run
    (https,) = [r for r in aws_https_run.of_type("aws:lb/listener:Listener") if r["protocol"] == "HTTPS"]
    assert https["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    # Plain HTTP only redirects: no listener forwards unencrypted traffic.
    plain = [r for r in aws_https_run.of_type("aws:lb/listener:Listener") if r["protocol"] == "HTTP"]
    assert [a["type"] for r in plain for a in r["defaultActions"]] == ["redirect"]


def test_gcp_and_azure_serve_https_only(gcp_run: StackRun, azure_run: StackRun) -> None:
    assert gcp_run.exports["endpoint_url"].startswith("https://")  # Cloud Run has no plain HTTP
    account = azure_run.one("azure-native:storage:StorageAccount")
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    ingress = azure_run.one("azure-native:app:ContainerApp")["configuration"]["ingress"]
    assert ingress["allowInsecure"] is False
    assert azure_run.exports["endpoint_url"].startswith("https://")


# --- identities ----------------------------------------------------------------------------------


def test_aws_task_role_can_only_read_its_bucket(aws_run: StackRun) -> None:
    roles = {r.name: r for r in aws_run.of_type("aws:iam/role:Role")}
    task_role, execution_role = roles["ml-endpoint-task"], roles["ml-endpoint-execution"]
    bucket_arn = aws_run.named("aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["arn"]
    for role in (task_role, execution_role):
        # No managed policies, no inline policies but the RolePolicy resources checked below.
        assert not role.get("managedPolicyArns"), role.name
        assert not role.get("inlinePolicies"), role.name
        (trust,) = _statements(role["assumeRolePolicy"])
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert trust["Action"] == "sts:AssumeRole"
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
        assert trust["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws:ecs:us-east-1:123456789012:*"}
    assert not aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    policies = {r["role"]: r for r in aws_run.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert set(policies) == {task_role.outputs["id"], execution_role.outputs["id"]}

    grants = {
        (s["Effect"], action, resource)
        for s in _statements(policies[task_role.outputs["id"]]["policy"])
        for action in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    }
    assert grants == {("Allow", "s3:ListBucket", bucket_arn), ("Allow", "s3:GetObject", f"{bucket_arn}/*")}

    # The execution role pulls this repository's images and writes this log group; no S3.
    repository_arn = aws_run.one("aws:ecr/repository:Repository").outputs["arn"]
    log_group_arn = aws_run.one("aws:cloudwatch/logGroup:LogGroup").outputs["arn"]
    execution = {
        (action, resource)
        for s in _statements(policies[execution_role.outputs["id"]]["policy"])
        for action in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    }
    secrets = [r.outputs["arn"] for r in aws_run.of_type("aws:secretsmanager/secret:Secret")]
    assert len(secrets) == 2
    assert execution == {
        # ECS reads the two token secrets when a task starts (the task role cannot).
        *(("secretsmanager:GetSecretValue", arn) for arn in secrets),
        ("ecr:GetAuthorizationToken", "*"),
        ("ecr:BatchCheckLayerAvailability", repository_arn),
        ("ecr:GetDownloadUrlForLayer", repository_arn),
        ("ecr:BatchGetImage", repository_arn),
        ("logs:CreateLogStream", f"{log_group_arn}:*"),
        ("logs:PutLogEvents", f"{log_group_arn}:*"),
    }


def test_gcp_service_account_can_only_read_its_bucket(gcp_run: StackRun) -> None:
    account = gcp_run.one("gcp:serviceaccount/account:Account")
    bucket = gcp_run.one("gcp:storage/bucket:Bucket")
    member = account.outputs["member"]
    # Every resource that mentions the account: its one grant, and the service running as it.
    mentions = sorted(
        r.type
        for r in gcp_run.resources
        if r is not account and account.outputs["email"] in json.dumps(r.inputs)
    )
    assert mentions == [
        "gcp:cloudrunv2/service:Service",
        # each token secret, alone
        "gcp:secretmanager/secretIamMember:SecretIamMember",
        "gcp:secretmanager/secretIamMember:SecretIamMember",
        "gcp:storage/bucketIAMMember:BucketIAMMember",
    ]
    secrets = {r.outputs["secretId"] for r in gcp_run.of_type("gcp:secretmanager/secret:Secret")}
    readers = gcp_run.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {(r["secretId"], r["role"], r["member"]) for r in readers} == {
        (secret, "roles/secretmanager.secretAccessor", member) for secret in secrets
    }
    (grant,) = gcp_run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (grant["bucket"], grant["role"], grant["member"]) == (
        bucket.outputs["name"],
        "roles/storage.objectViewer",
        member,
    )
    assert "condition" not in grant.inputs
    # No project-, folder- or organization-level grant anywhere in the stack.
    assert not [
        r.type
        for r in gcp_run.resources
        if re.search(r"/(iAM|iam)(Member|Binding|Policy)", r.type)
        and "storage" not in r.type
        and "cloudrunv2" not in r.type
    ]


def test_azure_identity_can_only_read_its_container_and_pull_its_images(azure_run: StackRun) -> None:
    identity = azure_run.one("azure-native:managedidentity:UserAssignedIdentity")
    container_id = azure_run.one("azure-native:storage:BlobContainer").outputs["id"]
    registry_id = azure_run.one("azure-native:containerregistry:Registry").outputs["id"]
    assignments = azure_run.of_type("azure-native:authorization:RoleAssignment")
    assert all(a["principalId"] == identity.outputs["principalId"] for a in assignments)
    assert all(a["principalType"] == "ServicePrincipal" for a in assignments)
    role = f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/"
    secrets = [r.outputs["id"] for r in azure_run.of_type("azure-native:keyvault:Secret")]
    assert len(secrets) == 2
    assert sorted((a["roleDefinitionId"], a["scope"]) for a in assignments) == sorted(
        [
            (role + STORAGE_BLOB_DATA_READER, container_id),
            (role + ACR_PULL, registry_id),
            # each token secret alone, not the vault
            *((role + KEY_VAULT_SECRETS_USER, secret) for secret in secrets),
        ]
    )
    # The container scope is the container itself, not its account or resource group.
    assert container_id.endswith("/blobServices/default/containers/models")
    assert "condition" not in json.dumps([a.inputs for a in assignments])


def test_no_registry_admin_user(azure_run: StackRun) -> None:
    registry = azure_run.one("azure-native:containerregistry:Registry")
    assert registry["adminUserEnabled"] is False
    assert not registry.get("anonymousPullEnabled")
    # Pulls go through the identity: no username or password secret on the app; its only
    # secrets are Key Vault references read with the identity (the API tokens), never values.
    configuration = azure_run.one("azure-native:app:ContainerApp")["configuration"]
    assert all(set(r) == {"server", "identity"} for r in configuration["registries"])
    assert [set(secret) for secret in configuration["secrets"]] == [{"name", "keyVaultUrl", "identity"}] * 2


# --- no secrets in stack files -------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|credential|connection[_-]?string|private[_-]?key|access[_-]?key|"
    r"account[_-]?key|api[_-]?key|sas|(^|[._:-])key$)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|AccountKey=|SharedAccessSignature|[?&]sig=[A-Za-z0-9%]+"  # Azure keys and SAS
    r"|\"private_key\"|\"type\":\s*\"service_account\""  # GCP service account JSON
    r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abp]-"  # GitHub, Slack tokens
    r"|(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[0-9])[A-Za-z0-9+/]{40,}={0,2}"
)


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        if set(node) == {"secure"}:  # Pulumi's encrypted form is fine
            return
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, node


def find_secrets(config: dict[str, Any]) -> list[str]:
    """Plain-text keys or values in a stack's config that look like credentials."""
    found = []
    for path, value in _leaves(config):
        if value in (None, "", [], {}):
            continue
        last = re.split(r"[.\[]", path)[-1]
        if _SECRET_KEY.search(last):
            found.append(f"{path}: secret-looking key with a plain value")
        elif isinstance(value, str) and _SECRET_VALUE.search(value):
            found.append(f"{path}: secret-looking value")
    return found


@pytest.mark.parametrize(
    "planted",
    [
        {"aws:accessKey": "AKIAABCDEFGHIJKLMNOP"},
        {
            "ml-orchestrator:azure": {
                "connection_string": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc"
            }
        },
        {
            "ml-orchestrator:endpoint": {
                "environment": {"X": "https://a.blob.core.windows.net/c?sv=1&sig=AbC%2Fd"}
            }
        },
        {"gcp:credentials": '{"type": "service_account", "private_key": "..."}'},
        {"ml-orchestrator:dns": {"api_key": "x"}},
        {"ml-orchestrator:endpoint": {"environment": {"Y": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY12"}}},
    ],
)
def test_secret_scanner_finds_planted_secrets(planted: dict[str, Any]) -> None:
    assert find_secrets(planted)


def test_stack_files_hold_no_plain_secrets() -> None:
    files = sorted(Path(ROOT).glob("Pulumi*.yaml"))
    assert len(files) == 5  # Pulumi.yaml and the four stacks
    for path in files:
        document = yaml.safe_load(path.read_text())
        assert find_secrets(document.get("config") or {}) == [], path.name
        # Not even encrypted ones: the endpoint needs none (identities, not keys).
        assert not re.search(r"^\s*secure:", path.read_text(), re.MULTILINE), path.name
