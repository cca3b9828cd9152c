"""The AWS endpoint's public entry: an Application Load Balancer, and with a public name, TLS.

Without ``endpoint.public_name`` the load balancer forwards plain HTTP (with a warning). With it:

- an ACM certificate for the public name and ``aws.<public name>``, validated by DNS in the
  configured Route 53 zone (the stack writes the two validation records itself; DNS validation
  does not depend on where the weighted public name points, so issuance and renewal work while
  other clouds take the traffic);
- an HTTPS listener (TLS 1.2+, AWS's recommended policy) with the validated certificate, whose
  default answer is 421 Misdirected Request: only a request for the public name or
  ``aws.<public name>`` (a listener rule on the Host header) reaches the tasks;
- the HTTP listener redirects to HTTPS;
- ``aws.<public name>``: an alias record to the load balancer, the target of the dns stack's
  weighted record for AWS and of its Route 53 health check (an ALB has no fixed address, so the
  check cannot be sent to it with the public name as Host; it sends ``aws.<public name>``, which
  the same rule, listener and certificate serve).

Functions, not components: resources are children of the ``parent`` given (the endpoint).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws_shared import HTTP_PORT, HTTPS_PORT
from infra.specs.aws_options import AwsOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["MISDIRECTED", "SSL_POLICY", "Ingress", "load_balancer"]

# TLS 1.3 and 1.2 only, forward-secret ciphers: AWS's recommended ALB policy.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Long enough for in-flight predictions (milliseconds each) to finish, short enough that a
# deployment does not wait the default 300 s per task.
DEREGISTRATION_DELAY_S = 30
# RFC 9110 15.5.20: the request reached a server not configured for its host name.
MISDIRECTED = "421"
# Route 53's own answer cache for validation records: short, they never change.
VALIDATION_TTL_S = 60


@dataclass(frozen=True)
class Ingress:
    """What the endpoint needs from its entry: the target group tasks register in, the resource
    that attaches it to a listener (the service must wait for it), and the endpoint URL."""

    target_group: aws.lb.TargetGroup
    attached: pulumi.Resource
    endpoint_url: pulumi.Output[str]
    alb: aws.lb.LoadBalancer


def load_balancer(
    name: str,
    parent: pulumi.Resource,
    spec: EndpointSpec,
    options: AwsOptions,
    vpc_id: pulumi.Input[str],
    subnet_ids: pulumi.Input[list[str]],
    alb_sg: aws.ec2.SecurityGroup,
) -> Ingress:
    """The ALB, its target group (health check = readiness) and listeners; see the module docstring."""
    child = pulumi.ResourceOptions(parent=parent)
    alb = aws.lb.LoadBalancer(
        f"{name}-alb",
        load_balancer_type="application",
        internal=False,
        security_groups=[alb_sg.id],
        subnets=subnet_ids,
        drop_invalid_header_fields=True,
        opts=child,
    )
    readiness = spec.readiness_probe
    target_group = aws.lb.TargetGroup(
        f"{name}-tg",
        port=spec.port,
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
    if spec.public_name is None or spec.cloud_name is None or options.hosted_zone_id is None:
        pulumi.log.warn(
            "aws: no public name (ml-orchestrator:endpoint.public_name and aws.hosted_zone_id): the "
            "endpoint is served over plain HTTP on the load balancer's own name; set both to serve "
            "HTTPS",
            resource=parent,
        )
        listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=forward,
            opts=child,
        )
        return Ingress(target_group, listener, pulumi.Output.concat("http://", alb.dns_name), alb)

    names = (spec.public_name, spec.cloud_name)
    certificate_arn = _validated_certificate(name, parent, names, options.hosted_zone_id)
    https = aws.lb.Listener(
        f"{name}-https",
        load_balancer_arn=alb.arn,
        port=HTTPS_PORT,
        protocol="HTTPS",
        ssl_policy=SSL_POLICY,
        certificate_arn=certificate_arn,
        default_actions=[
            {
                "type": "fixed-response",
                "fixed_response": {
                    "content_type": "text/plain",
                    "status_code": MISDIRECTED,
                    "message_body": "unknown host name",
                },
            }
        ],
        opts=child,
    )
    rule = aws.lb.ListenerRule(
        f"{name}-public-name",
        listener_arn=https.arn,
        priority=1,
        conditions=[{"host_header": {"values": list(names)}}],
        actions=[{"type": "forward", "target_group_arn": target_group.arn}],
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
    aws.route53.Record(
        f"{name}-cloud-name",
        zone_id=options.hosted_zone_id,
        name=spec.cloud_name,
        type="A",
        aliases=[{"name": alb.dns_name, "zone_id": alb.zone_id, "evaluate_target_health": True}],
        opts=child,
    )
    return Ingress(target_group, rule, pulumi.Output.from_input(f"https://{spec.cloud_name}"), alb)


def _option_for(domain: str, found: dict[str, Any]) -> Any:
    """The validation option of ``domain`` among a certificate's (keyed by domain name)."""
    return found[domain]


def _validated_certificate(
    name: str, parent: pulumi.Resource, names: tuple[str, str], zone_id: str
) -> pulumi.Output[str]:
    """An ACM certificate for ``names`` validated by DNS in ``zone_id``; its ARN once ISSUED
    (``CertificateValidation`` waits for it, so the listener never gets a pending certificate)."""
    child = pulumi.ResourceOptions(parent=parent)
    certificate = aws.acm.Certificate(
        f"{name}-cert",
        domain_name=names[0],
        subject_alternative_names=[names[1]],
        validation_method="DNS",
        key_algorithm="EC_prime256v1",
        # A replacement (another name) is issued before the listener lets go of this one.
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=False),
    )
    by_name = certificate.domain_validation_options.apply(lambda options: {o.domain_name: o for o in options})
    records = []
    # One record per name, in a fixed order: stable URNs across runs.
    for index, domain in enumerate(names):
        option = by_name.apply(functools.partial(_option_for, domain))
        records.append(
            aws.route53.Record(
                f"{name}-cert-validation-{index}",
                zone_id=zone_id,
                name=option.apply(lambda o: o.resource_record_name or ""),
                type=option.apply(lambda o: o.resource_record_type or "CNAME"),
                records=[option.apply(lambda o: o.resource_record_value or "")],
                ttl=VALIDATION_TTL_S,
                # ACM gives the same record to every certificate of a name: another stack (or a
                # renewal) may have written it already.
                allow_overwrite=True,
                opts=child,
            )
        )
    validation = aws.acm.CertificateValidation(
        f"{name}-cert-validation",
        certificate_arn=certificate.arn,
        validation_record_fqdns=[record.fqdn for record in records],
        opts=child,
    )
    return validation.certificate_arn
