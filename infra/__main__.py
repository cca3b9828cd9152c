"""The Pulumi program: composes one stack (aws, gcp, azure or dns) from its configuration.

A cloud stack is the endpoint and, when ``ml-orchestrator:health_job.enabled`` and an image is
configured, the scheduled health job beside it (same image, same bucket), built from the cloud's
row of :data:`CLOUD_STACKS`. Before anything is created, every configuration value is validated,
including the API tokens (Pulumi secrets only) and the providers' credential keys (never plain).
Every cloud stack exports the same keys (``ENDPOINT_EXPORTS``), which
``orchestrator config from-stacks`` turns into ``orchestrator.yaml``; the dns stack exports the
record it manages and its health checks (``DNS_EXPORTS``). Both tuples are
:mod:`orchestrator.core.contract`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pulumi

from infra.components.endpoint import EndpointComponent
from infra.components.health_job import HealthJobComponent
from infra.specs import load
from infra.specs.auth import ApiTokens
from infra.specs.endpoint import EndpointSpec
from infra.specs.health_job import HealthJobSpec
from orchestrator.core.contract import DNS_EXPORTS, ENDPOINT_EXPORTS, CloudName

if TYPE_CHECKING:
    from infra.components.aws_endpoint import AwsEndpoint
    from infra.components.azure_endpoint import AzureEndpoint
    from infra.components.gcp_endpoint import GcpEndpoint
    from infra.specs.aws_options import AwsOptions
    from infra.specs.azure_options import AzureOptions
    from infra.specs.gcp_options import GcpOptions

# The component's name prefixes every child's; short, since ALB and target group names
# (32 characters) carry it plus Pulumi's 8-character suffix.
COMPONENT_NAME = "ml-endpoint"
HEALTH_JOB_NAME = f"{COMPONENT_NAME}-health"

OptionsT = TypeVar("OptionsT")
EndpointT = TypeVar("EndpointT", bound=EndpointComponent)


@dataclass(frozen=True)
class CloudStack(Generic[OptionsT, EndpointT]):
    """One cloud's row: how its options are read, and its two components."""

    load_options: Callable[[EndpointSpec], OptionsT]
    endpoint: Callable[[str, EndpointSpec, OptionsT, ApiTokens], EndpointT]
    health_job: Callable[[str, EndpointSpec, HealthJobSpec, OptionsT, EndpointT], HealthJobComponent]


# Each row imports its cloud's components, and so its provider SDK, only when its stack runs.
def _aws() -> CloudStack[AwsOptions, AwsEndpoint]:
    from infra.components.aws_endpoint import AwsEndpoint
    from infra.components.aws_health_job import AwsHealthJob

    return CloudStack(load.load_aws_options, AwsEndpoint, AwsHealthJob)


def _gcp() -> CloudStack[GcpOptions, GcpEndpoint]:
    from infra.components.gcp_endpoint import GcpEndpoint
    from infra.components.gcp_health_job import GcpHealthJob

    return CloudStack(load.load_gcp_options, GcpEndpoint, GcpHealthJob)


def _azure() -> CloudStack[AzureOptions, AzureEndpoint]:
    from infra.components.azure_endpoint import AzureEndpoint
    from infra.components.azure_health_job import AzureHealthJob

    return CloudStack(load.load_azure_options, AzureEndpoint, AzureHealthJob)


CLOUD_STACKS: Mapping[CloudName, Callable[[], CloudStack[Any, Any]]] = {
    "aws": _aws,
    "gcp": _gcp,
    "azure": _azure,
}


def _cloud(cloud: CloudName) -> None:
    # All of the stack's own configuration is read and validated before the first resource exists.
    load.check_provider_credentials()
    spec = load.load_endpoint_spec(cloud)
    job = load.load_health_job_spec(cloud)
    tokens = load.load_api_tokens()
    stack = CLOUD_STACKS[cloud]()
    options = stack.load_options(spec)
    endpoint = stack.endpoint(COMPONENT_NAME, spec, options, tokens)
    if not tokens.enabled:
        pulumi.log.warn(
            f"{cloud}: no API token (`pulumi config set --secret api_token ...`): predictions are "
            "anonymous; set one so the endpoint can require it"
        )
    # The job runs the endpoint's image: it exists once an image is configured (the endpoint
    # component warned that it is not), with its control bucket.
    runs_job = job.enabled and endpoint.image is not None
    component = stack.health_job(HEALTH_JOB_NAME, spec, job, options, endpoint) if runs_job else None
    control_root = component.control_root if component is not None else None
    values = {
        "cloud": cloud,
        "region": spec.region,
        "endpoint_url": endpoint.endpoint_url,
        "model_uri": endpoint.model_uri,
        "registry": endpoint.registry,
        "image": endpoint.image,
        "cpu": spec.cpu,
        "memory": spec.memory_gib,
        "min_instances": spec.min_instances,
        "max_instances": spec.max_instances,
        "concurrency": spec.concurrency,
        "readiness_path": spec.readiness_path,
        "storage_settings": endpoint.storage_settings,
        "health_job": {**job.export(control_root), **(component.exports if component is not None else {})},
        "public_name": endpoint.public_name,
        "dns_records": endpoint.dns_records,
        "health_check_ip": endpoint.health_check_ip,
        "api_token_secrets": endpoint.api_token_secrets,
    }
    for key in ENDPOINT_EXPORTS:
        pulumi.export(key, values[key])


def _dns() -> None:
    from infra.components.weighted_dns import WeightedDns

    load.check_provider_credentials()
    spec = load.load_dns_spec()
    dns = WeightedDns("weighted", spec)
    values = {
        "record_name": dns.record_name,
        "zone_id": dns.zone_id,
        "ttl": spec.ttl,
        "health_check_ids": dns.health_check_ids,
    }
    for key in DNS_EXPORTS:
        pulumi.export(key, values[key])


_kind = load.stack_kind()
if _kind == "dns":
    _dns()
else:
    _cloud(_kind)
