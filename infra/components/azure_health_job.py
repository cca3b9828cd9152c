"""The scheduled health job on Azure: a Container Apps job with a cron trigger beside the endpoint.

:class:`AzureHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs ``orchestrator health
--once`` as a Container Apps job of the endpoint's image in the endpoint's environment; its
permissions are in its docstring.
"""

from __future__ import annotations

import uuid
from typing import Any

import pulumi
from pulumi_azure_native import app, authorization, managedidentity, storage

from infra.components.azure_alarms import job_alerts
from infra.components.azure_endpoint import AzureEndpoint
from infra.components.azure_secrets import grant_access
from infra.components.azure_shared import (
    ACR_PULL,
    KEY_VAULT_SECRETS_USER,
    STORAGE_BLOB_DATA_READER,
    identity_env,
    role_definition,
)
from infra.components.endpoint import storage_root
from infra.components.health_job import HealthJobComponent, running_endpoint
from infra.specs.azure_options import AzureOptions
from infra.specs.endpoint import EndpointSpec
from infra.specs.health_job import (
    AWS_CREDENTIALS_DIR,
    AWS_CREDENTIALS_ENV,
    AWS_CREDENTIALS_FILE,
    AWS_CREDENTIALS_NAME,
    JOB_TIMEOUT_S,
    HealthJobSpec,
)

__all__ = ["CONTROL_CONTAINER", "JOB_CONTAINER_NAME", "STATE_WRITE_ACTION", "AzureHealthJob"]

# The health job's own container (configuration and state) in the stack's storage account.
CONTROL_CONTAINER = "orchestrator-control"
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


class AzureHealthJob(HealthJobComponent):
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

    - with API tokens, Key Vault Secrets User on each token secret: the job references them as
      the endpoint does (for its probes to send once they authenticate; they do not yet).

    Alerts: :mod:`infra.components.azure_alarms`. Probing the endpoints needs no role: they are
    HTTPS URLs. Environment:
    :meth:`HealthJobSpec.container_env` plus ``AZURE_STORAGE_ACCOUNT`` and this identity's
    ``AZURE_CLIENT_ID`` (as the endpoint), and ``AWS_SHARED_CREDENTIALS_FILE`` with ``apply``.
    """

    job: app.Job
    identity: managedidentity.UserAssignedIdentity

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
        image, endpoint_url = running_endpoint(endpoint)

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
        self.control_root = storage_root("azure", control.name)

        def assign(
            suffix: str, role_id: pulumi.Input[str], scope: pulumi.Input[str], **extra: Any
        ) -> authorization.RoleAssignment:
            return authorization.RoleAssignment(
                f"{name}-{suffix}",
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=role_definition(subscription_id, role_id),
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
            *grant_access(name, self, endpoint.tokens, identity.principal_id, subscription_id),
        ]

        env = {
            **job.container_env(self.control_root, endpoint_url),
            **identity_env(endpoint.account.name, identity.client_id),
        }
        container: app.ContainerArgsDict = {
            "name": JOB_CONTAINER_NAME,
            "image": image,
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
        secrets: list[app.SecretArgsDict] = [
            {"name": reference.secret_name, "key_vault_url": reference.url, "identity": identity.id}
            for reference in endpoint.tokens
        ]
        if job.aws_credentials_secret is not None:
            grants.append(
                assign(
                    "reads-aws-credentials", KEY_VAULT_SECRETS_USER, job.aws_credentials_secret, opts=child
                )
            )
            # A Key Vault reference read with the job's identity: the credentials never pass
            # through Pulumi or its state. Versionless: a rotated key needs no redeploy.
            secrets.append(
                {
                    "name": AWS_CREDENTIALS_REF,
                    "key_vault_url": job.key_vault_secret_url,
                    "identity": identity.id,
                }
            )
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
            env[AWS_CREDENTIALS_ENV] = AWS_CREDENTIALS_FILE
        if secrets:
            configuration["secrets"] = secrets
        plain: list[app.EnvironmentVarArgsDict] = [
            {"name": key, "value": value} for key, value in sorted(env.items())
        ]
        by_reference: list[app.EnvironmentVarArgsDict] = [
            {"name": reference.env, "secret_ref": reference.secret_name} for reference in endpoint.tokens
        ]
        container["env"] = [*plain, *by_reference]

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
        job_alerts(
            name,
            self,
            resource_group_name=group.name,
            location=spec.region,
            job_id=self.job.id,
            job_name=self.job.name,
            workspace_id=endpoint.workspace.id,
            emails=job.alert_emails,
        )
        if not job.alert_emails:
            pulumi.log.warn(
                "azure: no health_job.alert_emails: the job's alerts notify an action group without "
                "receivers; add one",
                resource=self,
            )
        # For the AWS stack's health_job.federation.azure.principal_id (the role's trust).
        self.exports = {"identity": self.identity.principal_id}
        self.register_outputs({"job": self.job.name})
