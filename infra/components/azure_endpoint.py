"""The endpoint on Azure: ACR, a private Blob container for models, a Container App.

One :class:`AzureEndpoint` component owns every resource of the Azure endpoint:

- a resource group holding everything below;
- a storage account (no public blob access, **no shared key access** (every reader and writer
  uses an Entra identity), HTTPS only, TLS 1.2 minimum, Microsoft-managed encryption, blob
  versioning and soft delete) and the private container models are published to; its blob
  reads, writes and deletes (with the caller's identity) go to the Log Analytics workspace
  (diagnostic setting, table ``StorageBlobLogs``);
- a container registry with the admin user disabled (pulls use the identity, never a password);
- a user-assigned identity with exactly two role assignments: Storage Blob Data Reader scoped to
  the models container and AcrPull scoped to the registry;
- a Log Analytics workspace and a Container Apps environment (Consumption workload profile);
- a Key Vault with one secret per configured API token, referenced by the app
  (:mod:`infra.components.azure_secrets`), the identity reading them;
- with ``azure.deployers``: Storage Blob Data Contributor on the models container and AcrPush on
  the registry for each (``orchestrator sync`` then publishes with its Entra identity:
  ``az login`` or a service principal, ``account_url`` storage settings);
- once ``endpoint.image`` is set, the Container App (named ``azure.app_name``): external ingress
  on the endpoint's port (HTTPS, no plain HTTP), with a public name its custom domain
  (:mod:`infra.components.azure_domain`), startup, readiness and liveness probes, min/max
  replicas, an HTTP concurrency scale rule, the image pulled with the identity. Without an
  image, none (a warning says so).

Container Apps offers no read-only root filesystem setting (no container security context); the
container's filesystem is writable and ephemeral, ``/tmp`` and the model cache included.

Environment: :meth:`EndpointSpec.container_env` plus the two variables a managed identity
cannot do without (:data:`infra.components.azure_shared.AZURE_EXTRA_ENV`): ``AZURE_STORAGE_ACCOUNT``
(the account ``az://container/...`` lives in) and ``AZURE_CLIENT_ID`` (which of the app's
identities DefaultAzureCredential should use), and with tokens ``API_TOKEN_VERSIONS``. None is a
secret; the tokens themselves are Key Vault references (``secret_ref``).

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

from infra.components.azure_domain import custom_domain, managed_certificate, verification_records
from infra.components.azure_secrets import (
    TOKEN_VERSIONS_ENV,
    TokenReference,
    api_token_secrets,
    grant_access,
    token_versions,
)
from infra.components.azure_shared import (
    ACR_PULL,
    ACR_PUSH,
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    identity_env,
    role_definition,
)
from infra.components.azure_storage import model_storage
from infra.components.endpoint import DnsRecord, EndpointComponent
from infra.specs.auth import ApiTokens
from infra.specs.azure_options import AzureOptions
from infra.specs.endpoint import EndpointSpec

__all__ = ["AzureEndpoint"]

CONTAINER_NAME = "endpoint"


class AzureEndpoint(EndpointComponent):
    """The model endpoint on Azure Container Apps; see the module docstring for what it creates."""

    # What the health job reuses: the group, environment, registry, models container, account,
    # workspace and token references.
    group: resources.ResourceGroup
    environment: app.ManagedEnvironment
    container_registry: containerregistry.Registry
    container: storage.BlobContainer
    account: storage.StorageAccount
    workspace: operationalinsights.Workspace
    subscription_id: pulumi.Output[str]
    tokens: list[TokenReference]

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        options: AzureOptions,
        tokens: ApiTokens,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:AzureEndpoint", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        # Storage accounts, registries and vaults allow only lowercase letters and digits (and
        # global names), and the provider appends 8 random characters: 10 + 6 + 8 stays within an
        # account's 24.
        alnum = re.sub(r"[^a-z0-9]", "", name.lower())[:10]

        group = resources.ResourceGroup(f"{name}-rg", location=spec.region, opts=child)
        client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        subscription_id = client.subscription_id

        workspace = operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=group.name,
            location=spec.region,
            sku={"name": "PerGB2018"},
            retention_in_days=options.log_retention_days,
            opts=child,
        )
        account, container = model_storage(alnum, name, self, spec, options, group, workspace)

        # Registry: no admin user; the app pulls with its identity.
        registry = containerregistry.Registry(
            f"{alnum}images",
            resource_group_name=group.name,
            location=spec.region,
            sku={"name": "Basic"},
            admin_user_enabled=False,
            opts=child,
        )

        # Identity: reads the models container, pulls from the registry, reads the tokens.
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=group.name, location=spec.region, opts=child
        )
        grants: list[pulumi.Resource] = [
            self._assign(
                f"{name}-reads-models",
                identity.principal_id,
                subscription_id,
                STORAGE_BLOB_DATA_READER,
                container.id,
            ),
            self._assign(
                f"{name}-pulls-images", identity.principal_id, subscription_id, ACR_PULL, registry.id
            ),
        ]
        self.tokens = api_token_secrets(
            name,
            self,
            tokens,
            vault_resource=f"{alnum}kv",
            resource_group_name=group.name,
            location=spec.region,
            tenant_id=client.tenant_id,
        )
        grants += grant_access(name, self, self.tokens, identity.principal_id, subscription_id)
        for index, principal in enumerate(options.deployers):
            # `orchestrator sync` (data plane, the account takes no shared key) and image push.
            self._assign(
                f"{name}-deployer-{index}-publishes",
                principal,
                subscription_id,
                STORAGE_BLOB_DATA_CONTRIBUTOR,
                container.id,
                principal_type=None,
            )
            self._assign(
                f"{name}-deployer-{index}-pushes",
                principal,
                subscription_id,
                ACR_PUSH,
                registry.id,
                principal_type=None,
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
        self.workspace = workspace
        self.registry = pulumi.Output.concat(registry.login_server, "/", spec.image_name)
        self.set_model_bucket(spec, container.name)
        account_url = account.primary_endpoints.apply(lambda endpoints: endpoints.blob.rstrip("/"))
        self.storage_settings = {"account_url": account_url}
        self.api_token_secrets = {reference.slot: reference.url for reference in self.tokens}
        # The app's own host name, known before the app: the weighted record's target.
        self.endpoint_url = pulumi.Output.concat(
            "https://", options.app_name, ".", environment.default_domain
        )
        records: list[DnsRecord] = []
        if spec.public_name is None:
            pulumi.log.warn(
                "azure: no public name (ml-orchestrator:endpoint.public_name): the endpoint is served on "
                "its azurecontainerapps.io name only; set it to answer the public name over TLS",
                resource=self,
            )
        else:
            records += verification_records(spec.public_name, self)

        if spec.digest is None:
            self.image = None
            self.warn_no_image()
        else:
            self.image = pulumi.Output.concat(self.registry, "@", spec.digest)
            container_app = self._app(spec, options, self.image, identity, grants)
            if spec.public_name is not None:
                _, validation = managed_certificate(
                    name,
                    self,
                    public_name=spec.public_name,
                    resource_group_name=group.name,
                    environment_name=environment.name,
                    location=spec.region,
                    container_app=container_app,
                )
                records.append(validation)
                if not options.certificate_bound:
                    pulumi.log.warn(
                        f"azure: {spec.public_name} is on the app but not bound to its certificate: run "
                        "`pulumi up -s dns` (it writes the certificate's _dnsauth record), wait for the "
                        "certificate, then set azure.certificate_bound: true and `pulumi up` again",
                        resource=self,
                    )
        self.set_public_entry(
            spec,
            dns_records=records,
            health_check_ip=None if spec.public_name is None else environment.static_ip,
        )

        self.register_endpoint_outputs()

    def _assign(
        self,
        name: str,
        principal_id: pulumi.Input[str],
        subscription_id: pulumi.Input[str],
        role_id: str,
        scope: pulumi.Input[str],
        *,
        principal_type: str | None = "ServicePrincipal",
    ) -> authorization.RoleAssignment:
        """A role assignment scoped to one resource (``principal_type`` None: Azure looks it up)."""
        return authorization.RoleAssignment(
            name,
            principal_id=principal_id,
            role_definition_id=role_definition(subscription_id, role_id),
            scope=scope,
            **({"principal_type": principal_type} if principal_type else {}),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _app(
        self,
        spec: EndpointSpec,
        options: AzureOptions,
        image: pulumi.Output[str],
        identity: managedidentity.UserAssignedIdentity,
        grants: list[pulumi.Resource],
    ) -> app.ContainerApp:
        """The Container App (see the module docstring)."""
        env: dict[str, pulumi.Input[str]] = {
            **spec.container_env(self.model_uri),
            **identity_env(self.account.name, identity.client_id),
        }
        versions = token_versions(self.tokens)
        if versions is not None:
            env[TOKEN_VERSIONS_ENV] = versions
        ingress: app.IngressArgsDict = {
            "external": True,
            "target_port": spec.port,
            "transport": "auto",
            "allow_insecure": False,
        }
        if spec.public_name is not None:
            ingress["custom_domains"] = [
                custom_domain(
                    spec.public_name, bound=options.certificate_bound, environment_id=self.environment.id
                )
            ]
        configuration: app.ConfigurationArgsDict = {
            "active_revisions_mode": "Single",
            "ingress": ingress,
            "registries": [{"server": self.container_registry.login_server, "identity": identity.id}],
        }
        if self.tokens:
            configuration["secrets"] = [reference.app_secret(identity.id) for reference in self.tokens]
        startup, readiness, liveness = spec.startup_probe, spec.readiness_probe, spec.liveness_probe
        plain: list[app.EnvironmentVarArgsDict] = [
            {"name": key, "value": value} for key, value in sorted(env.items())
        ]
        probes: list[app.ContainerAppProbeArgsDict] = [
            {
                "type": kind,
                "http_get": {"path": probe.path, "port": spec.port, "scheme": "HTTP"},
                "period_seconds": probe.period_s,
                "timeout_seconds": probe.timeout_s,
                "failure_threshold": probe.failure_threshold,
                "success_threshold": probe.success_threshold,
            }
            for kind, probe in (("Startup", startup), ("Readiness", readiness), ("Liveness", liveness))
        ]
        template: app.TemplateArgsDict = {
            "containers": [
                {
                    "name": CONTAINER_NAME,
                    "image": image,
                    "env": [*plain, *(reference.env_var() for reference in self.tokens)],
                    "resources": {"cpu": spec.cpu, "memory": f"{spec.memory_gib:g}Gi"},
                    "probes": probes,
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
        }
        return app.ContainerApp(
            f"{self._name}-app",
            container_app_name=options.app_name,
            resource_group_name=self.group.name,
            location=spec.region,
            managed_environment_id=self.environment.id,
            workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration=configuration,
            template=template,
            # The first revision pulls the image, reads the model and the tokens with these grants.
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
