"""The scheduled health job under mocks: schedule, command, image, environment and permissions.

The AWS stack file enables the job with ``--apply``; the variants in conftest.py run it on AWS
without ``--apply`` and on GCP and Azure without and with it (AWS credentials from the secret
store). Permissions are checked exhaustively: every policy statement, IAM member and role
assignment that names a job identity is collected and compared to the exact expected set, so a
broader grant added later fails here, not in an audit.

The schedule dialects and the configuration rules are pure functions, tested directly at the end.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from infra.specs.fields import ConfigError
from infra.specs.gcp_options import parse_gcp_options
from infra.specs.health_job import parse_health_job_spec
from infra.specs.schedule import aws_expression, unix_cron
from tests.infra.conftest import AZURE_AWS_CREDENTIALS, ENDPOINT_COMPONENTS
from tests.infra.harness import ROOT, SUBSCRIPTION_ID, StackRun

NS = "ml-orchestrator"
JOB_COMPONENTS = {
    "aws": "ml-orchestrator:infra:AwsHealthJob",
    "gcp": "ml-orchestrator:infra:GcpHealthJob",
    "azure": "ml-orchestrator:infra:AzureHealthJob",
}
PROBE_ONLY = ["orchestrator", "health", "--once"]
APPLY = [*PROBE_ONLY, "--apply"]
# Every variant that runs the job, and the argv it must run.
COMMANDS = {
    "aws": APPLY,
    "aws_signed": APPLY,
    "aws_http": PROBE_ONLY,
    "gcp_job": PROBE_ONLY,
    "gcp_job_apply": APPLY,
    "azure_job": PROBE_ONLY,
    "azure_job_apply": APPLY,
}
ZONE_ARN = "arn:aws:route53:::hostedzone/Z0123456789EXAMPLE"  # Pulumi.aws.yaml / Pulumi.dns.yaml
ROLE = f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"


def _job(run: StackRun) -> StackRun:
    return run.ok().within(JOB_COMPONENTS[run.stack])


def _endpoint(run: StackRun) -> StackRun:
    return run.ok().within(ENDPOINT_COMPONENTS[run.stack])


def _control_root(run: StackRun) -> str:
    """The job's control bucket as a URI (s3://, gs://, az://)."""
    job = _job(run)
    if run.stack == "aws":
        return "s3://" + next(b for b in job.of_type("aws:s3/bucket:Bucket")).outputs["bucket"]
    if run.stack == "gcp":
        return "gs://" + job.one("gcp:storage/bucket:Bucket").outputs["name"]
    return "az://" + job.one("azure-native:storage:BlobContainer").outputs["name"]


def _env(pairs: list[dict[str, Any]]) -> dict[str, str]:
    """The plain environment (secrets by reference are in :func:`_secret_env`)."""
    return {e["name"]: e["value"] for e in pairs if "value" in e}


