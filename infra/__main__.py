"""The Pulumi program: composes one stack (aws, gcp, azure or dns) from its configuration.

A cloud stack is the endpoint and, when ``ml-orchestrator:health_job.enabled``, the scheduled
health job beside it (same image, same bucket). Every cloud stack exports the same keys
(:data:`ENDPOINT_EXPORTS`), which ``orchestrator config from-stacks`` turns into
``orchestrator.yaml``; the dns stack exports the record it manages and its health checks
(:data:`DNS_EXPORTS`).
"""

import sys
from pathlib import Path

# Pulumi runs this directory with runpy.run_path("infra/"), which puts infra/ itself first on
# sys.path: `import azure` would then find infra/azure.py instead of the namespace package, and
# the package `infra` would not be importable. Put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import pulumi  # noqa: E402

from infra.components.endpoint import EndpointComponent  # noqa: E402
from infra.specs import load  # noqa: E402
from orchestrator.core.contract import CloudName  # noqa: E402

# What every cloud stack exports, in this order; the values' meaning:
#   cloud, region          the stack's cloud key and region
#   endpoint_url           the endpoint's base URL (health checks and DNS use its host)
#   model_uri              the bucket URI of models/<name>/LATEST the endpoint follows
#   registry, image        where `orchestrator image push` copies the image; what runs (registry@digest)
#   cpu, memory            vCPU and GiB per instance
#   min_instances, max_instances, concurrency
#   readiness_path         what the dns stack's health checks ask
#   storage_settings       orchestrator.yaml's clouds.<cloud>.storage_settings for model_uri's bucket
#   health_job             {enabled, schedule, command, config_uri, state_uri}: what the job runs and
#                          when, and where its orchestrator.yaml and state live in its own control
#                          bucket (all null while disabled)
ENDPOINT_EXPORTS = (
    "cloud",
    "region",
    "endpoint_url",
    "model_uri",
    "registry",
    "image",
    "cpu",
    "memory",
    "min_instances",
    "max_instances",
    "concurrency",
    "readiness_path",
    "storage_settings",
    "health_job",
)
DNS_EXPORTS = ("record_name", "zone_id", "ttl", "health_check_ids")
# The component's name prefixes every child's; short, since ALB and target group names
# (32 characters) carry it plus Pulumi's 8-character suffix.
COMPONENT_NAME = "ml-endpoint"
HEALTH_JOB_NAME = f"{COMPONENT_NAME}-health"


def _endpoint(cloud: CloudName) -> None:
    # All configuration is read and validated before the first resource exists.
    endpoint = load.load_endpoint_spec(cloud)
    job = load.load_health_job_spec(cloud)
    # Each cloud's SDK is imported only by the stack that deploys there.
    component: EndpointComponent
    control_root: pulumi.Output[str] | None = None  # the job's control bucket, when it exists
    if cloud == "aws":
        from infra.components.aws_endpoint import AwsEndpoint, AwsHealthJob

        aws_endpoint = AwsEndpoint(COMPONENT_NAME, endpoint, load.load_aws_options(endpoint))
        if job.enabled:
            control_root = AwsHealthJob(HEALTH_JOB_NAME, endpoint, job, aws_endpoint).control_root
        component = aws_endpoint
    elif cloud == "gcp":
        from infra.components.gcp_endpoint import GcpEndpoint, GcpHealthJob

        gcp_options = load.load_gcp_options(endpoint)
        gcp_endpoint = GcpEndpoint(COMPONENT_NAME, endpoint, gcp_options)
        if job.enabled:
            control_root = GcpHealthJob(
                HEALTH_JOB_NAME, endpoint, job, gcp_options, gcp_endpoint
            ).control_root
        component = gcp_endpoint
    else:
        from infra.components.azure_endpoint import AzureEndpoint, AzureHealthJob

        azure_options = load.load_azure_options(endpoint)
        azure_endpoint = AzureEndpoint(COMPONENT_NAME, endpoint, azure_options)
        if job.enabled:
            control_root = AzureHealthJob(
                HEALTH_JOB_NAME, endpoint, job, azure_options, azure_endpoint
            ).control_root
        component = azure_endpoint
    values = {
        "cloud": cloud,
        "region": endpoint.region,
        "endpoint_url": component.endpoint_url,
        "model_uri": component.model_uri,
        "registry": component.registry,
        "image": component.image,
        "cpu": endpoint.cpu,
        "memory": endpoint.memory_gib,
        "min_instances": endpoint.min_instances,
        "max_instances": endpoint.max_instances,
        "concurrency": endpoint.concurrency,
        "readiness_path": endpoint.readiness_path,
        "storage_settings": component.storage_settings,
        "health_job": job.export(control_root),
    }
    for key in ENDPOINT_EXPORTS:
        pulumi.export(key, values[key])


def _dns() -> None:
    from infra.components.weighted_dns import WeightedDns

    dns_spec = load.load_dns_spec()
    dns = WeightedDns("weighted", dns_spec)
    values = {
        "record_name": dns.record_name,
        "zone_id": dns.zone_id,
        "ttl": dns_spec.ttl,
        "health_check_ids": dns.health_check_ids,
    }
    for key in DNS_EXPORTS:
        pulumi.export(key, values[key])


_kind = load.stack_kind()
if _kind == "dns":
    _dns()
else:
    _endpoint(_kind)
