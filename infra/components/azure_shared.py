"""What the Azure endpoint and its health job both use: built-in role ids, role definition ids,
and the environment a managed identity needs.

Both identities (the endpoint's and the job's) hold role assignments scoped to single resources,
and both containers get the two variables a managed identity cannot do without
(:data:`AZURE_EXTRA_ENV`): ``AZURE_STORAGE_ACCOUNT`` (the account ``az://container/...`` lives
in) and ``AZURE_CLIENT_ID`` (which of the app's identities DefaultAzureCredential should use).
Neither is a secret.
"""

from __future__ import annotations

from typing import Final

import pulumi

from orchestrator.core.contract import ENV_AZURE_STORAGE_ACCOUNT

__all__ = [
    "ACR_PULL",
    "ACR_PUSH",
    "AZURE_EXTRA_ENV",
    "KEY_VAULT_SECRETS_USER",
    "STORAGE_BLOB_DATA_CONTRIBUTOR",
    "STORAGE_BLOB_DATA_READER",
    "identity_env",
    "role_definition",
]

# Built-in role definition ids (the same in every tenant).
STORAGE_BLOB_DATA_READER: Final = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR: Final = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
ACR_PULL: Final = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH: Final = "8311e382-0749-4cb8-b61a-304f252e45ec"
KEY_VAULT_SECRETS_USER: Final = "4633458b-17de-408a-b874-0445c86b69e6"
# AZURE_CLIENT_ID is read by azure-identity's DefaultAzureCredential, not by this project's code.
AZURE_EXTRA_ENV: Final = (ENV_AZURE_STORAGE_ACCOUNT, "AZURE_CLIENT_ID")


def role_definition(subscription_id: pulumi.Input[str], role_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """The full id of role definition ``role_id`` in the subscription (a built-in or custom role)."""
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role_id
    )


def identity_env(
    account_name: pulumi.Input[str], client_id: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """:data:`AZURE_EXTRA_ENV` for a container that reads ``account_name`` with the user-assigned
    identity whose client id is ``client_id``."""
    return dict(zip(AZURE_EXTRA_ENV, (account_name, client_id), strict=True))