def _secret_env(run: StackRun) -> dict[str, Any]:
    """The job container's environment variables given by secret reference, as deployed."""
    job = _job(run)
    if run.stack == "aws":
        (container,) = json.loads(job.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
        return {e["name"]: e["valueFrom"] for e in container.get("secrets", [])}
    if run.stack == "gcp":
        (container,) = job.one("gcp:cloudrunv2/job:Job")["template"]["template"]["containers"]
        return {e["name"]: e["valueSource"] for e in container["envs"] if "valueSource" in e}
    (container,) = job.one("azure-native:app:Job")["template"]["containers"]
    return {e["name"]: e["secretRef"] for e in container["env"] if "secretRef" in e}


def _job_container(run: StackRun) -> tuple[list[str], str, dict[str, str]]:
    """The job's full argv (entrypoint + arguments), image and environment, as deployed."""
    job = _job(run)
    if run.stack == "aws":
        (container,) = json.loads(job.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
        return (
            container["entryPoint"] + container["command"],
            container["image"],
            _env(container["environment"]),
        )
    if run.stack == "gcp":
        (container,) = job.one("gcp:cloudrunv2/job:Job")["template"]["template"]["containers"]
        return container["commands"] + container["args"], container["image"], _env(container["envs"])
    (container,) = job.one("azure-native:app:Job")["template"]["containers"]
    return container["command"] + container["args"], container["image"], _env(container["env"])


def _endpoint_image(run: StackRun) -> str:
    endpoint = _endpoint(run)
    if run.stack == "aws":
        (container,) = json.loads(
            endpoint.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"]
        )
        return str(container["image"])
    if run.stack == "gcp":
        (container,) = endpoint.one("gcp:cloudrunv2/service:Service")["template"]["containers"]
        return str(container["image"])
    (container,) = endpoint.one("azure-native:app:ContainerApp")["template"]["containers"]
    return str(container["image"])


# --- what runs, and when ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(COMMANDS))
def test_job_runs_the_endpoints_image_with_the_health_command(
    runs: dict[str, StackRun], variant: str
) -> None:
    run = runs[variant].ok()
    argv, image, env = _job_container(run)
    assert argv == COMMANDS[variant]
    # The same image as the endpoint: same registry, same digest, the configured one.
    digest = str(run.config[f"{NS}:endpoint"]["image"]).split("@")[1]
    assert image == _endpoint_image(run) == run.exports["image"] == f"{run.exports['registry']}@{digest}"
    exported = run.exports["health_job"]
    assert exported["enabled"] is True
    assert exported["command"] == argv
    # Config and state: the documented keys of the job's own control bucket, never the model bucket.
    control = _control_root(run)
    models = run.exports["model_uri"].removesuffix("/models/digits/LATEST")
    assert control != models
    assert exported["config_uri"] == f"{control}/orchestrator/orchestrator.yaml"
    assert exported["state_uri"] == f"{control}/orchestrator/state.json"
    expected = {
        "ORCHESTRATOR_CONFIG": exported["config_uri"],
        "ORCHESTRATOR_STATE": exported["state_uri"],
        # The only endpoints it accepts: its own stack's, and the others' from health_job.endpoints.
        "ORCHESTRATOR_ENDPOINTS": json.dumps(
            {**run.config[f"{NS}:health_job"].get("endpoints", {}), run.stack: run.exports["endpoint_url"]},
            sort_keys=True,
        ),
        # Its vantage point id, should the configuration list several (docs/design/quorum.md).
        "ORCHESTRATOR_VANTAGE": run.stack,
    }
    if run.stack == "azure":
        # As the endpoint: the account the az:// URIs live in, and which identity to use (the job's).
        identity = _job(run).one("azure-native:managedidentity:UserAssignedIdentity")
        account = _endpoint(run).one("azure-native:storage:StorageAccount")
        expected |= {
            "AZURE_STORAGE_ACCOUNT": account.outputs["name"],
            "AZURE_CLIENT_ID": identity.outputs["clientId"],
        }
    if run.stack != "aws" and "--apply" in argv:
        expected["AWS_SHARED_CREDENTIALS_FILE"] = "/secrets/aws/credentials"
    assert env == expected


def test_committed_stack_files_enable_the_job_on_aws_only() -> None:
    config = {
        stack: yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for stack in ("aws", "gcp", "azure", "dns")
    }
    jobs = {stack: config[stack][f"{NS}:health_job"] for stack in ("aws", "gcp", "azure")}
    assert {stack: job["enabled"] for stack, job in jobs.items()} == {
        "aws": True,
        "gcp": False,
        "azure": False,
    }
    assert {stack: job["apply"] for stack, job in jobs.items()} == {"aws": True, "gcp": False, "azure": False}
    # The record the AWS job may change is the one the dns stack manages.
    dns = config["dns"][f"{NS}:dns"]
    assert jobs["aws"]["route53"] == {"zone_id": dns["zone_id"], "record_name": dns["record_name"]}


def test_a_disabled_job_creates_nothing(runs: dict[str, StackRun]) -> None:
    for variant in ("gcp", "azure"):
        run = runs[variant].ok()
        assert not _job(run).resources, variant
        exported = run.exports["health_job"]
        assert (exported["enabled"], exported["schedule"], exported["command"]) == (False, None, None)
        assert (exported["config_uri"], exported["state_uri"]) == (None, None), "no control bucket either"


def test_aws_schedule_runs_one_fargate_task_every_minute(runs: dict[str, StackRun]) -> None:
    run = runs["aws"].ok()
    job, endpoint = _job(run), _endpoint(run)
    schedule = job.one("aws:scheduler/schedule:Schedule")
    assert run.exports["health_job"]["schedule"] == schedule["scheduleExpression"] == "rate(1 minute)"
    assert schedule["scheduleExpressionTimezone"] == "UTC"
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    assert schedule["state"] == "ENABLED"
    task = job.one("aws:ecs/taskDefinition:TaskDefinition")
    roles = {r.name: r.outputs["arn"] for r in run.of_type("aws:iam/role:Role")}
    target = schedule["target"]
    assert target["arn"] == endpoint.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert target["roleArn"] == roles["ml-endpoint-health-scheduler"]
    # Not retried: the next run a minute later is the retry.
    assert target["retryPolicy"] == {"maximumRetryAttempts": 0, "maximumEventAgeInSeconds": 60}
    service = endpoint.one("aws:ecs/service:Service")
    assert target["ecsParameters"] == {
        "taskDefinitionArn": task.outputs["arn"],
        "launchType": "FARGATE",
        "taskCount": 1,
        "networkConfiguration": {
            "subnets": service["networkConfiguration"]["subnets"],
            "securityGroups": [job.one("aws:ec2/securityGroup:SecurityGroup").outputs["id"]],
            "assignPublicIp": True,
        },
    }
    scheduler_policy = next(r for r in job.of_type("aws:iam/rolePolicy:RolePolicy") if "scheduler" in r.name)
    assert scheduler_policy.urn in schedule.depends_on
    # The smallest Fargate size; the endpoint's execution role (pull this image, write these logs).
    assert (task["cpu"], task["memory"], task["networkMode"]) == ("256", "512", "awsvpc")
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["executionRoleArn"] == roles["ml-endpoint-execution"]
    assert task["taskRoleArn"] == roles["ml-endpoint-health-task"]
    (container,) = json.loads(task["containerDefinitions"])
    logs = container["logConfiguration"]["options"]
    assert logs["awslogs-group"] == endpoint.one("aws:cloudwatch/logGroup:LogGroup").outputs["name"]
    assert logs["awslogs-stream-prefix"] == "health"
    # The endpoint's own task definition is untouched: still one container, the server.
    assert endpoint.one("aws:ecs/taskDefinition:TaskDefinition")["family"] == "ml-endpoint-aws"


def test_gcp_scheduler_runs_the_cloud_run_job_every_minute(runs: dict[str, StackRun]) -> None:
    job = _job(runs["gcp_job"])
    accounts = {a["accountId"]: a.outputs for a in job.of_type("gcp:serviceaccount/account:Account")}
    run_job = job.one("gcp:cloudrunv2/job:Job")
    scheduler = job.one("gcp:cloudscheduler/job:Job")
    assert (scheduler["schedule"], scheduler["timeZone"], scheduler["region"]) == (
        "* * * * *",
        "Etc/UTC",
        "us-central1",
    )
    assert scheduler["retryConfig"] == {"retryCount": 0}
    assert scheduler["httpTarget"] == {
        "httpMethod": "POST",
        "uri": "https://run.googleapis.com/v2/projects/my-ml-project/locations/us-central1/jobs/"
        f"{run_job.outputs['name']}:run",
        # An OAuth access token for a Google API, minted for the scheduler's own account.
        "oauthToken": {
            "serviceAccountEmail": accounts["ml-health-scheduler"]["email"],
            "scope": "https://www.googleapis.com/auth/cloud-platform",
        },
    }
    apis = {r["service"]: r for r in job.of_type("gcp:projects/service:Service")}
    assert sorted(apis) == ["cloudscheduler.googleapis.com", "monitoring.googleapis.com"]
    api = apis["cloudscheduler.googleapis.com"]
    assert api["disableOnDestroy"] is False
    assert api.urn in scheduler.depends_on
    assert job.one("gcp:cloudrunv2/jobIamMember:JobIamMember").urn in scheduler.depends_on
    assert run_job["location"] == "us-central1"
    assert run_job["deletionProtection"] is False
    assert (run_job["template"]["taskCount"], run_job["template"]["parallelism"]) == (1, 1)
    task = run_job["template"]["template"]
    assert task["serviceAccount"] == accounts["ml-health-job"]["email"]
    assert (task["maxRetries"], task["timeout"]) == (0, "120s")
    assert "volumes" not in task  # no secret without --apply
    (container,) = task["containers"]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}}
    # The first run can read its config and write its state: the grants exist before the job.
    grants = {r.urn for r in job.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")}
    assert grants <= set(run_job.depends_on)


def test_azure_job_has_a_cron_trigger_in_the_endpoints_environment(runs: dict[str, StackRun]) -> None:
    run = runs["azure_job"].ok()
    job, endpoint = _job(run), _endpoint(run)
    container_job = job.one("azure-native:app:Job")
    identity = job.one("azure-native:managedidentity:UserAssignedIdentity")
    registry = endpoint.one("azure-native:containerregistry:Registry")
    configuration = container_job["configuration"]
    assert configuration["triggerType"] == "Schedule"
    assert configuration["scheduleTriggerConfig"] == {
        "cronExpression": "* * * * *",
        "parallelism": 1,
        "replicaCompletionCount": 1,
    }
    assert (configuration["replicaTimeout"], configuration["replicaRetryLimit"]) == (120, 0)
    assert configuration["registries"] == [
        {"server": registry.outputs["loginServer"], "identity": identity.outputs["id"]}
    ]
    assert "secrets" not in configuration
    assert container_job["environmentId"] == endpoint.one("azure-native:app:ManagedEnvironment").outputs["id"]
    assert container_job["workloadProfileName"] == "Consumption"
    assert (
        container_job["resourceGroupName"]
        == endpoint.one("azure-native:resources:ResourceGroup").outputs["name"]
    )
    # Its own identity only: not the endpoint's.
    assert container_job["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": [identity.outputs["id"]],
    }
    (container,) = container_job["template"]["containers"]
    assert container["resources"] == {"cpu": 0.25, "memory": "0.5Gi"}
    assignments = {a.urn for a in job.of_type("azure-native:authorization:RoleAssignment")}
    assert assignments <= set(container_job.depends_on)


# --- AWS permissions -----------------------------------------------------------------------------


def _grants(document: str) -> set[tuple[str, str, str | None]]:
    """(action, resource, condition) for every statement; all must Allow, none uses NotAction."""
    policy = json.loads(document)
    assert policy["Version"] == "2012-10-17"
    grants = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = (
            [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        )
        condition = json.dumps(statement["Condition"], sort_keys=True) if "Condition" in statement else None
        grants |= {(action, resource, condition) for action in actions for resource in resources}
    return grants


def _aws_job_policies(run: StackRun) -> tuple[dict[str, Any], dict[str, set[tuple[str, str, str | None]]]]:
    job = _job(run)
    roles = {r.name: r for r in job.of_type("aws:iam/role:Role")}
    assert set(roles) == {"ml-endpoint-health-task", "ml-endpoint-health-scheduler"}
    for role in roles.values():
        assert not role.get("managedPolicyArns"), role.name
        assert not role.get("inlinePolicies"), role.name
    assert not run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    policies = {r["role"]: _grants(r["policy"]) for r in job.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert set(policies) == {role.outputs["id"] for role in roles.values()}
    return roles, {name: policies[role.outputs["id"]] for name, role in roles.items()}


# The weighted record's CNAMEs and its fence TXT record (DELETE + CREATE of the fence value in the
# same batch as the weights: docs/design/quorum.md), nothing else of the zone.
ONLY_THE_RECORD_AND_ITS_FENCE = json.dumps(
    {
        "ForAllValues:StringEquals": {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                "model.example.com",
                "_fence.model.example.com",
            ],
            "route53:ChangeResourceRecordSetsRecordTypes": ["CNAME", "TXT"],
            "route53:ChangeResourceRecordSetsActions": ["UPSERT", "CREATE", "DELETE"],
        }
    },
    sort_keys=True,
)


def _model_and_control_grants(bucket_arn: str, control_arn: str) -> set[tuple[str, str, str | None]]:
    """Models read only (no write anywhere in the model bucket); config read, state read and
    written; as a vantage point, every observation and the lease copy read, its own observation and
    the lease copy written (docs/design/quorum.md)."""
    return {
        ("s3:ListBucket", bucket_arn, None),
        ("s3:GetObject", f"{bucket_arn}/models/*", None),
        ("s3:ListBucket", control_arn, None),
        ("s3:GetObject", f"{control_arn}/orchestrator/orchestrator.yaml", None),
        ("s3:GetObject", f"{control_arn}/orchestrator/state.json", None),
        ("s3:PutObject", f"{control_arn}/orchestrator/state.json", None),
        ("s3:GetObject", f"{control_arn}/orchestrator/vantage/*", None),
        ("s3:GetObject", f"{control_arn}/orchestrator/leader-lease.json", None),
        ("s3:PutObject", f"{control_arn}/orchestrator/leader-lease.json", None),
        ("s3:PutObject", f"{control_arn}/orchestrator/vantage/aws.json", None),
    }


def test_aws_job_role_reads_its_bucket_writes_its_state_and_moves_one_record(
    runs: dict[str, StackRun],
) -> None:
    run = runs["aws"].ok()
    roles, grants = _aws_job_policies(run)
    bucket_arn = _endpoint(run).named("aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["arn"]
    control_arn = _job(run).one("aws:s3/bucket:Bucket").outputs["arn"]
    only_upserts_of_the_record = ONLY_THE_RECORD_AND_ITS_FENCE
    assert grants["ml-endpoint-health-task"] == {
        *_model_and_control_grants(bucket_arn, control_arn),
        ("route53:ChangeResourceRecordSets", ZONE_ARN, only_upserts_of_the_record),
        ("route53:ListResourceRecordSets", ZONE_ARN, None),
    }
    (trust,) = json.loads(roles["ml-endpoint-health-task"]["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ecs:us-east-1:123456789012:*"},
    }


def test_aws_job_without_apply_gets_no_route53_rights(runs: dict[str, StackRun]) -> None:
    run = runs["aws_http"].ok()
    _, grants = _aws_job_policies(run)
    bucket_arn = _endpoint(run).named("aws:s3/bucket:Bucket", "ml-endpoint-models").outputs["arn"]
    control_arn = _job(run).one("aws:s3/bucket:Bucket").outputs["arn"]
    assert grants["ml-endpoint-health-task"] == _model_and_control_grants(bucket_arn, control_arn)
    assert "route53" not in json.dumps([r.inputs for r in run.of_type("aws:iam/rolePolicy:RolePolicy")])


def test_aws_scheduler_role_can_only_run_the_job(runs: dict[str, StackRun]) -> None:
    run = runs["aws"].ok()
    roles, grants = _aws_job_policies(run)
    task = _job(run).one("aws:ecs/taskDefinition:TaskDefinition")
    cluster_arn = _endpoint(run).one("aws:ecs/cluster:Cluster").outputs["arn"]
    execution_arn = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "ml-endpoint-execution")
    passed_to_ecs = json.dumps({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}})
    assert grants["ml-endpoint-health-scheduler"] == {
        (
            "ecs:RunTask",
            f"{task.outputs['arnWithoutRevision']}:*",
            json.dumps({"ArnEquals": {"ecs:cluster": cluster_arn}}),
        ),
        ("iam:PassRole", execution_arn.outputs["arn"], passed_to_ecs),
        ("iam:PassRole", roles["ml-endpoint-health-task"].outputs["arn"], passed_to_ecs),
    }
    (trust,) = json.loads(roles["ml-endpoint-health-scheduler"]["assumeRolePolicy"])["Statement"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "scheduler.amazonaws.com"}, "sts:AssumeRole")
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


