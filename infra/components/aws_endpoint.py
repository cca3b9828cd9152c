"""The endpoint on AWS: ECR, a private S3 model bucket, Fargate behind an Application Load Balancer.

One :class:`AwsEndpoint` component owns every resource of the AWS endpoint:

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

The scheduled health job beside it is :mod:`infra.components.aws_health_job`; the network and
its security groups are :mod:`infra.components.aws_network`.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.aws_network import endpoint_security_groups, network
from infra.components.aws_shared import HTTP_PORT, HTTPS_PORT, ecs_tasks_trust, policy, private_bucket
from infra.components.endpoint import EndpointComponent
from infra.specs.aws_options import AwsOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["CONTAINER_NAME", "AwsEndpoint"]

CONTAINER_NAME = "endpoint"
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

    def __init__(
        self, name: str, spec: EndpointSpec, options: AwsOptions, opts: pulumi.ResourceOptions | None = None
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
        bucket = self._model_bucket()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=options.log_retention_days, opts=self._child
        )
        execution_role, task_role = self._roles(repository, bucket, log_group)
        vpc_id, subnet_ids = network(options, self._invoke)
        self.bucket_arn, self.execution_role, self.log_group = bucket.arn, execution_role, log_group
        self.vpc_id, self.subnet_ids = vpc_id, subnet_ids
        alb_sg, task_sg = endpoint_security_groups(name, self, vpc_id, spec.port, options.https)
        target_group, listener = self._load_balancer(vpc_id, subnet_ids, alb_sg)

        self.registry = repository.repository_url
        self.image = pulumi.Output.concat(repository.repository_url, "@", spec.digest)
        self.set_model_bucket(spec, bucket.bucket)
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
