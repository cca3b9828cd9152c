"""What only the AWS stack needs or accepts: ``ml-orchestrator:aws`` and Fargate's rules.

:class:`AwsOptions` holds the Route 53 zone of the public name (the stack's ACM certificate is
validated there), the network (default VPC or configured subnets), log retention, the
autoscaling target and the deployer principals. :data:`PLATFORM` is Fargate's region names
and its fixed CPU/memory pairs, applied to the endpoint spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from infra.specs.fields import ConfigError, ConfigObject, check_zone_id
from infra.specs.platform import Platform, Size, fmt

__all__ = ["FARGATE_SIZES", "LOG_RETENTION_DAYS", "PLATFORM", "AwsOptions", "parse_aws_options"]

# Fargate accepts only these pairs: vCPU -> allowed memory in GiB (AWS ECS developer guide,
# "Task CPU and memory").
FARGATE_SIZES: Final[Mapping[float, tuple[float, ...]]] = MappingProxyType(
    {
        0.25: (0.5, 1.0, 2.0),
        0.5: (1.0, 2.0, 3.0, 4.0),
        1.0: tuple(float(g) for g in range(2, 9)),
        2.0: tuple(float(g) for g in range(4, 17)),
        4.0: tuple(float(g) for g in range(8, 31)),
        8.0: tuple(float(g) for g in range(16, 61, 4)),
        16.0: tuple(float(g) for g in range(32, 121, 8)),
    }
)
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS: Final = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
_IAM_PRINCIPAL = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}")


def _check_fargate(size: Size) -> None:
    allowed = FARGATE_SIZES.get(size.cpu)
    if allowed is None:
        offered = ", ".join(fmt(c) for c in FARGATE_SIZES)
        raise size.cpu_error(f"Fargate offers {offered} vCPU, not {fmt(size.cpu)}")
    if size.memory_gib not in allowed:
        raise size.memory_error(
            f"{fmt(size.cpu)} vCPU with {fmt(size.memory_gib)} GiB is not a Fargate size; with "
            f"{fmt(size.cpu)} vCPU Fargate accepts {', '.join(fmt(m) for m in allowed)} GiB"
        )


PLATFORM: Final = Platform(
    region_key="aws:region",
    # us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5
    region_pattern=re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}"),
    region_example="like us-east-1",
    check_size=_check_fargate,
)


@dataclass(frozen=True)
class AwsOptions:
    """What only the AWS stack needs (``ml-orchestrator:aws``)."""

    # The Route 53 zone of the endpoint's public name: the stack validates its ACM certificate
    # there and points aws.<public name> at the load balancer. Required with a public name.
    hosted_zone_id: str | None = None
    # Without both, the account's default VPC and its default subnets.
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    log_retention_days: int = 30
    # ECS service autoscaling keeps average CPU near this; predictions are CPU-bound and the ALB
    # has no in-flight-requests metric to match Cloud Run's and Container Apps' concurrency.
    target_cpu_percent: int = 60
    # IAM principals (role or user ARNs) that may assume the stack's deployer role: publish
    # models to the bucket (`orchestrator sync`) and push images to the repository, nothing else.
    deployers: tuple[str, ...] = ()

    @property
    def https(self) -> bool:
        """Whether the load balancer serves HTTPS (it does once a public name, and so a zone, is set)."""
        return self.hosted_zone_id is not None


def parse_aws_options(
    raw: object, region: str, *, namespace: str, public_name: str | None = None
) -> AwsOptions:
    """The AWS options from ``ml-orchestrator:aws`` for a stack in ``region`` whose endpoint
    answers ``public_name``; pure, raises ConfigError naming the key."""
    obj = ConfigObject(f"{namespace}:aws", raw)
    hosted_zone_id = obj.optional("hosted_zone_id")
    vpc_id = obj.optional("vpc_id")
    subnet_ids = obj.strings("subnet_ids", ())
    retention = obj.integer("log_retention_days", 30, low=1)
    target_cpu = obj.integer("target_cpu_percent", 60, low=10, high=90)
    deployers = obj.strings("deployers", ())
    obj.done()
    if hosted_zone_id is not None:
        hosted_zone_id = check_zone_id(obj.sub("hosted_zone_id"), hosted_zone_id)
        if public_name is None:
            raise ConfigError(
                obj.sub("hosted_zone_id"),
                f"is only used with {namespace}:endpoint.public_name (the name its certificate covers)",
            )
    elif public_name is not None:
        raise ConfigError(
            obj.sub("hosted_zone_id"),
            f"is required with endpoint.public_name ({public_name}): the Route 53 zone the ACM "
            "certificate is validated in",
        )
    for deployer in deployers:
        if not _IAM_PRINCIPAL.fullmatch(deployer):
            raise ConfigError(
                obj.sub("deployers"),
                f"{deployer!r} is not an IAM role or user ARN (arn:aws:iam::<account>:role/...)",
            )
    if (vpc_id is None) != (not subnet_ids):
        raise ConfigError(obj.sub("subnet_ids" if vpc_id else "vpc_id"), "vpc_id and subnet_ids go together")
    if retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            obj.sub("log_retention_days"),
            f"CloudWatch Logs accepts {', '.join(map(str, LOG_RETENTION_DAYS))} days, not {retention}",
        )
    return AwsOptions(
        hosted_zone_id=hosted_zone_id,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        log_retention_days=retention,
        target_cpu_percent=target_cpu,
        deployers=deployers,
    )
