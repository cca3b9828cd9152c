"""The API tokens on GCP: one Secret Manager secret per configured token, referenced by the Cloud
Run service and job (``value_source.secret_key_ref``), never given as a value.

The reference pins the secret's version number, so a new token is a new revision (Cloud Run
reads a secret environment variable when an instance starts). Each identity that runs a
container holding the reference gets ``roles/secretmanager.secretAccessor`` on these secrets and
nothing else (Cloud Run fetches them with the revision's service account).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.specs.auth import ApiTokens

__all__ = ["SECRET_MANAGER_API", "TokenReference", "api_token_secrets", "grant_access"]

SECRET_MANAGER_API = "secretmanager.googleapis.com"  # noqa: S105  # an API name, not a password


@dataclass(frozen=True)
class TokenReference:
    """One token as a container sees it."""

    slot: str
    env: str
    secret: gcp.secretmanager.Secret
    version: pulumi.Output[str]  # the version number

    def env_var(self) -> dict[str, object]:
        """The container's ``envs`` entry (service and job alike)."""
        return {
            "name": self.env,
            "value_source": {"secret_key_ref": {"secret": self.secret.secret_id, "version": self.version}},
        }


def api_token_secrets(
    name: str, parent: pulumi.Resource, tokens: ApiTokens, project: str, depends_on: Sequence[pulumi.Resource]
) -> list[TokenReference]:
    """A secret (automatic replication) and a version per configured token; the value passes
    only as a Pulumi secret into the version (encrypted in state)."""
    references = []
    for token in tokens.slots:
        secret = gcp.secretmanager.Secret(
            f"{name}-api-token-{token.slot}",
            project=project,
            secret_id=f"{name}-api-token-{token.slot}",
            replication={"auto": {}},
            opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
        )
        version = gcp.secretmanager.SecretVersion(
            f"{name}-api-token-{token.slot}",
            secret=secret.id,
            secret_data=pulumi.Output.secret(token.value),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        references.append(TokenReference(token.slot, token.env, secret, version.version))
    return references


def grant_access(
    name: str, parent: pulumi.Resource, references: list[TokenReference], member: pulumi.Input[str]
) -> list[pulumi.Resource]:
    """``member`` may read each token secret (secretAccessor on the secret, nothing wider)."""
    return [
        gcp.secretmanager.SecretIamMember(
            f"{name}-reads-api-token-{reference.slot}",
            project=reference.secret.project,
            secret_id=reference.secret.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=member,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for reference in references
    ]
