"""Azure Key Vault: one secret's value (``azure-kv://VAULT/SECRET[/VERSION]``).

Credentials come from ``DefaultAzureCredential`` (the job's managed identity, ``AZURE_CLIENT_ID``
naming it; ``az login`` on a laptop), which needs the Key Vault Secrets User role on the secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.secrets import SecretRef

__all__ = ["read"]


def read(ref: SecretRef) -> str:
    """The secret's value; ConfigError if the client libraries are not installed; their own
    errors (not found, forbidden, no credential) propagate."""
    from orchestrator.control.secrets import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

    try:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient
    except ImportError:
        raise ConfigError(
            "azure-identity and azure-keyvault-secrets are not installed: "
            "pip install 'ml-orchestrator[secrets]'"
        ) from None
    vault_url, name, version = ref.parts
    timeouts = {"connection_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S, "retry_total": 1}
    with (
        DefaultAzureCredential(**timeouts) as credential,
        SecretClient(str(vault_url), credential, **timeouts) as client,
    ):
        value = client.get_secret(str(name), version).value
    if not value:
        raise ConfigError("the secret has no value")
    return str(value)
