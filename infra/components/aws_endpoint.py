"""The endpoint on AWS: ECR, a private S3 model bucket, Fargate behind an Application Load Balancer.

One :class:`AwsEndpoint` component owns every resource of the AWS stack:

- an ECR repository (immutable tags, scan on push) the image is copied into;
- the S3 bucket the orchestrator publishes models to: versioned, SSE-S3 encrypted, every public
  access blocked, ACLs disabled, and a policy that refuses requests without TLS 1.2+;
- a task execution role (pull from this repository, write to this log group) and a task role
  that can only read this bucket (``s3:GetObject`` on its objects, ``s3:ListBucket`` on it);
- an ECS cluster, a Fargate task definition and service in the default VPC (or the configured
  subnets), behind an ALB whose target group checks the readiness path;
- an HTTPS listener when a certificate is configured (HTTP redirects to it), else HTTP only,
  with a warning; target-tracking autoscaling between min and max tasks; a log group with
  retention.

Probes on ECS: the ALB target group asks the readiness path (a task takes traffic only once the
model is verified), the container health check asks the liveness path (ECS replaces a task that
stops answering), and the service's health-check grace period is the startup budget.
The container's environment is exactly :meth:`EndpointSpec.container_env`; Fargate itself adds
``AWS_REGION`` and the task role's credentials endpoint, which boto3 reads.

:class:`AwsHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs the scheduled
``orchestrator health --once --apply`` as a Fargate task in the endpoint's cluster, started by
EventBridge Scheduler; its permissions are in its docstring.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.endpoint import EndpointComponent
from infra.specs.aws_options import AwsOptions
from infra.specs.endpoint import EndpointSpec
from infra.specs.health_job import HealthJobSpec

__all__ = ["CONTAINER_NAME", "JOB_CONTAINER_NAME", "AwsEndpoint", "AwsHealthJob", "private_bucket"]

CONTAINER_NAME = "endpoint"
HTTP_PORT = 80
HTTPS_PORT = 443
# TLS 1.3 and 1.2 only, forward-secret ciphers: AWS's recommended ALB policy.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Long enough for in-flight predictions (milliseconds each) to finish, short enough that a
# deployment does not wait the default 300 s per task.
DEREGISTRATION_DELAY_S = 30
# Scale out fast on load, scale in slowly so a burst does not flap the task count.
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
# The liveness check runs inside the image, which has Python and no curl.
_LIVENESS_COMMAND = (
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout={timeout})"
)


def _policy(*statements: dict[str, Any]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _ecs_tasks_trust(region: str, opts: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    """A role only ECS tasks of this account and region may assume (confused-deputy guard)."""
    account_id = aws.get_caller_identity_output(opts=opts).account_id
    partition = aws.get_partition_output(opts=opts).partition
    source_arn = pulumi.Output.concat("arn:", partition, ":ecs:", region, ":", account_id, ":*")
    return _policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": source_arn},
            },
        }
    )


def private_bucket(name: str, parent: pulumi.Resource) -> aws.s3.Bucket:
    """A bucket that is private (public access blocked, ACLs disabled), versioned, encrypted and
    TLS only: the model bucket, and the health job's control bucket."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, opts=child)
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=child,
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketVersioning(
        f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
    )
    # SSE-S3: encrypted at rest with no KMS key policy for the reader to need.
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=child,
    )
    everything = [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")]
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": everything}
    aws.s3.BucketPolicy(
        f"{name}-tls-only",
        bucket=bucket.id,
        policy=_policy(
            {
                "Sid": "DenyInsecureTransport",
                **deny,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {"Sid": "DenyTlsBelow12", **deny, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
        ),
        # S3 refuses concurrent configuration changes to one bucket; order them.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_access]),
    )
    return bucket


class AwsEndpoint(EndpointComponent):
    """The model endpoint on ECS Fargate; see the module docstring for what it creates."""

    # What the health job reuses: the bucket, the cluster, the execution role (pull this image,
    # write this log group), the log group and the network.
    bucket_arn: pulumi.Output[str]
    cluster: aws.ecs.Cluster
    execution_role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    options: AwsOptions

    def __init__(
        self, name: str, spec: EndpointSpec, options: AwsOptions, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-orchestrator:infra:AwsEndpoint", name, None, opts)
        self._name, self._spec, self._options = name, spec, options
        self.options = options
        self._child = pulumi.ResourceOptions(parent=self)
        self._invoke = pulumi.InvokeOutputOptions(parent=self)

        # Registry: the image is copied here by digest, so what runs is what was scanned.
        repository = aws.ecr.Repository(
            f"{name}-images",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            opts=self._child,
        )
        bucket = self._model_bucket()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=options.log_retention_days, opts=self._child
        )
        execution_role, task_role = self._roles(repository, bucket, log_group)
        vpc_id, subnet_ids = self._network()
        self.bucket_arn, self.execution_role, self.log_group = bucket.arn, execution_role, log_group
        self.vpc_id, self.subnet_ids = vpc_id, subnet_ids
        alb_sg, task_sg = self._security_groups(vpc_id)
        target_group, listener = self._load_balancer(vpc_id, subnet_ids, alb_sg)

        self.registry = repository.repository_url
        self.image = pulumi.Output.concat(repository.repository_url, "@", spec.digest)
        self.bucket = bucket.bucket
        self.storage_root = pulumi.Output.concat("s3://", bucket.bucket)
        self.model_uri = pulumi.Output.concat(self.storage_root, "/", spec.model_key)
        self.storage_settings = {"region": spec.region}
        task_definition = self._task_definition(execution_role, task_role, log_group)
        self._service(task_definition, target_group, listener, subnet_ids, task_sg)

        self.register_endpoint_outputs()

    def _model_bucket(self) -> aws.s3.Bucket:
        """Private (public access blocked, ACLs disabled), versioned, encrypted, TLS only."""
        return private_bucket(f"{self._name}-models", self)

    def _roles(
        self, repository: aws.ecr.Repository, bucket: aws.s3.Bucket, log_group: aws.cloudwatch.LogGroup
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        """The execution role (pull, log) and the task role (read the model bucket, nothing else)."""
        name, child = self._name, self._child
        # Only ECS tasks of this account and region may assume them.
        assume_role = _ecs_tasks_trust(self._spec.region, self._invoke)
        execution_role = aws.iam.Role(
            f"{name}-execution",
            description="ECS pulls the endpoint image and writes its logs",
            assume_role_policy=assume_role,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-execution",
            role=execution_role.id,
            policy=_policy(
                # GetAuthorizationToken has no resource-level permissions.
                {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ],
                    "Resource": repository.arn,
                },
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": pulumi.Output.concat(log_group.arn, ":*"),
                },
            ),
            opts=child,
        )
        task_role = aws.iam.Role(
            f"{name}-task",
            description="The endpoint reads its model bucket, nothing else",
            assume_role_policy=assume_role,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task-reads-models",
            role=task_role.id,
            policy=_policy(
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket.arn},
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": pulumi.Output.concat(bucket.arn, "/*"),
                },
            ),
            opts=child,
        )
        return execution_role, task_role

    def _network(self) -> tuple[pulumi.Input[str], pulumi.Input[list[str]]]:
        """The default VPC's default subnets (public, so tasks reach ECR and S3 without a NAT
        gateway), or the configured ones (expected to route out through NAT or endpoints)."""
        if self._options.vpc_id is not None:
            return self._options.vpc_id, list(self._options.subnet_ids)
        default_vpc = aws.ec2.get_vpc_output(default=True, opts=self._invoke)
        subnets = aws.ec2.get_subnets_output(
            filters=default_vpc.id.apply(
                lambda vpc_id: [
                    aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc_id]),
                    aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
                ]
            ),
            opts=self._invoke,
        )
        return default_vpc.id, subnets.ids

    def _security_groups(
        self, vpc_id: pulumi.Input[str]
    ) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """Load balancer: the listener ports from anywhere, out to the tasks' port only.
        Tasks: the endpoint's port from the load balancer only, out to HTTPS only."""
        name, child, port = self._name, self._child, self._spec.port
        alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=vpc_id,
            description="Endpoint load balancer: HTTP(S) from anywhere",
            opts=child,
        )
        task_sg = aws.ec2.SecurityGroup(
            f"{name}-task",
            vpc_id=vpc_id,
            description="Endpoint tasks: the port from the load balancer",
            opts=child,
        )
        for listener_port in (HTTP_PORT, HTTPS_PORT) if self._options.https else (HTTP_PORT,):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{listener_port}",
                security_group_id=alb_sg.id,
                ip_protocol="tcp",
                from_port=listener_port,
                to_port=listener_port,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-tasks",
            security_group_id=alb_sg.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=task_sg.id,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-task-from-alb",
            security_group_id=task_sg.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=alb_sg.id,
            opts=child,
        )
        # ECR, S3 and CloudWatch Logs are all HTTPS APIs; nothing else leaves a task.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-task-to-https",
            security_group_id=task_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )
        return alb_sg, task_sg

    def _load_balancer(
        self, vpc_id: pulumi.Input[str], subnet_ids: pulumi.Input[list[str]], alb_sg: aws.ec2.SecurityGroup
    ) -> tuple[aws.lb.TargetGroup, aws.lb.Listener]:
        """The ALB, its target group (health check = readiness) and listeners; sets endpoint_url."""
        name, child, options = self._name, self._child, self._options
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            security_groups=[alb_sg.id],
            subnets=subnet_ids,
            drop_invalid_header_fields=True,
            opts=child,
        )
        readiness = self._spec.readiness_probe
        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=self._spec.port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=vpc_id,
            deregistration_delay=DEREGISTRATION_DELAY_S,
            health_check={
                "enabled": True,
                "path": readiness.path,
                "port": "traffic-port",
                "protocol": "HTTP",
                "matcher": "200",
                "interval": readiness.period_s,
                "timeout": readiness.timeout_s,
                "healthy_threshold": readiness.success_threshold,
                "unhealthy_threshold": readiness.failure_threshold,
            },
            opts=child,
        )
        forward: list[aws.lb.ListenerDefaultActionArgsDict] = [
            {"type": "forward", "target_group_arn": target_group.arn}
        ]
        if not options.https:
            pulumi.log.warn(
                "aws: no certificate configured (ml-orchestrator:aws.certificate_arn and .domain): the "
                "endpoint is served over plain HTTP; set both to serve HTTPS",
                resource=self,
            )
            self.endpoint_url = pulumi.Output.concat("http://", alb.dns_name)
            listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=HTTP_PORT,
                protocol="HTTP",
                default_actions=forward,
                opts=child,
            )
            return target_group, listener
        self.endpoint_url = pulumi.Output.from_input(f"https://{options.domain}")
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=SSL_POLICY,
            certificate_arn=options.certificate_arn,
            default_actions=forward,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http-redirect",
            load_balancer_arn=alb.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=[
                {
                    "type": "redirect",
                    "redirect": {"port": str(HTTPS_PORT), "protocol": "HTTPS", "status_code": "HTTP_301"},
                }
            ],
            opts=child,
        )
        if options.hosted_zone_id is not None:
            aws.route53.Record(
                f"{name}-domain",
                zone_id=options.hosted_zone_id,
                name=options.domain,
                type="A",
                aliases=[{"name": alb.dns_name, "zone_id": alb.zone_id, "evaluate_target_health": True}],
                opts=child,
            )
        return target_group, listener

    def _task_definition(
        self, execution_role: aws.iam.Role, task_role: aws.iam.Role, log_group: aws.cloudwatch.LogGroup
    ) -> aws.ecs.TaskDefinition:
        """The image by digest from this account's repository, with the common environment."""
        spec = self._spec
        liveness = spec.liveness_probe
        container = {
            "name": CONTAINER_NAME,
            "image": self.image,
            "essential": True,
            "portMappings": [{"containerPort": spec.port, "hostPort": spec.port, "protocol": "tcp"}],
            "environment": [
                {"name": key, "value": value}
                for key, value in sorted(spec.container_env(self.model_uri).items())
            ],
            "healthCheck": {
                "command": [
                    "CMD",
                    "python",
                    "-c",
                    _LIVENESS_COMMAND.format(port=spec.port, path=liveness.path, timeout=liveness.timeout_s),
                ],
                "interval": liveness.period_s,
                "timeout": liveness.timeout_s,
                "retries": liveness.failure_threshold,
                # /healthz answers as soon as the server listens: a few seconds after start.
                "startPeriod": liveness.period_s,
            },
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group.name,
                    "awslogs-region": spec.region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                },
            },
        }
        return aws.ecs.TaskDefinition(
            f"{self._name}-task",
            family=f"{self._name}-{pulumi.get_stack()}",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            # Fargate counts CPU in units of 1/1024 vCPU and memory in MiB.
            cpu=str(spec.cpu_milli * 1024 // 1000),
            memory=str(spec.memory_mib),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=self._child,
        )

    def _service(
        self,
        task_definition: aws.ecs.TaskDefinition,
        target_group: aws.lb.TargetGroup,
        listener: aws.lb.Listener,
        subnet_ids: pulumi.Input[list[str]],
        task_sg: aws.ec2.SecurityGroup,
    ) -> None:
        """The cluster, the Fargate service behind the target group, and its autoscaling."""
        name, spec = self._name, self._spec
        cluster = aws.ecs.Cluster(
            f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], opts=self._child
        )
        self.cluster = cluster
        service = aws.ecs.Service(
            f"{name}-service",
            cluster=cluster.arn,
            task_definition=task_definition.arn,
            launch_type="FARGATE",
            desired_count=spec.min_instances,
            network_configuration={
                "subnets": subnet_ids,
                "security_groups": [task_sg.id],
                "assign_public_ip": self._options.vpc_id is None,
            },
            load_balancers=[
                {
                    "target_group_arn": target_group.arn,
                    "container_name": CONTAINER_NAME,
                    "container_port": spec.port,
                }
            ],
            # The ALB's failed readiness checks do not count while the model downloads.
            health_check_grace_period_seconds=spec.startup_budget_s,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE",
            opts=pulumi.ResourceOptions(
                parent=self,
                # The target group must belong to a listener before a service can register in it.
                depends_on=[listener],
                # Autoscaling owns the task count after creation.
                ignore_changes=["desiredCount"],
            ),
        )
        scaling = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=spec.min_instances,
            max_capacity=spec.max_instances,
            opts=self._child,
        )
        aws.appautoscaling.Policy(
            f"{name}-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=scaling.service_namespace,
            scalable_dimension=scaling.scalable_dimension,
            resource_id=scaling.resource_id,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
                "target_value": self._options.target_cpu_percent,
                "scale_out_cooldown": SCALE_OUT_COOLDOWN_S,
                "scale_in_cooldown": SCALE_IN_COOLDOWN_S,
            },
            opts=self._child,
        )


JOB_CONTAINER_NAME = "health"
# Fargate's smallest size: a health round is a few HTTP probes and a few small object reads.
JOB_CPU_UNITS = "256"
JOB_MEMORY_MIB = "512"
# Invocations are not retried: the next scheduled run (a minute later by default) is the retry,
# and a late round would only race it. 60 s is the shortest event age EventBridge accepts.
JOB_MAX_EVENT_AGE_S = 60


class AwsHealthJob(pulumi.ComponentResource):
    """``orchestrator health --once [--apply]`` on a schedule: EventBridge Scheduler runs a Fargate
    task of the endpoint's image (same repository, same digest) in the endpoint's cluster.

    - task role (the job's identity): list and read the stack's bucket (LATEST, manifests, the
      job's config, its state), write the state object and nothing else; with ``apply``, change
      only the weighted CNAME records of the configured name in the configured hosted zone (UPSERT),
      and list that zone's records. Probing the three endpoints needs no IAM: they are HTTP(S)
      URLs, reached over the network like any client.
    - execution role: the endpoint's (pull from this repository, write to this log group; logs
      go to the stream prefix ``health``).
    - a security group with no ingress; egress HTTPS (AWS APIs, the GCP and Azure endpoints) and,
      when the AWS endpoint serves plain HTTP, HTTP.
    - scheduler role: EventBridge Scheduler may run this task definition (any revision: each
      image change makes a new one) in this cluster only, and pass exactly the two roles above.
    """

    task_definition: aws.ecs.TaskDefinition
    task_role: aws.iam.Role
    scheduler_role: aws.iam.Role
    schedule: aws.scheduler.Schedule
    control_root: pulumi.Output[str]  # s3://<the job's control bucket>

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        job: HealthJobSpec,
        endpoint: AwsEndpoint,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:AwsHealthJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        # The job's configuration and state live in their own bucket, which only operators and the
        # job write: not the model bucket, which publishers write.
        control = private_bucket(f"{name}-control", self)
        self.control_root = pulumi.Output.concat("s3://", control.bucket)

        self.task_role = aws.iam.Role(
            f"{name}-task",
            description="The health job: reads its bucket, writes its state object"
            + (", moves the weighted record's weights" if job.apply else ""),
            assume_role_policy=_ecs_tasks_trust(spec.region, invoke),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-task",
            role=self.task_role.id,
            policy=_policy(*self._job_statements(job, endpoint.bucket_arn, control.arn, partition)),
            opts=child,
        )
        security_group = self._security_group(name, endpoint)

        container = {
            "name": JOB_CONTAINER_NAME,
            "image": endpoint.image,
            "essential": True,
            # The whole argv, whatever the image's ENTRYPOINT (it starts the endpoint).
            "entryPoint": list(job.command[:1]),
            "command": list(job.command[1:]),
            "environment": [
                {"name": key, "value": value}
                for key, value in sorted(job.container_env(self.control_root, endpoint.endpoint_url).items())
            ],
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
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=child,
        )

        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self.scheduler_role = aws.iam.Role(
            f"{name}-scheduler",
            description="EventBridge Scheduler starts the health job's task, nothing else",
            assume_role_policy=_policy(
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
            policy=_policy(
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
        self.schedule = aws.scheduler.Schedule(
            name,
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
                        "assign_public_ip": endpoint.options.vpc_id is None,
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
        self.register_outputs({"schedule": self.schedule.arn, "task_definition": self.task_definition.arn})

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
        if job.apply and job.route53 is not None:
            zone_arn = pulumi.Output.concat("arn:", partition, ":route53:::hostedzone/", job.route53.zone_id)
            statements += [
                {
                    "Sid": "MoveTheWeightedRecord",
                    "Effect": "Allow",
                    "Action": "route53:ChangeResourceRecordSets",
                    "Resource": zone_arn,
                    # Only UPSERTs of this name's CNAME records (the orchestrator's route53 backend
                    # writes nothing else): no other record of the zone can be touched.
                    "Condition": {
                        "ForAllValues:StringEquals": {
                            "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                                job.route53.record_name
                            ],
                            "route53:ChangeResourceRecordSetsRecordTypes": ["CNAME"],
                            "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
                        }
                    },
                },
                {
                    "Sid": "ReadTheZone",
                    "Effect": "Allow",
                    "Action": "route53:ListResourceRecordSets",
                    "Resource": zone_arn,
                },
            ]
        return statements

    def _security_group(self, name: str, endpoint: AwsEndpoint) -> aws.ec2.SecurityGroup:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            name,
            vpc_id=endpoint.vpc_id,
            description="Health job tasks: nothing in; out to the endpoints and the AWS APIs",
            opts=child,
        )
        # S3, Route 53, ECR, CloudWatch Logs and the GCP and Azure endpoints are all HTTPS; the
        # AWS endpoint is plain HTTP until a certificate is configured.
        ports = (HTTPS_PORT,) if endpoint.options.https else (HTTP_PORT, HTTPS_PORT)
        for port in ports:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-out-{port}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
        return group
