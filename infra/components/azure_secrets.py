"""The API tokens on Azure: a Key Vault (Azure RBAC, purge protection) holding one secret per
configured token, which Container Apps read with a managed identity (a Key Vault reference:
``configuration.secrets[].keyVaultUrl`` + ``identity``), never as a value in the app.

The reference is the secret's *versioned* URL, and the container also gets
``API_TOKEN_VERSIONS`` (the versions, no secret): Container Apps does not start a new revision
when only a secret changes, so a new token changes the template and rolls the replicas.
Each identity that references the tokens gets Key Vault Secrets User on each token secret, not
on the vault.

The versioned URL is read from the secret's ``properties`` output, which Pulumi marks secret
because its input carries the value; the URL itself is not secret and is unwrapped
(``Output.unsecret``) so the app's configuration stays diffable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import app, authorization, keyvault

from infra.components.azure_shared import KEY_VAULT_SECRETS_USER, role_definition
from infra.specs.auth import ApiTokens

__all__ = ["TOKEN_VERSIONS_ENV", "TokenReference", "api_token_secrets", "grant_access", "token_versions"]

# Not a secret: which versions of the token secrets the replicas were started with.
TOKEN_VERSIONS_ENV = "API_TOKEN_VERSIONS"  # noqa: S105  # a variable name, not a password
# Deleted vaults and secrets stay recoverable 90 days (Key Vault's default and maximum).
SOFT_DELETE_DAYS = 90


@dataclass(frozen=True)
class TokenReference:
    """One token as a Container App (or job) sees it."""

    slot: str
    env: str
    secret_id: pulumi.Output[str]  # the secret's resource id (the role assignment scope)
    url: pulumi.Output[str]  # https://<vault>.vault.azure.net/secrets/<name>/<version>

    @property
    def secret_name(self) -> str:
        """The app's name for the reference (``configuration.secrets[].name``)."""
        return f"api-token-{self.slot}"

    def app_secret(self, identity_id: pulumi.Input[str]) -> app.SecretArgsDict:
        """The app's (or job's) ``configuration.secrets`` entry: a Key Vault reference."""
        return {"name": self.secret_name, "key_vault_url": self.url, "identity": identity_id}

    def env_var(self) -> app.EnvironmentVarArgsDict:
        """The container's ``env`` entry: the variable, from the reference."""
        return {"name": self.env, "secret_ref": self.secret_name}


def api_token_secrets(
    name: str,
    parent: pulumi.Resource,
    tokens: ApiTokens,
    *,
    vault_resource: str,
    resource_group_name: pulumi.Input[str],
    location: str,
    tenant_id: pulumi.Input[str],
) -> list[TokenReference]:
    """The vault (only when there are tokens; ``vault_resource`` is its resource name, which the
    provider suffixes: vault names are global and 3 to 24 characters) and a secret per token."""
    if not tokens.enabled:
        return []
    child = pulumi.ResourceOptions(parent=parent)
    properties: keyvault.VaultPropertiesArgsDict = {
        "tenant_id": tenant_id,
        "sku": {"family": keyvault.SkuFamily.A, "name": keyvault.SkuName.STANDARD},
        # Role assignments per secret, not access policies per vault.
        "enable_rbac_authorization": True,
        "enable_soft_delete": True,
        "soft_delete_retention_in_days": SOFT_DELETE_DAYS,
        "enable_purge_protection": True,
    }
    vault = keyvault.Vault(
        vault_resource,
        resource_group_name=resource_group_name,
        location=location,
        properties=properties,
        opts=child,
    )
    references = []
    for token in tokens.slots:
        secret_name = f"api-token-{token.slot}"
        secret = keyvault.Secret(
            f"{name}-api-token-{token.slot}",
            resource_group_name=resource_group_name,
            vault_name=vault.name,
            secret_name=secret_name,
            properties={"value": pulumi.Output.secret(token.value)},
            opts=child,
        )
        url = pulumi.Output.unsecret(
            secret.properties.apply(lambda properties: properties.secret_uri_with_version or "")
        )
        references.append(TokenReference(token.slot, token.env, secret.id, url))
    return references


def grant_access(
    name: str,
    parent: pulumi.Resource,
    references: list[TokenReference],
    principal_id: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
) -> list[pulumi.Resource]:
    """Key Vault Secrets User on each token secret for ``principal_id`` (a managed identity)."""
    return [
        authorization.RoleAssignment(
            f"{name}-reads-api-token-{reference.slot}",
            principal_id=principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=role_definition(subscription_id, KEY_VAULT_SECRETS_USER),
            scope=reference.secret_id,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for reference in references
    ]


_VERSION = re.compile(r"/secrets/[^/]+/(?P<version>[^/]+)$")


def token_versions(references: list[TokenReference]) -> pulumi.Output[str] | None:
    """``API_TOKEN_VERSIONS``: ``current=<version>,previous=<version>``; None without tokens."""
    if not references:
        return None

    def render(urls: list[str]) -> str:
        versions = []
        for reference, url in zip(references, urls, strict=True):
            match = _VERSION.search(url)
            versions.append(f"{reference.slot}={match['version'] if match else ''}")
        return ",".join(versions)

    return pulumi.Output.all(*(reference.url for reference in references)).apply(render)
