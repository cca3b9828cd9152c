"""The Azure endpoint's model storage: an account that takes no shared key, its blob service,
the models container, and the blob access logs.

A function, not a component: resources are children of the ``parent`` given (the endpoint).
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import monitor, operationalinsights, resources, storage

from infra.specs.azure_options import AzureOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["BLOB_LOG_CATEGORIES", "BLOB_RETENTION_DAYS", "model_storage"]

# Soft delete keeps an overwritten or deleted model blob recoverable for a week.
BLOB_RETENTION_DAYS = 7
# Every data-plane access to blobs (Azure Monitor, blob service log categories).
BLOB_LOG_CATEGORIES = ("StorageRead", "StorageWrite", "StorageDelete")


def model_storage(
    alnum: str,
    name: str,
    parent: pulumi.Resource,
    spec: EndpointSpec,
    options: AzureOptions,
    group: resources.ResourceGroup,
    workspace: operationalinsights.Workspace,
) -> tuple[storage.StorageAccount, storage.BlobContainer]:
    """The account (identities only, no shared key), its blob service, the models container,
    and the blob access logs."""
    child = pulumi.ResourceOptions(parent=parent)
    account = storage.StorageAccount(
        f"{alnum}models",
        resource_group_name=group.name,
        location=spec.region,
        kind="StorageV2",
        sku={"name": "Standard_LRS"},
        allow_blob_public_access=False,
        # No account key works: every reader (endpoint, job) and writer (`orchestrator sync`)
        # uses an Entra identity and a data-plane role scoped to its container.
        allow_shared_key_access=False,
        default_to_o_auth_authentication=True,
        enable_https_traffic_only=True,
        minimum_tls_version="TLS1_2",
        allow_cross_tenant_replication=False,
        encryption={
            "key_source": "Microsoft.Storage",
            "services": {"blob": {"enabled": True, "key_type": "Account"}},
        },
        opts=child,
    )
    storage.BlobServiceProperties(
        f"{name}-blob-service",
        resource_group_name=group.name,
        account_name=account.name,
        blob_services_name="default",
        is_versioning_enabled=True,
        delete_retention_policy={"enabled": True, "days": BLOB_RETENTION_DAYS},
        opts=child,
    )
    container = storage.BlobContainer(
        f"{name}-models",
        resource_group_name=group.name,
        account_name=account.name,
        container_name=options.container,
        public_access=storage.PublicAccess.NONE,
        opts=child,
    )
    # Who read, wrote or deleted which blob: the StorageBlobLogs table of the workspace.
    monitor.DiagnosticSetting(
        f"{name}-blob-access-logs",
        name="blob-access-logs",
        resource_uri=account.id.apply(lambda account_id: f"{account_id}/blobServices/default"),
        workspace_id=workspace.id,
        log_analytics_destination_type="Dedicated",
        logs=[{"category": category, "enabled": True} for category in BLOB_LOG_CATEGORIES],
        opts=child,
    )
    return account, container
