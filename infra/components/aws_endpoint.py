"""The endpoint on AWS: ECR, a private S3 model bucket, Fargate behind an Application Load Balancer.

One :class:`AwsEndpoint` component owns every resource of the AWS endpoint:

- an ECR repository (immutable tags, scan on push) the image is copied into;
- the S3 bucket the orchestrator publishes models to: versioned, SSE-S3 encrypted, every public
  access blocked, ACLs disabled, and a policy that refuses requests without TLS 1.2+;
- a task execution role (pull from this repository, write to this log group) and a task role
  that can only read this bucket (``s3:GetObject`` on its objects, ``s3:ListBucket`` on it);
- an access log bucket receiving the model bucket's S3 server access logs (who wrote or read
  which object: a tampered artifact leaves a trace);
- one Secrets Manager secret per configured API token (:mod:`infra.components.aws_secrets`),
  given to the container by reference (``secrets[].valueFrom``), read by the execution role;
- with ``aws.deployers``, the deployer role (:mod:`infra.components.aws_deployer`);
- an ECS cluster, and once ``endpoint.image`` is set, a Fargate task definition and service in
  the default VPC (or the configured subnets), behind an ALB whose target group checks the
  readiness path (:mod:`infra.components.aws_ingress`: with a public name, HTTPS with an ACM
  certificate validated in the zone, HTTP redirected; else plain HTTP with a warning);
  target-tracking autoscaling between min and max tasks; a log group with retention. Without an
  image, no task definition, service or scaling is created (a warning says so): the first `up`
  creates the registry and buckets the image and models are pushed to.

The container runs with a read-only root filesystem; ``/tmp`` (and the model cache, when
configured outside it) is a writable task volume (Fargate ephemeral storage).

Probes on ECS: the ALB target group asks the readiness path (a task takes traffic only once the
model is verified), the container health check asks the liveness path (ECS replaces a task that
stops answering), and the service's health-check grace period is the startup budget.
The container's environment is exactly :meth:`EndpointSpec.container_env`; Fargate itself adds
``AWS_REGION`` and the task role's credentials endpoint, which boto3 reads.

The scheduled health job beside it is :mod:`infra.components.aws_health_job`; the network and
its security groups are :mod:`infra.components.aws_network`.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.aws_deployer import deployer_role
from infra.components.aws_ingress import load_balancer
from infra.components.aws_network import endpoint_security_groups, network
from infra.components.aws_secrets import TokenReference, api_token_secrets, read_statement
from infra.components.aws_shared import access_log_bucket, ecs_tasks_trust, policy, private_bucket
from infra.components.endpoint import EndpointComponent, writable_paths
from infra.specs.auth import ApiTokens
from infra.specs.aws_options import AwsOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["CONTAINER_NAME", "AwsEndpoint"]

CONTAINER_NAME = "endpoint"
# Scale out fast on load, scale in slowly so a burst does not flap the task count.
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
# The liveness check runs inside the image, which has Python and no curl.
_LIVENESS_COMMAND = (
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout={timeout})"
)


class AwsEndpoint(EndpointComponent):
    """The model endpoint on ECS Fargate; see the module docstring for what it creates."""

    # What the health job reuses: the bucket, the cluster, the execution role (pull this image,
    # write this log group, read the token secrets), the log group, the network, the tokens
    # and the access log bucket.
    bucket_arn: pulumi.Output[str]
    cluster: aws.ecs.Cluster
    execution_role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    tokens: list[TokenReference]
    access_logs: aws.s3.Bucket
    deployer: aws.iam.Role | None

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        options: AwsOptions,
        tokens: ApiTokens,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:AwsEndpoint", name, None, opts)
        self._name, self._spec, self._options = name, spec, options
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
        account_id = aws.get_caller_identity_output(opts=self._invoke).account_id
        self.access_logs = access_log_bucket(f"{name}-access-logs", self, account_id)
        bucket = self._model_bucket()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=options.log_retention_days, opts=self._child
        )
        self.tokens = api_token_secrets(name, self, tokens)
        execution_role, task_role = self._roles(repository, bucket, log_group)
        vpc_id, subnet_ids = network(options, self._invoke)
        self.bucket_arn, self.execution_role, self.log_group = bucket.arn, execution_role, log_group
        self.vpc_id, self.subnet_ids = vpc_id, subnet_ids
        alb_sg, task_sg = endpoint_security_groups(name, self, vpc_id, spec.port, options.https)
        ingress = load_balancer(name, self, spec, options, vpc_id, subnet_ids, alb_sg)
        self.endpoint_url = ingress.endpoint_url
        self.deployer = deployer_role(name, self, options.deployers, bucket.arn, repository.arn)

        self.registry = repository.repository_url
        self.set_model_bucket(spec, bucket.bucket)
        self.storage_settings = {"region": spec.region}
        self.set_public_entry(spec, dns_records=[], health_check_ip=None)
        self.api_token_secrets = {reference.slot: reference.arn for reference in self.tokens}
        # The cluster exists from the first `up` (the health job runs in it too); tasks only once
        # an image is configured.
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], opts=self._child
        )
        if spec.digest is None:
            self.image = None
            self.warn_no_image()
        else:
            self.image = pulumi.Output.concat(repository.repository_url, "@", spec.digest)
            task_definition = self._task_definition(self.image, execution_role, task_role, log_group)
            self._service(task_definition, ingress.target_group, ingress.attached, subnet_ids, task_sg)

        self.register_endpoint_outputs()

    def _model_bucket(self) -> aws.s3.Bucket:
        """Private (public access blocked, ACLs disabled), versioned, encrypted, TLS only, with
        server access logs."""
        return private_bucket(f"{self._name}-models", self, access_logs=self.access_logs)

    def _roles(
        self, repository: aws.ecr.Repository, bucket: aws.s3.Bucket, log_group: aws.cloudwatch.LogGroup
    ) -> tuple[aws.iam.Role, aws.iam.Role]:
        """The execution role (pull, log) and the task role (read the model bucket, nothing else)."""
        name, child = self._name, self._child
        # Only ECS tasks of this account and region may assume them.
        assume_role = ecs_tasks_trust(self._spec.region, self._invoke)
        execution_role = aws.iam.Role(
            f"{name}-execution",
            description="ECS pulls the endpoint image and writes its logs",
            assume_role_policy=assume_role,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-execution",
            role=execution_role.id,
            policy=policy(
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
                # ECS reads the token secrets when a task starts; the task itself cannot.
                *read_statement(self.tokens),
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
            policy=policy(
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

    def _task_definition(
        self,
        image: pulumi.Output[str],
        execution_role: aws.iam.Role,
        task_role: aws.iam.Role,
        log_group: aws.cloudwatch.LogGroup,
    ) -> aws.ecs.TaskDefinition:
        """The image by digest from this account's repository, with the common environment, the
        tokens by reference, and a read-only root filesystem with writable scratch volumes."""
        spec = self._spec
        liveness = spec.liveness_probe
        volumes = writable_paths(spec)
        container = {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "portMappings": [{"containerPort": spec.port, "hostPort": spec.port, "protocol": "tcp"}],
            "environment": [
                {"name": key, "value": value}
                for key, value in sorted(spec.container_env(self.model_uri).items())
            ],
            "secrets": [reference.container_secret() for reference in self.tokens],
            "readonlyRootFilesystem": True,
            "mountPoints": [
                {"sourceVolume": volume, "containerPath": path, "readOnly": False}
                for volume, path in volumes.items()
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
            # Fargate task storage (ephemeral, per task) behind each writable path.
            volumes=[{"name": volume} for volume in volumes],
            container_definitions=pulumi.Output.json_dumps([container]),
            opts=self._child,
        )

    def _service(
        self,
        task_definition: aws.ecs.TaskDefinition,
        target_group: aws.lb.TargetGroup,
        attached: pulumi.Resource,
        subnet_ids: pulumi.Input[list[str]],
        task_sg: aws.ec2.SecurityGroup,
    ) -> None:
        """The Fargate service behind the target group, and its autoscaling."""
        name, spec, cluster = self._name, self._spec, self.cluster
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
                depends_on=[attached],
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
