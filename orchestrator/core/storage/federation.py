"""Short-lived AWS credentials for a job running in GCP or Azure: web identity federation.

A health job in GCP or Azure that changes Route 53 (or reads the AWS vantage point's objects)
assumes an AWS role with an identity token from its own platform, never with a stored key:

- ``$ORCHESTRATOR_AWS_WEB_IDENTITY=gcp``: a Google-signed ID token for the audience
  ``sts.amazonaws.com`` from the metadata server (the Cloud Run job's service account); the role
  trusts ``accounts.google.com`` with conditions on the service account's unique id;
- ``$ORCHESTRATOR_AWS_WEB_IDENTITY=azure``: an Entra access token of the job's user-assigned
  managed identity (``$AZURE_CLIENT_ID``) for ``$ORCHESTRATOR_AWS_AUDIENCE`` (an app registration's
  Application ID URI, default ``api://ml-orchestrator-aws``); the role trusts an IAM OIDC
  provider for ``sts.windows.net/<tenant>/`` with conditions on the audience and the identity.

``$ORCHESTRATOR_AWS_ROLE_ARN`` names the role. Credentials are
``sts:AssumeRoleWithWebIdentity`` sessions of :data:`SESSION_S`, refreshed by botocore before
they expire (a fresh token is fetched for each refresh). The stacks set the three variables
(docs/deploying.md, "Jobs in several clouds").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from orchestrator.core.contract import ENV_AWS_AUDIENCE, ENV_AWS_ROLE_ARN, ENV_AWS_WEB_IDENTITY
from orchestrator.core.errors import ConfigError

__all__ = ["DEFAULT_AZURE_AUDIENCE", "GCP_AUDIENCE", "SESSION_S", "web_identity_session"]

# The audience AWS expects in a Google ID token (the role's accounts.google.com:oaud condition).
GCP_AUDIENCE = "sts.amazonaws.com"
# The Application ID URI of the Entra app registration the managed identity gets tokens for.
DEFAULT_AZURE_AUDIENCE = "api://ml-orchestrator-aws"
# 15 minutes, the shortest session STS grants: a job round lasts seconds, and botocore refreshes
# before expiry anyway.
SESSION_S = 900

TokenLoader = Callable[[], str]


def web_identity_session(
    environ: os._Environ[str] | dict[str, str] | None = None, *, token_loader: TokenLoader | None = None
) -> Any:
    """A boto3 Session whose credentials come from ``sts:AssumeRoleWithWebIdentity`` when
    ``$ORCHESTRATOR_AWS_WEB_IDENTITY`` is set (None otherwise: the standard AWS chain applies).
    ``token_loader`` replaces the platform's token source (tests). ConfigError naming the variable
    for an unknown source or a missing role."""
    env = os.environ if environ is None else environ
    source = env.get(ENV_AWS_WEB_IDENTITY, "").strip()
    if not source:
        return None
    role = env.get(ENV_AWS_ROLE_ARN, "").strip()
    if not role.startswith("arn:"):
        raise ConfigError(
            f"${ENV_AWS_ROLE_ARN}: set it to the role to assume (${ENV_AWS_WEB_IDENTITY}={source})"
        )
    if token_loader is None:
        if source == "gcp":
            token_loader = _gcp_token
        elif source == "azure":
            audience = env.get(ENV_AWS_AUDIENCE) or DEFAULT_AZURE_AUDIENCE
            client_id = env.get("AZURE_CLIENT_ID") or None
            token_loader = _azure_token(audience, client_id)
        else:
            raise ConfigError(f"${ENV_AWS_WEB_IDENTITY}: {source!r} is not gcp or azure")
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleWithWebIdentityCredentialFetcher,
        DeferredRefreshableCredentials,
    )

    core = botocore.session.get_session()
    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=core.create_client,
        web_identity_token_loader=token_loader,
        role_arn=role,
        extra_args={"RoleSessionName": f"orchestrator-{source}", "DurationSeconds": SESSION_S},
    )
    # botocore has no public setter for refreshable credentials; this is how its own providers
    # install them (the alternative, a token file re-written before every refresh, needs a sidecar).
    core._credentials = DeferredRefreshableCredentials(
        method="assume-role-with-web-identity", refresh_using=fetcher.fetch_credentials
    )
    return boto3.session.Session(botocore_session=core)


def _gcp_token() -> str:
    """A Google-signed ID token for sts.amazonaws.com, from the metadata server."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
        google.auth.transport.requests.Request(), GCP_AUDIENCE
    )
    return token


def _azure_token(audience: str, client_id: str | None) -> TokenLoader:
    def load() -> str:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id)
        try:
            return str(credential.get_token(f"{audience}/.default").token)
        finally:
            credential.close()

    return load