@pytest.mark.parametrize(("variant", "ports"), [("aws_http", {80, 443}), ("aws", {443})])
def test_aws_job_takes_no_traffic_and_reaches_out_on_web_ports_only(
    runs: dict[str, StackRun], variant: str, ports: set[int]
) -> None:
    run = runs[variant].ok()
    group = _job(run).one("aws:ec2/securityGroup:SecurityGroup").outputs["id"]
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert not [r for r in ingress if group in (r["securityGroupId"], r.get("referencedSecurityGroupId"))]
    egress = [
        r
        for r in run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r["securityGroupId"] == group
    ]
    # HTTP only while the AWS endpoint itself is plain HTTP.
    assert {(r["fromPort"], r["toPort"], r["ipProtocol"], r["cidrIpv4"]) for r in egress} == {
        (port, port, "tcp", "0.0.0.0/0") for port in ports
    }


# --- GCP permissions -----------------------------------------------------------------------------

# Any IAM grant resource (bucket, secret, job, project, service account...), by its class name.
_GCP_IAM = re.compile(r"gcp:[\w/]+:\w*iam(member|binding|policy)$", re.IGNORECASE)


@pytest.mark.parametrize("variant", ["gcp_job", "gcp_job_apply"])
def test_gcp_job_accounts_hold_exactly_their_grants(runs: dict[str, StackRun], variant: str) -> None:
    run = runs[variant].ok()
    job, endpoint = _job(run), _endpoint(run)
    accounts = {a["accountId"]: a.outputs for a in job.of_type("gcp:serviceaccount/account:Account")}
    runtime, trigger = accounts["ml-health-job"], accounts["ml-health-scheduler"]
    bucket = endpoint.one("gcp:storage/bucket:Bucket").outputs["name"]
    control = job.one("gcp:storage/bucket:Bucket")
    assert (control["uniformBucketLevelAccess"], control["publicAccessPrevention"]) == (True, "enforced")
    control_name = control.outputs["name"]
    run_job = job.one("gcp:cloudrunv2/job:Job")

    def grants(member: str) -> set[tuple[str, str, str, str | None]]:
        found = set()
        for r in run.resources:
            if _GCP_IAM.match(r.type) and member in json.dumps(r.inputs):
                assert r["member"] == member, r.name  # members, never authoritative bindings
                target = r.get("bucket") or r.get("secretId") or r.get("name")
                condition = (r.get("condition") or {}).get("expression")
                found.add((r.type.split(":")[1], target, r["role"], condition))
        return found

    state_only = f'resource.name == "projects/_/buckets/{control_name}/objects/orchestrator/state.json"'
    expected = {
        ("storage/bucketIAMMember", bucket, "roles/storage.objectViewer", None),
        ("storage/bucketIAMMember", control_name, "roles/storage.objectViewer", None),
        ("storage/bucketIAMMember", control_name, "roles/storage.objectUser", state_only),
    }
    if variant == "gcp_job_apply":
        expected.add(
            (
                "secretmanager/secretIamMember",
                "projects/my-ml-project/secrets/route53-applier",
                "roles/secretmanager.secretAccessor",
                None,
            )
        )
        # The API tokens it sends with its probes, each secret alone (this variant sets two).
        for secret in endpoint.of_type("gcp:secretmanager/secret:Secret"):
            expected.add(
                (
                    "secretmanager/secretIamMember",
                    secret.outputs["secretId"],
                    "roles/secretmanager.secretAccessor",
                    None,
                )
            )
    assert grants(runtime["member"]) == expected
    assert grants(trigger["member"]) == {
        ("cloudrunv2/jobIamMember", run_job.outputs["name"], "roles/run.invoker", None)
    }
    # Nothing at project, folder or organization level, for anyone.
    assert not [
        r.type
        for r in run.resources
        if re.match(r"gcp:(projects|folder|organizations)/iam(member|binding|policy)", r.type, re.I)
    ]
    # Each account is used only where expected: the runtime by the job, the trigger by the scheduler.
    uses = {
        name: sorted(
            r.type
            for r in run.resources
            if not _GCP_IAM.match(r.type)
            and r.type != "gcp:serviceaccount/account:Account"
            and account["email"] in json.dumps(r.inputs)
        )
        for name, account in accounts.items()
    }
    assert uses == {
        "ml-health-job": ["gcp:cloudrunv2/job:Job"],
        "ml-health-scheduler": ["gcp:cloudscheduler/job:Job"],
    }
    # The endpoint's own account gained nothing (it reads its models, and the tokens if any).
    endpoint_member = endpoint.one("gcp:serviceaccount/account:Account").outputs["member"]
    assert grants(endpoint_member) == {
        ("storage/bucketIAMMember", bucket, "roles/storage.objectViewer", None),
        *(
            (
                "secretmanager/secretIamMember",
                s.outputs["secretId"],
                "roles/secretmanager.secretAccessor",
                None,
            )
            for s in endpoint.of_type("gcp:secretmanager/secret:Secret")
        ),
    }


