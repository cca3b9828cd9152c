"""The AWS stack's network: the VPC and subnets, and every security group in it.

- the load balancer's group: the listener ports from anywhere, out to the tasks' port only;
- the endpoint tasks' group: the endpoint's port from the load balancer only, out to HTTPS only
  (ECR, S3 and CloudWatch Logs);
- the health job tasks' group: nothing in; out to HTTPS and, while the AWS endpoint serves plain
  HTTP, HTTP.

Functions, not components: each creates its resources as children of the ``parent`` it is
given (the endpoint's or the job's component), so the URNs are the components'.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.aws_shared import HTTP_PORT, HTTPS_PORT
from infra.specs.aws_options import AwsOptions

__all__ = ["endpoint_security_groups", "job_security_group", "network"]


def network(
    options: AwsOptions, invoke: pulumi.InvokeOutputOptions
) -> tuple[pulumi.Input[str], pulumi.Input[list[str]]]:
    """``(vpc_id, subnet_ids)``: the default VPC's default subnets (public, so tasks reach ECR and
    S3 without a NAT gateway), or the configured ones (expected to route out through NAT or
    endpoints)."""
    if options.vpc_id is not None:
        return options.vpc_id, list(options.subnet_ids)
    default_vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)
    subnets = aws.ec2.get_subnets_output(
        filters=default_vpc.id.apply(
            lambda vpc_id: [
                aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc_id]),
                aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]),
            ]
        ),
        opts=invoke,
    )
    return default_vpc.id, subnets.ids


def endpoint_security_groups(
    name: str, parent: pulumi.Resource, vpc_id: pulumi.Input[str], port: int, https: bool
) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
    """``(load balancer's group, tasks' group)``. Load balancer: the listener ports (80, and 443
    with ``https``) from anywhere, out to the tasks' ``port`` only. Tasks: ``port`` from the load
    balancer only, out to HTTPS only."""
    child = pulumi.ResourceOptions(parent=parent)
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
    for listener_port in (HTTP_PORT, HTTPS_PORT) if https else (HTTP_PORT,):
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


def job_security_group(
    name: str, parent: pulumi.Resource, vpc_id: pulumi.Input[str], endpoint_https: bool
) -> aws.ec2.SecurityGroup:
    """The health job tasks' group: no ingress; egress HTTPS and, unless the AWS endpoint serves
    HTTPS (``endpoint_https``), HTTP."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.ec2.SecurityGroup(
        name,
        vpc_id=vpc_id,
        description="Health job tasks: nothing in; out to the endpoints and the AWS APIs",
        opts=child,
    )
    # S3, Route 53, ECR, CloudWatch Logs and the GCP and Azure endpoints are all HTTPS; the
    # AWS endpoint is plain HTTP until a certificate is configured.
    ports = (HTTPS_PORT,) if endpoint_https else (HTTP_PORT, HTTPS_PORT)
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
