"""The scheduled health job on AWS: EventBridge Scheduler runs a Fargate task beside the endpoint.

:class:`AwsHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs ``orchestrator health
--once --apply`` as a Fargate task of the endpoint's image in the endpoint's cluster; its
permissions are in its docstring.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws_alarms import JobAlarms, job_alarms
from infra.components.aws_endpoint import AwsEndpoint
from infra.components.aws_federation import federated_roles, route53_statements, vantage_statements
from infra.components.aws_network import job_security_group
from infra.components.aws_shared import ecs_tasks_trust, policy, private_bucket
from infra.components.endpoint import SCRATCH_DIR, storage_root
from infra.components.health_job import HealthJobComponent, running_endpoint
from infra.specs.aws_options import AwsOptions
from infra.specs.endpoint import EndpointSpec
from infra.specs.health_job import HealthJobSpec

__all__ = ["JOB_CONTAINER_NAME", "AwsHealthJob"]

JOB_CONTAINER_NAME = "health"
# Fargate's smallest size: a health round is a few HTTP probes and a few small object reads.
JOB_CPU_UNITS = "256"
JOB_MEMORY_MIB = "512"
# Invocations are not retried: the next scheduled run (a minute later by default) is the retry,
# and a late round would only race it. 60 s is the shortest event age EventBridge accepts.
JOB_MAX_EVENT_AGE_S = 60


class AwsHealthJob(HealthJobComponent):
    """``orchestrator health --once [--apply]`` on a schedule: EventBridge Scheduler runs a Fargate
    task of the endpoint's image (same repository, same digest) in the endpoint's cluster.

    - task role (the job's identity): list and read the stack's bucket (LATEST, manifests, the
      job's config, its state), write the state object and nothing else; with ``apply``, change
      only the weighted CNAME records of the configured name in the configured hosted zone (UPSERT),
      and list that zone's records. Probing the three endpoints needs no IAM: they are HTTP(S)
      URLs, reached over the network like any client.
    - execution role: the endpoint's (pull from this repository, write to this log group, read
      the API token secrets, which the container gets by reference as the endpoint does; logs
      go to the stream prefix ``health``). Read-only root filesystem, ``/tmp`` a task volume.
    - a security group with no ingress; egress HTTPS (AWS APIs, the GCP and Azure endpoints) and,
      when the AWS endpoint serves plain HTTP, HTTP.
    - scheduler role: EventBridge Scheduler may run this task definition (any revision: each
      image change makes a new one) in this cluster only, and pass exactly the two roles above.
    - the schedule in a schedule group of its own (the scheduler's metrics are per group), and
      the alarms of :mod:`infra.components.aws_alarms` on an SNS topic.
    """

    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    scheduler_role: aws.iam.Role
    schedule: aws.scheduler.Schedule
    alarms: JobAlarms

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        job: HealthJobSpec,
        options: AwsOptions,
        endpoint: AwsEndpoint,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:AwsHealthJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        image, endpoint_url = running_endpoint(endpoint)
        partition = aws.get_partition_output(opts=invoke).partition
        # The job's configuration and state live in their own bucket, which only operators and the
        # job write: not the model bucket, which publishers write.
        control = private_bucket(f"{name}-control", self, access_logs=endpoint.access_logs)
        self.control_root = storage_root("aws", control.bucket)

        self.task_role = aws.iam.Role(
            f"{name}-task",
            description="The health job: reads its bucket, writes its state object"
            + (", moves the weighted record's weights" if job.apply else ""),
            assume_role_policy=ecs_tasks_trust(spec.region, invoke),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task",
            role=self.task_role.id,
            policy=policy(*self._job_statements(job, endpoint.bucket_arn, control.arn, partition)),
            opts=child,
        )
        security_group = job_security_group(name, self, endpoint.vpc_id, options.https)

        container = {
            "name": JOB_CONTAINER_NAME,
            "image": image,
            "essential": True,
            # The whole argv, whatever the image's ENTRYPOINT (it starts the endpoint).
            "entryPoint": list(job.command[:1]),
            "command": list(job.command[1:]),
            "environment": [
                {"name": key, "value": value}
                for key, value in sorted(job.container_env(self.control_root, endpoint_url).items())
            ],
            # For the probes to send once they authenticate (not yet); ECS reads it from Secrets Manager.
            "secrets": [reference.container_secret() for reference in endpoint.tokens],
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": SCRATCH_DIR, "readOnly": False}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": endpoint.log_group.name,
                    "awslogs-region": spec.region,
                    "awslogs-stream-prefix": JOB_CONTAINER_NAME,
                },
            },
        }
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{name}-{pulumi.get_stack()}",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=JOB_CPU_UNITS,
            memory=JOB_MEMORY_MIB,
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=endpoint.execution_role.arn,
            task_role_arn=self.task_role.arn,
            volumes=[{"name": "scratch"}],
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=child,
        )

        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self.scheduler_role = aws.iam.Role(
            f"{name}-scheduler",
            description="EventBridge Scheduler starts the health job's task, nothing else",
            assume_role_policy=policy(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "scheduler.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    # Only schedules of this account (confused-deputy guard).
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ),
            opts=child,
        )
        scheduler_policy = aws.iam.RolePolicy(
            f"{name}-scheduler",
            role=self.scheduler_role.id,
            policy=policy(
                {
                    "Sid": "RunTheHealthTask",
                    "Effect": "Allow",
                    "Action": "ecs:RunTask",
                    # Every revision of this family: a policy pinned to one revision would fail the
                    # first run after an image change if the schedule were updated first.
                    "Resource": pulumi.Output.concat(self.task_definition.arn_without_revision, ":*"),
                    "Condition": {"ArnEquals": {"ecs:cluster": endpoint.cluster.arn}},
                },
                {
                    "Sid": "PassItsRoles",
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": [endpoint.execution_role.arn, self.task_role.arn],
                    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                },
            ),
            opts=child,
        )
        # A group of its own: the scheduler's error metric has the group as its only dimension.
        group = aws.scheduler.ScheduleGroup(f"{name}-schedules", opts=child)
        self.schedule = aws.scheduler.Schedule(
            name,
            group_name=group.name,
            description="orchestrator " + " ".join(job.command[1:]),
            schedule_expression=job.schedule,
            schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"},
            state="ENABLED",
            target={
                "arn": endpoint.cluster.arn,
                "role_arn": self.scheduler_role.arn,
                "ecs_parameters": {
                    "task_definition_arn": self.task_definition.arn,
                    "launch_type": "FARGATE",
                    "task_count": 1,
                    "network_configuration": {
                        "subnets": endpoint.subnet_ids,
                        "security_groups": [security_group.id],
                        # As the endpoint's tasks: public IPs in the default VPC's subnets.
                        "assign_public_ip": options.vpc_id is None,
                    },
                },
                "retry_policy": {
                    "maximum_retry_attempts": 0,
                    "maximum_event_age_in_seconds": JOB_MAX_EVENT_AGE_S,
                },
            },
            # The first invocation must find its permissions in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_policy]),
        )
        self.alarms = job_alarms(
            name,
            self,
            cluster_arn=endpoint.cluster.arn,
            family_arn=self.task_definition.arn_without_revision,
            schedule_group=group.name,
            emails=job.alert_emails,
            account_id=account_id,
        )
        if not job.alert_emails:
            pulumi.log.warn(
                "aws: no health_job.alert_emails: the job's alarms publish to the SNS topic "
                "(the health job component's alerts_topic) with no subscriber; subscribe someone",
                resource=self,
            )
        # The roles the GCP and Azure jobs assume by identity federation (health_job.federation).
        self.federated_roles = federated_roles(name, self, job, control.arn, partition)
        self.exports = {
            "identity": self.task_role.arn,
            "federated_roles": {c: r.arn for c, r in self.federated_roles.items()},
        }
        self.register_outputs(
            {
                "schedule": self.schedule.arn,
                "task_definition": self.task_definition.arn,
                "alerts_topic": self.alarms.topic.arn,
            }
        )

    @staticmethod
    def _job_statements(
        job: HealthJobSpec,
        bucket_arn: pulumi.Output[str],
        control_arn: pulumi.Output[str],
        partition: pulumi.Output[str],
    ) -> list[dict[str, Any]]:
        statements: list[dict[str, Any]] = [
            # The model bucket, read only: LATEST and manifests (the expected version and canary).
            {"Sid": "ListTheModels", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
            {
                "Sid": "ReadTheModels",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.concat(bucket_arn, "/models/*"),
            },
            # ListBucket: a state object that does not exist yet (the first run) then answers
            # 404, not 403, so "no state yet" is not mistaken for "denied".
            {"Sid": "ListTheControl", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": control_arn},
            {
                "Sid": "ReadConfigAndState",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [
                    pulumi.Output.concat(control_arn, "/", job.config_path),
                    pulumi.Output.concat(control_arn, "/", job.state_path),
                ],
            },
            # Conditional writes (If-Match / If-None-Match) need nothing beyond PutObject.
            {
                "Sid": "WriteTheStateOnly",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(control_arn, "/", job.state_path),
            },
        ]
        # As a vantage point (docs/design/quorum.md): the observations and its lease copy.
        statements += vantage_statements(control_arn, job.cloud)
        statements += route53_statements(job, partition)
        return statements