def test_gcp_job_with_apply_mounts_the_aws_credentials_secret(runs: dict[str, StackRun]) -> None:
    task = _job(runs["gcp_job_apply"]).one("gcp:cloudrunv2/job:Job")["template"]["template"]
    secret = "projects/my-ml-project/secrets/route53-applier"
    assert task["volumes"] == [
        {
            "name": "aws-credentials",
            "secret": {"secret": secret, "items": [{"version": "latest", "path": "credentials"}]},
        }
    ]
    (container,) = task["containers"]
    assert container["volumeMounts"] == [{"name": "aws-credentials", "mountPath": "/secrets/aws"}]


# --- Azure permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["azure_job", "azure_job_apply"])
def test_azure_job_identity_holds_exactly_its_role_assignments(
    runs: dict[str, StackRun], variant: str
) -> None:
    run = runs[variant].ok()
    job, endpoint = _job(run), _endpoint(run)
    identity = job.one("azure-native:managedidentity:UserAssignedIdentity").outputs["principalId"]
    container_id = endpoint.one("azure-native:storage:BlobContainer").outputs["id"]
    control_id = job.one("azure-native:storage:BlobContainer").outputs["id"]
    registry_id = endpoint.one("azure-native:containerregistry:Registry").outputs["id"]
    group_id = endpoint.one("azure-native:resources:ResourceGroup").outputs["id"]
    writer = job.one("azure-native:authorization:RoleDefinition")
    # The custom role: blob writes and nothing else (no control-plane actions at all), assignable
    # in this resource group only.
    assert writer["permissions"] == [{"actions": [], "notActions": [], "dataActions": [BLOB_WRITE]}]
    assert writer["assignableScopes"] == [group_id]
    assert (writer["scope"], writer["roleType"]) == (group_id, "CustomRole")
    state_only = (
        f"((!(ActionMatches{{'{BLOB_WRITE}'}})) OR "
        "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
        "StringEquals 'orchestrator-control' AND "
        "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] "
        "StringEquals 'orchestrator/state.json'))"
    )
    assignments = run.of_type("azure-native:authorization:RoleAssignment")
    mine = sorted(
        (a["roleDefinitionId"], a["scope"], a.get("condition"), a.get("conditionVersion"))
        for a in assignments
        if a["principalId"] == identity
    )
    expected = [
        (ROLE + STORAGE_BLOB_DATA_READER, container_id, None, None),
        (ROLE + STORAGE_BLOB_DATA_READER, control_id, None, None),
        (ROLE + ACR_PULL, registry_id, None, None),
        (ROLE + writer["roleDefinitionId"], control_id, state_only, "2.0"),
    ]
    tokens = endpoint.of_type("azure-native:keyvault:Secret")
    if variant == "azure_job_apply":
        expected.append((ROLE + KEY_VAULT_SECRETS_USER, AZURE_AWS_CREDENTIALS, None, None))
        # The API tokens it sends with its probes, each secret alone (this variant sets two).
        assert len(tokens) == 2
        expected += [(ROLE + KEY_VAULT_SECRETS_USER, token.outputs["id"], None, None) for token in tokens]
    assert mine == sorted(expected)
    assert all(a["principalType"] == "ServicePrincipal" for a in assignments)
    # Every other assignment is the endpoint's two, unchanged.
    endpoint_identity = endpoint.one("azure-native:managedidentity:UserAssignedIdentity").outputs[
        "principalId"
    ]
    others = [a for a in assignments if a["principalId"] != identity]
    assert len(others) == 2 + len(tokens)  # models, images, and each token
    assert {a["principalId"] for a in others} == {endpoint_identity}


