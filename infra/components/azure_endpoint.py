"""The endpoint on Azure: ACR, a private Blob container for models, a Container App.

One :class:`AzureEndpoint` component owns every resource of the Azure endpoint:

- a resource group holding everything below;
- a storage account (no public blob access, HTTPS only, TLS 1.2 minimum, Microsoft-managed
  encryption, blob versioning and soft delete) and the private container models are published to;
- a container registry with the admin user disabled (pulls use the identity, never a password);
- a user-assigned identity with exactly two role assignments: Storage Blob Data Reader scoped to
  the models container and AcrPull scoped to the registry;
- a Log Analytics workspace and a Container Apps environment (Consumption workload profile);
- the Container App: external ingress on the endpoint's port (HTTPS, no plain HTTP), startup,
  readiness and liveness probes, min/max replicas, an HTTP concurrency scale rule, the image
  pulled with the identity.

Environment: :meth:`EndpointSpec.container_env` plus the two variables a managed identity
cannot do without (:data:`infra.components.azure_shared.AZURE_EXTRA_ENV`): ``AZURE_STORAGE_ACCOUNT``
(the account ``az://container/...`` lives in) and ``AZURE_CLIENT_ID`` (which of the app's
identities DefaultAzureCredential should use). Neither is a secret.

The scheduled health job beside it is :mod:`infra.components.azure_health_job`.
"""

from __future__ import annotations

import re

import pulumi
from pulumi_azure_native import (
    app,
    authorization,
    containerregistry,
    managedidentity,
    operationalinsights,
    resources,
    storage,
)

from infra.components.azure_shared import ACR_PULL, STORAGE_BLOB_DATA_READER, identity_env, role_definition
from infra.components.endpoint import EndpointComponent
from infra.specs.azure_options import AzureOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["AzureEndpoint"]

CONTAINER_NAME = "endpoint"
# Soft delete keeps an overwritten or deleted model blob recoverable for a week.
BLOB_RETENTION_DAYS = 7


class AzureEndpoint(EndpointComponent):
    """The model endpoint on Azure Container Apps; see the module docstring for what it creates."""

    # What the health job reuses: the group, environment, registry, models container and account.
    group: resources.ResourceGroup
    environment: app.ManagedEnvironment
    container_registry: containerregistry.Registry
    container: storage.BlobContainer
    account: storage.StorageAccount
    subscription_id: pulumi.Output[str]

    def __init__(
        self, name: str, spec: EndpointSpec, options: AzureOptions, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-orchestrator:infra:AzureEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Storage accounts and registries allow only lowercase letters and digits, and the
        # provider appends 8 random characters: 10 + 6 + 8 stays within an account's 24.
        alnum = re.sub(r"[^a-z0-9]", "", name.lower())[:10]

        group = resources.ResourceGroup(f"{name}-rg", location=spec.region, opts=child)

        # Model storage: private, HTTPS/TLS 1.2 only, encrypted, versioned.
        account = storage.StorageAccount(
            f"{alnum}models",
            resource_group_name=group.name,
            location=spec.region,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            allow_blob_public_access=False,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_cross_tenant_replication=False,
            # Shared keys stay enabled: `orchestrator sync` publishes with a connection string.
            # The endpoint itself never uses one (it reads with its identity).
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

        # Registry: no admin user; the app pulls with its identity.
        registry = containerregistry.Registry(
            f"{alnum}images",
            resource_group_name=group.name,
            location=spec.region,
            sku={"name": "Basic"},
            admin_user_enabled=False,
            opts=child,
        )

        # Identity: reads the models container and pulls from the registry, nothing else.
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=group.name, location=spec.region, opts=child
        )
        subscription_id = authorization.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).subscription_id
        reads_models = authorization.RoleAssignment(
            f"{name}-reads-models",
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=role_definition(subscription_id, STORAGE_BLOB_DATA_READER),
            scope=container.id,
            opts=child,
        )
        pulls_images = authorization.RoleAssignment(
            f"{name}-pulls-images",
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=role_definition(subscription_id, ACR_PULL),
            scope=registry.id,
            opts=child,
        )

        workspace = operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=group.name,
            location=spec.region,
            sku={"name": "PerGB2018"},
            retention_in_days=options.log_retention_days,
            opts=child,
        )
        workspace_key = operationalinsights.get_shared_keys_output(
            resource_group_name=group.name,
            workspace_name=workspace.name,
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).primary_shared_key
        environment = app.ManagedEnvironment(
            f"{name}-env",
            resource_group_name=group.name,
            location=spec.region,
            app_logs_configuration={
                "destination": "log-analytics",
                "log_analytics_configuration": {
                    "customer_id": workspace.customer_id,
                    "shared_key": pulumi.Output.secret(workspace_key),
                },
            },
            # Workload profiles (v2) with the serverless Consumption profile: up to 4 vCPU / 8 GiB.
            workload_profiles=[{"name": "Consumption", "workload_profile_type": "Consumption"}],
            opts=child,
        )

        self.group, self.environment, self.container_registry = group, environment, registry
        self.container, self.account, self.subscription_id = container, account, subscription_id
        self.registry = pulumi.Output.concat(registry.login_server, "/", spec.image_name)
        self.image = pulumi.Output.concat(self.registry, "@", spec.digest)
        self.set_model_bucket(spec, container.name)
        account_url = account.primary_endpoints.apply(lambda endpoints: endpoints.blob.rstrip("/"))
        self.storage_settings = {"account_url": account_url}

        env = {**spec.container_env(self.model_uri), **identity_env(account.name, identity.client_id)}
        startup, readiness, liveness = spec.startup_probe, spec.readiness_probe, spec.liveness_probe
        container_app = app.ContainerApp(
            f"{name}-app",
            resource_group_name=group.name,
            location=spec.region,
            managed_environment_id=environment.id,
            workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration={
                "active_revisions_mode": "Single",
                "ingress": {
                    "external": True,
                    "target_port": spec.port,
                    "transport": "auto",
                    "allow_insecure": False,
                },
                "registries": [{"server": registry.login_server, "identity": identity.id}],
            },
            template={
                "containers": [
                    {
                        "name": CONTAINER_NAME,
                        "image": self.image,
                        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
                        "resources": {"cpu": spec.cpu, "memory": f"{spec.memory_gib:g}Gi"},
                        "probes": [
                            {
                                "type": kind,
                                "http_get": {"path": probe.path, "port": spec.port, "scheme": "HTTP"},
                                "period_seconds": probe.period_s,
                                "timeout_seconds": probe.timeout_s,
                                "failure_threshold": probe.failure_threshold,
                                "success_threshold": probe.success_threshold,
                            }
                            for kind, probe in (
                                ("Startup", startup),
                                ("Readiness", readiness),
                                ("Liveness", liveness),
                            )
                        ],
                    }
                ],
                "scale": {
                    "min_replicas": spec.min_instances,
                    "max_replicas": spec.max_instances,
                    "rules": [
                        {
                            "name": "http-concurrency",
                            "http": {"metadata": {"concurrentRequests": str(spec.concurrency)}},
                        }
                    ],
                },
            },
            # The first revision pulls the image and reads the model with these grants.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[reads_models, pulls_images]),
        )
        self.endpoint_url = container_app.configuration.apply(
            lambda configuration: f"https://{configuration.ingress.fqdn}"  # type: ignore[union-attr]
        )

        self.register_endpoint_outputs()
