"""The endpoint on Azure: ACR, a private Blob container for models, a Container App.

One :class:`AzureEndpoint` component owns every resource of the Azure stack:

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
cannot do without (:data:`AZURE_EXTRA_ENV`): ``AZURE_STORAGE_ACCOUNT`` (the account
``az://container/...`` lives in) and ``AZURE_CLIENT_ID`` (which of the app's identities
DefaultAzureCredential should use). Neither is a secret.

:class:`AzureHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs the scheduled
``orchestrator health --once`` as a Container Apps job with a cron trigger in the same
environment; its permissions are in its docstring.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

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

from infra.components.endpoint import EndpointComponent
from infra.specs.azure_options import AzureOptions
from infra.specs.endpoint import EndpointSpec
from infra.specs.health_job import (
    AWS_CREDENTIALS_DIR,
    AWS_CREDENTIALS_FILE,
    AWS_CREDENTIALS_NAME,
    JOB_TIMEOUT_S,
    HealthJobSpec,
)

__all__ = [
    "ACR_PULL",
    "AZURE_EXTRA_ENV",
    "CONTROL_CONTAINER",
    "KEY_VAULT_SECRETS_USER",
    "STATE_WRITE_ACTION",
    "STORAGE_BLOB_DATA_READER",
    "AzureEndpoint",
    "AzureHealthJob",
]

# Built-in role definition ids (the same in every tenant).
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
AZURE_EXTRA_ENV = ("AZURE_STORAGE_ACCOUNT", "AZURE_CLIENT_ID")
CONTAINER_NAME = "endpoint"
# The health job's own container (configuration and state) in the stack's storage account.
CONTROL_CONTAINER = "orchestrator-control"
# Soft delete keeps an overwritten or deleted model blob recoverable for a week.
BLOB_RETENTION_DAYS = 7


def _role(subscription_id: pulumi.Input[str], role_id: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role_id
    )


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
            role_definition_id=_role(subscription_id, STORAGE_BLOB_DATA_READER),
            scope=container.id,
            opts=child,
        )
        pulls_images = authorization.RoleAssignment(
            f"{name}-pulls-images",
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=_role(subscription_id, ACR_PULL),
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
        self.bucket = container.name
        self.storage_root = pulumi.Output.concat("az://", container.name)
        self.model_uri = pulumi.Output.concat(self.storage_root, "/", spec.model_key)
        account_url = account.primary_endpoints.apply(lambda endpoints: endpoints.blob.rstrip("/"))
        self.storage_settings = {"account_url": account_url}

        env: dict[str, pulumi.Input[str]] = {
            **spec.container_env(self.model_uri),
            "AZURE_STORAGE_ACCOUNT": account.name,
            "AZURE_CLIENT_ID": identity.client_id,
        }
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


JOB_CONTAINER_NAME = "health"
# Consumption's smallest size: a health round is a few HTTP probes and a few small object reads.
JOB_CPU = 0.25
JOB_MEMORY = "0.5Gi"
# The only data action of the job's custom role. Storage Blob Data Contributor would also carry
# container delete and write (control-plane actions that role assignment conditions cannot
# restrict), so a custom role grants writes alone and a condition narrows them to one blob.
STATE_WRITE_ACTION = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
# The name the job gives its Key Vault reference and volume (a name, not a credential).
AWS_CREDENTIALS_REF = "aws-credentials"


def state_write_condition(container: str, state_path: str) -> str:
    """The role assignment condition (ABAC, version 2.0): writes only to ``container/state_path``."""
    attribute = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers"
    return (
        f"((!(ActionMatches{{'{STATE_WRITE_ACTION}'}})) OR "
        f"({attribute}:name] StringEquals '{container}'"
        f" AND {attribute}/blobs:path] StringEquals '{state_path}'))"
    )


class AzureHealthJob(pulumi.ComponentResource):
    """``orchestrator health --once [--apply]`` on a schedule: a Container Apps job with a cron
    trigger, in the endpoint's environment, running the endpoint's image (same registry, same
    digest).

    Its own user-assigned identity, with exactly these role assignments:

    - Storage Blob Data Reader on the models container (LATEST, manifests) and on its own control
      container (config, state), which only operators and the job write, never publishers;
    - a custom role whose only permission is the blob write data action, assigned on the control
      container under a condition naming the state blob alone;
    - AcrPull on the registry (the job pulls the image with its identity);
    - with ``apply``, Key Vault Secrets User on the one secret holding the AWS credentials for
      Route 53 (mounted as a file; Route 53 rights are whatever that AWS principal's policy
      grants; the vault must use the Azure RBAC permission model).

    Probing the endpoints needs no role: they are HTTPS URLs. Environment:
    :meth:`HealthJobSpec.container_env` plus ``AZURE_STORAGE_ACCOUNT`` and this identity's
    ``AZURE_CLIENT_ID`` (as the endpoint), and ``AWS_SHARED_CREDENTIALS_FILE`` with ``apply``.
    """

    job: app.Job
    identity: managedidentity.UserAssignedIdentity
    control_root: pulumi.Output[str]  # az://<the job's control container>

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        job: HealthJobSpec,
        options: AzureOptions,
        endpoint: AzureEndpoint,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:AzureHealthJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group, subscription_id = endpoint.group, endpoint.subscription_id

        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=group.name, location=spec.region, opts=child
        )
        self.identity = identity
        # The job's configuration and state live in their own container, which only operators and
        # the job write: not the models container, which publishers write.
        control = storage.BlobContainer(
            f"{name}-control",
            resource_group_name=group.name,
            account_name=endpoint.account.name,
            container_name=CONTROL_CONTAINER,
            public_access=storage.PublicAccess.NONE,
            opts=child,
        )
        self.control_root = pulumi.Output.concat("az://", control.name)

        def assign(
            suffix: str, role_id: pulumi.Input[str], scope: pulumi.Input[str], **extra: Any
        ) -> authorization.RoleAssignment:
            return authorization.RoleAssignment(
                f"{name}-{suffix}",
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=_role(subscription_id, role_id),
                scope=scope,
                **extra,
            )

        # A custom role's name must be unique in the tenant and its id is a GUID: the name carries
        # the resource group's name and the id derives from its id, so each stack gets its own
        # role and a redeploy the same one.
        writer_id = group.id.apply(
            lambda group_id: str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{group_id}/ml-orchestrator/health-state-writer")
            )
        )
        writer = authorization.RoleDefinition(
            f"{name}-state-writer",
            scope=group.id,
            role_definition_id=writer_id,
            role_name=pulumi.Output.concat("ml-orchestrator health state writer (", group.name, ")"),
            description="Write blobs; assigned under a condition that names the health job's state blob",
            role_type="CustomRole",
            permissions=[{"actions": [], "not_actions": [], "data_actions": [STATE_WRITE_ACTION]}],
            # Custom roles are assignable at resource group scope at the finest.
            assignable_scopes=[group.id],
            opts=child,
        )
        grants = [
            assign("reads-models", STORAGE_BLOB_DATA_READER, endpoint.container.id, opts=child),
            assign("reads-control", STORAGE_BLOB_DATA_READER, control.id, opts=child),
            assign(
                "writes-state",
                writer_id,
                control.id,
                condition=state_write_condition(CONTROL_CONTAINER, job.state_path),
                condition_version="2.0",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[writer]),
            ),
            assign("pulls-images", ACR_PULL, endpoint.container_registry.id, opts=child),
        ]

        env: dict[str, pulumi.Input[str]] = {
            **job.container_env(self.control_root, endpoint.endpoint_url),
            "AZURE_STORAGE_ACCOUNT": endpoint.account.name,
            "AZURE_CLIENT_ID": identity.client_id,
        }
        container: app.ContainerArgsDict = {
            "name": JOB_CONTAINER_NAME,
            "image": endpoint.image,
            # The whole argv, whatever the image's ENTRYPOINT (it starts the endpoint).
            "command": list(job.command[:1]),
            "args": list(job.command[1:]),
            "resources": {"cpu": JOB_CPU, "memory": JOB_MEMORY},
        }
        configuration: app.JobConfigurationArgsDict = {
            "trigger_type": "Schedule",
            "schedule_trigger_config": {
                "cron_expression": job.schedule,
                "parallelism": 1,
                "replica_completion_count": 1,
            },
            "replica_timeout": JOB_TIMEOUT_S,
            # The next scheduled run is the retry; a late round would only race it.
            "replica_retry_limit": 0,
            "registries": [{"server": endpoint.container_registry.login_server, "identity": identity.id}],
        }
        template: app.JobTemplateArgsDict = {"containers": [container]}
        if job.aws_credentials_secret is not None:
            grants.append(
                assign(
                    "reads-aws-credentials", KEY_VAULT_SECRETS_USER, job.aws_credentials_secret, opts=child
                )
            )
            # A Key Vault reference read with the job's identity: the credentials never pass
            # through Pulumi or its state. Versionless: a rotated key needs no redeploy.
            configuration["secrets"] = [
                {
                    "name": AWS_CREDENTIALS_REF,
                    "key_vault_url": job.key_vault_secret_url,
                    "identity": identity.id,
                }
            ]
            template["volumes"] = [
                {
                    "name": AWS_CREDENTIALS_REF,
                    "storage_type": "Secret",
                    "secrets": [{"secret_ref": AWS_CREDENTIALS_REF, "path": AWS_CREDENTIALS_NAME}],
                }
            ]
            container["volume_mounts"] = [
                {"volume_name": AWS_CREDENTIALS_REF, "mount_path": AWS_CREDENTIALS_DIR}
            ]
            env["AWS_SHARED_CREDENTIALS_FILE"] = AWS_CREDENTIALS_FILE
        container["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]

        self.job = app.Job(
            f"{name}-job",
            resource_group_name=group.name,
            location=spec.region,
            environment_id=endpoint.environment.id,
            workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration=configuration,
            template=template,
            # The first run pulls the image, reads its config and writes its state with these.
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        self.register_outputs({"job": self.job.name})