def test_azure_job_with_apply_reads_the_aws_credentials_from_key_vault(runs: dict[str, StackRun]) -> None:
    job = _job(runs["azure_job_apply"])
    container_job = job.one("azure-native:app:Job")
    identity = job.one("azure-native:managedidentity:UserAssignedIdentity").outputs["id"]
    # A Key Vault reference resolved with the job's identity: no secret value passes through Pulumi.
    # (The API tokens come first, referenced the same way.)
    assert container_job["configuration"]["secrets"][-1] == {
        "name": "aws-credentials",
        "keyVaultUrl": "https://ml-secrets.vault.azure.net/secrets/route53-applier",
        "identity": identity,
    }
    assert [s["name"] for s in container_job["configuration"]["secrets"]] == [
        "api-token-current",
        "api-token-previous",
        "aws-credentials",
    ]
    assert container_job["template"]["volumes"] == [
        {
            "name": "aws-credentials",
            "storageType": "Secret",
            "secrets": [{"secretRef": "aws-credentials", "path": "credentials"}],
        }
    ]
    (container,) = container_job["template"]["containers"]
    assert container["volumeMounts"] == [{"volumeName": "aws-credentials", "mountPath": "/secrets/aws"}]


# --- schedules and configuration rules (pure) --------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("rate(1 minute)", "rate(1 minute)"),
        ("rate(5 minutes)", "rate(5 minutes)"),
        ("cron(0 12 * * ? *)", "cron(0 12 * * ? *)"),
        ("* * * * *", "cron(* * * * ? *)"),
        ("*/5 * * * *", "cron(0/5 * * * ? *)"),
        ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
        ("0 3 * * MON-FRI", "cron(0 3 ? * MON-FRI *)"),
        ("30 2 1,15 * *", "cron(30 2 1,15 * ? *)"),
        ("0 0 */2 JAN-JUN *", "cron(0 0 1/2 JAN-JUN ? *)"),
    ],
)
def test_eventbridge_expressions(schedule: str, expected: str) -> None:
    assert aws_expression(schedule) == expected


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("rate(1 minutes)", "not an EventBridge rate"),
        ("rate(5 minute)", "not an EventBridge rate"),
        ("rate(0 minutes)", "not an EventBridge rate"),
        ("cron(* * * *)", "six fields"),
        ("at(2030-01-01T00:00:00)", "runs once"),
        ("0 3 * * 1-5", "use names"),
        ("0 3 1 * MON", "both day-of-month and day-of-week"),
    ],
)
def test_eventbridge_refuses(schedule: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        aws_expression(schedule)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("* * * *", "five-field"),
        ("rate(1 minute)", "five-field"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("* 24 * * *", "hour 24"),
        ("* * 0 * *", "day-of-month 0"),
        ("* * * 13 *", "month 13"),
        ("* * * * 8", "day-of-week 8"),
        ("5-1 * * * *", "backwards"),
        ("*/0 * * * *", "step 0"),
        ("* * * FOO *", "not a number or a name"),
        ("1,,2 * * * *", "is not *"),
    ],
)
def test_unix_cron_refuses(schedule: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        unix_cron(schedule)


def test_unix_cron_accepts_what_cloud_scheduler_and_container_apps_take() -> None:
    for schedule in (
        "* * * * *",
        "*/2 * * * *",
        "0 9-17 * * mon-fri",
        "15,45 * 1-7 jan,jul sun",
        "0 0 * * 7",
    ):
        assert len(unix_cron(schedule)) == 5


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_job_defaults(cloud: Any) -> None:
    job = parse_health_job_spec(cloud, None, namespace=NS)
    assert job.enabled is False
    assert job.schedule == ("rate(1 minute)" if cloud == "aws" else "* * * * *")
    # --apply by default only where the job's own identity can hold Route 53 rights.
    assert job.command == (tuple(APPLY) if cloud == "aws" else tuple(PROBE_ONLY))
    assert (job.config_path, job.state_path) == ("orchestrator/orchestrator.yaml", "orchestrator/state.json")


H = f"{NS}:health_job"
KV_SECRET = AZURE_AWS_CREDENTIALS


@pytest.mark.parametrize(
    ("cloud", "raw", "key", "reason"),
    [
        ("aws", {"enabled": True}, f"{H}.route53", "required with apply"),
        (
            "aws",
            {"enabled": True, "apply": True, "route53": {"zone_id": "Z1"}},
            f"{H}.route53.record_name",
            "required",
        ),
        ("aws", {"aws_credentials_secret": "x"}, f"{H}.aws_credentials_secret", "task role"),
        ("aws", {"schedule": "0 3 * * 1"}, f"{H}.schedule", "use names"),
        ("gcp", {"enabled": True, "apply": True}, f"{H}.aws_role_arn", "required with apply"),
        ("gcp", {"route53": {"zone_id": "Z1", "record_name": "a.example.com"}}, f"{H}.route53", "aws only"),
        ("gcp", {"aws_credentials_secret": "route53"}, f"{H}.aws_credentials_secret", "only used with apply"),
        (
            "gcp",
            {"apply": True, "aws_credentials_secret": "a b"},
            f"{H}.aws_credentials_secret",
            "Secret Manager",
        ),
        ("gcp", {"schedule": "rate(1 minute)"}, f"{H}.schedule", "five-field"),
        (
            "azure",
            {"apply": True, "aws_credentials_secret": "https://v.vault.azure.net/secrets/s"},
            f"{H}.aws_credentials_secret",
            "resource id",
        ),
        ("azure", {"state_path": "models/digits/state.json"}, f"{H}.state_path", "models/"),
        (
            "azure",
            {"state_path": "orchestrator/orchestrator.yaml"},
            f"{H}.state_path",
            "differ from config_path",
        ),
        ("azure", {"config_path": "/orchestrator.yaml"}, f"{H}.config_path", "not an object key"),
        ("azure", {"enabled": "yes"}, f"{H}.enabled", "true or false"),
        ("azure", {"schedul": "* * * * *"}, f"{H}.schedul", "not a known key"),
    ],
)
def test_job_configuration_rules(cloud: Any, raw: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        parse_health_job_spec(cloud, raw, namespace=NS)
    assert caught.value.key == key


def test_azure_key_vault_reference_from_the_secrets_resource_id() -> None:
    job = parse_health_job_spec(
        "azure", {"enabled": True, "apply": True, "aws_credentials_secret": KV_SECRET}, namespace=NS
    )
    assert job.key_vault_secret_url == "https://ml-secrets.vault.azure.net/secrets/route53-applier"


def test_gcp_job_accounts_must_differ_from_the_endpoints() -> None:
    with pytest.raises(ConfigError, match="must differ") as caught:
        parse_gcp_options({"health_job_account_id": "ml-endpoint"}, "my-ml-project", namespace=NS)
    assert caught.value.key == f"{NS}:gcp.health_job_account_id"
