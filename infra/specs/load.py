"""The running stack's configuration, read here and nowhere else.

Each ``load_*`` reads its configuration object once (``pulumi.Config().get_object(...)``) and
hands it to the matching pure parser, which validates it completely before any resource exists.
The stack's kind comes from ``ml-orchestrator:cloud``, defaulting to the stack's name.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, cast

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

from infra.specs.auth import TOKEN_SLOTS, ApiTokens, parse_api_tokens
from infra.specs.aws_options import AwsOptions, parse_aws_options
from infra.specs.azure_options import AzureOptions, parse_azure_options
from infra.specs.endpoint import REGION_KEYS, EndpointSpec, parse_endpoint_spec
from infra.specs.fields import ConfigError
from infra.specs.gcp_options import GcpOptions, parse_gcp_options
from infra.specs.health_job import HealthJobSpec, parse_health_job_spec
from infra.specs.weighted_dns import DnsSpec, parse_dns_spec
from orchestrator.core.contract import CLOUDS, CloudName

__all__ = [
    "PROVIDER_CREDENTIAL_KEYS",
    "StackKind",
    "check_provider_credentials",
    "load_api_tokens",
    "load_aws_options",
    "load_azure_options",
    "load_dns_spec",
    "load_endpoint_spec",
    "load_gcp_options",
    "load_health_job_spec",
    "stack_kind",
]

StackKind: TypeAlias = Literal["aws", "gcp", "azure", "dns"]

# The providers' own credential keys: Pulumi would read them from plain text if set without
# --secret (each provider's configuration reference).
PROVIDER_CREDENTIAL_KEYS: Final = (
    "aws:accessKey",
    "aws:secretKey",
    "aws:token",
    "gcp:credentials",
    "gcp:accessToken",
    "azure-native:clientSecret",
    "azure-native:clientCertificatePassword",
    "azure-native:oidcToken",
)


def stack_kind() -> StackKind:
    """``ml-orchestrator:cloud``, else the stack's name: aws, gcp, azure or dns; else ConfigError."""
    configured = pulumi.Config().get("cloud")
    kind = configured or pulumi.get_stack()
    if kind not in (*CLOUDS, "dns"):
        raise ConfigError(
            f"{pulumi.get_project()}:cloud",
            f"{kind!r} is not one of aws, gcp, azure, dns"
            + ("" if configured else " (it defaults to the stack's name; set it for other stack names)"),
        )
    return cast(StackKind, kind)


def _region(cloud: CloudName) -> str | None:
    namespace, _, key = REGION_KEYS[cloud].partition(":")
    return pulumi.Config(namespace).get(key)


def load_endpoint_spec(cloud: CloudName) -> EndpointSpec:
    """``ml-orchestrator:endpoint`` and the provider's region key."""
    return parse_endpoint_spec(
        cloud, pulumi.Config().get_object("endpoint"), _region(cloud), namespace=pulumi.get_project()
    )


def load_health_job_spec(cloud: CloudName) -> HealthJobSpec:
    """``ml-orchestrator:health_job`` of the ``cloud`` stack."""
    return parse_health_job_spec(
        cloud, pulumi.Config().get_object("health_job"), namespace=pulumi.get_project()
    )


def load_aws_options(spec: EndpointSpec) -> AwsOptions:
    """``ml-orchestrator:aws``, checked against the endpoint's public name (which needs a zone)."""
    return parse_aws_options(
        pulumi.Config().get_object("aws"),
        spec.region,
        namespace=pulumi.get_project(),
        public_name=spec.public_name,
    )


def load_gcp_options(spec: EndpointSpec) -> GcpOptions:  # spec: one signature for every cloud
    """``ml-orchestrator:gcp`` and ``gcp:project``."""
    return parse_gcp_options(
        pulumi.Config().get_object("gcp"), pulumi.Config("gcp").get("project"), namespace=pulumi.get_project()
    )


def load_azure_options(spec: EndpointSpec) -> AzureOptions:  # spec: one signature for every cloud
    """``ml-orchestrator:azure``."""
    return parse_azure_options(pulumi.Config().get_object("azure"), namespace=pulumi.get_project())


def load_dns_spec() -> DnsSpec:
    """``ml-orchestrator:dns``; the cloud stacks default to this organization and project's."""
    return parse_dns_spec(
        pulumi.Config().get_object("dns"),
        namespace=pulumi.get_project(),
        organization=pulumi.get_organization(),
        project=pulumi.get_project(),
    )


def load_api_tokens() -> ApiTokens:
    """``ml-orchestrator:api_token`` and ``api_token_previous``; each must be a Pulumi secret."""
    project = pulumi.get_project()
    names = [name for _, name, _ in TOKEN_SLOTS]
    values = {name: get_config(f"{project}:{name}") for name in names}
    secret = {name: is_config_secret(f"{project}:{name}") for name in names}
    return parse_api_tokens(values, secret, namespace=project)


def check_provider_credentials() -> None:
    """ConfigError naming the first provider credential key set in plain text (not --secret)."""
    for key in PROVIDER_CREDENTIAL_KEYS:
        if get_config(key) and not is_config_secret(key):
            raise ConfigError(
                key,
                f"is stored in plain text: set it with `pulumi config set --secret {key}`, or use the "
                "provider's credential chain (environment, CLI login, workload identity)",
            )
