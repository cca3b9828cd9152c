"""Identity federation for the GCP and Azure health jobs (``ml-orchestrator:health_job.federation``
in the AWS stack, ``health_job.aws_role_arn`` in the GCP and Azure stacks).

A job outside AWS that moves Route 53 weights, or reads the AWS vantage point's objects, assumes an
AWS role with its own platform's identity token: no AWS key is stored anywhere. The AWS stack
creates one role per trusted job:

- GCP: Google is a web identity provider AWS trusts natively (``accounts.google.com``, no IAM
  OIDC provider); the trust pins the job's service account by its unique id (``aud`` and ``sub``
  of the ID token) and the audience it asked for (``oaud`` = ``sts.amazonaws.com``);
- Azure: an IAM OIDC provider for the tenant's Entra issuer (``https://sts.windows.net/<tenant>/``)
  and a trust pinning the audience (an app registration's Application ID URI, created once in
  Entra) and the job's managed identity (``sub`` = its principal id).

The GCP stack exports its job's service account unique id and the Azure stack its job identity's
principal id (``health_job.identity``); the AWS stack exports the roles' ARNs
(``health_job.federated_roles``), which the other stacks take as ``health_job.aws_role_arn``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from infra.specs.fields import ConfigError, ConfigObject

__all__ = ["DEFAULT_AZURE_AUDIENCE", "FederationSpec", "check_role_arn", "parse_federation"]

# The Application ID URI the Azure job's managed identity requests tokens for (the Entra app
# registration exposing it is created once, by hand or with pulumi-azuread: docs/deploying.md).
DEFAULT_AZURE_AUDIENCE: Final = "api://ml-orchestrator-aws"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_GCP_UNIQUE_ID = re.compile(r"\d{10,30}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_AUDIENCE = re.compile(r"(api://|https://)[A-Za-z0-9._/-]{1,200}")


@dataclass(frozen=True)
class FederationSpec:
    """Who may assume the AWS stack's federated roles: the GCP job's service account (its numeric
    unique id) and the Azure job's managed identity (tenant, principal id, audience)."""

    gcp_service_account_id: str | None = None
    azure_tenant_id: str | None = None
    azure_principal_id: str | None = None
    azure_audience: str = DEFAULT_AZURE_AUDIENCE


def parse_federation(key: str, raw: Any) -> FederationSpec | None:
    """``health_job.federation`` of the AWS stack; None when absent or empty."""
    if not raw:
        return None
    obj = ConfigObject(key, raw)
    gcp_raw = obj.mapping("gcp")
    azure_raw = obj.mapping("azure")
    obj.done()
    gcp_id = None
    if gcp_raw:
        gcp = ConfigObject(obj.sub("gcp"), gcp_raw)
        gcp_id = gcp.string("service_account_id", "")
        gcp.done()
        if not _GCP_UNIQUE_ID.fullmatch(gcp_id):
            raise ConfigError(
                gcp.sub("service_account_id"),
                f"{gcp_id!r} is not a service account's unique id (digits: the GCP stack's "
                "health_job.identity output)",
            )
    tenant = principal = None
    audience = DEFAULT_AZURE_AUDIENCE
    if azure_raw:
        azure = ConfigObject(obj.sub("azure"), azure_raw)
        tenant = azure.string("tenant_id", "")
        principal = azure.string("principal_id", "")
        audience = azure.string("audience", DEFAULT_AZURE_AUDIENCE)
        azure.done()
        for name, value in (("tenant_id", tenant), ("principal_id", principal)):
            if not _UUID.fullmatch(value):
                raise ConfigError(azure.sub(name), f"{value!r} is not a GUID")
        if not _AUDIENCE.fullmatch(audience):
            raise ConfigError(azure.sub("audience"), f"{audience!r} is not an Application ID URI")
    return FederationSpec(gcp_id, tenant, principal, audience)


def check_role_arn(key: str, value: str) -> str:
    """An IAM role ARN (the AWS stack's ``health_job.federated_roles`` output); ConfigError otherwise."""
    if not _ROLE_ARN.fullmatch(value):
        raise ConfigError(key, f"{value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    return value
