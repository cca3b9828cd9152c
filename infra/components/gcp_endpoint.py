"""The endpoint on Google Cloud: Artifact Registry, a private GCS model bucket, Cloud Run v2.

One :class:`GcpEndpoint` component owns every resource of the GCP endpoint:

- the project services it needs (Cloud Run, Artifact Registry, IAM), left enabled on destroy;
- an Artifact Registry Docker repository with immutable tags, which the image is copied into;
- the GCS bucket the orchestrator publishes models to: uniform bucket-level access, public access
  prevention enforced, versioning (GCS encrypts at rest and serves only HTTPS by itself);
- a service account whose only grant is ``roles/storage.objectViewer`` on that bucket;
- Cloud Storage Data Access audit logs (``DATA_READ``, ``DATA_WRITE``) for the project: who read
  or wrote which object of the model bucket, with the caller's identity (Google's recommended
  way of logging Cloud Storage access; one authoritative setting per project and service);
- one Secret Manager secret per configured API token (:mod:`infra.components.gcp_secrets`);
- with ``gcp.deployers``: ``roles/storage.objectUser`` on the model bucket (sync writes,
  overwrites LATEST and removes files) and ``roles/artifactregistry.writer`` on the repository;
- with a public name, the HTTPS load balancer of :mod:`infra.components.gcp_ingress`;
- once ``endpoint.image`` is set, a Cloud Run v2 service (named ``gcp.service_name``) running as
  that account: min/max instances, concurrency, CPU and memory, a startup probe on the readiness
  path and a liveness probe, the tokens by reference; without an image, none (a warning says so);
- invoker IAM: one authoritative ``roles/run.invoker`` binding with the configured members
  (``allUsers`` makes it public, like the other clouds' load balancers; the API token is what
  guards predictions).

Cloud Run has no read-only root filesystem setting: its root filesystem is writable and held in
memory (it counts against the instance's memory), which is where ``/tmp`` and the model cache live.

Environment: :meth:`EndpointSpec.container_env` minus ``PORT``, which Cloud Run reserves and
sets itself from the container port (the same value). The storage client finds the service
account through the metadata server; no key, no extra variable.

The scheduled health job beside it is :mod:`infra.components.gcp_health_job`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.components.endpoint import EndpointComponent
from infra.components.gcp_ingress import CERTIFICATE_MANAGER_API, COMPUTE_API, https_load_balancer
from infra.components.gcp_secrets import SECRET_MANAGER_API, TokenReference, api_token_secrets, grant_access
from infra.components.gcp_shared import private_bucket
from infra.specs.auth import ApiTokens
from infra.specs.endpoint import EndpointSpec
from infra.specs.gcp_options import GcpOptions

__all__ = ["CLOUD_RUN_RESERVED_ENV", "GcpEndpoint"]

# Cloud Run refuses these in a container's env: it sets them itself.
CLOUD_RUN_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
REQUIRED_APIS = ("run.googleapis.com", "artifactregistry.googleapis.com", "iam.googleapis.com")
CONTAINER_NAME = "endpoint"


def _cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _memory(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


class GcpEndpoint(EndpointComponent):
    """The model endpoint on Cloud Run; see the module docstring for what it creates."""

    apis: list[gcp.projects.Service]  # the health job's Cloud Run job needs them too
    tokens: list[TokenReference]  # the health job references them too

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        options: GcpOptions,
        tokens: ApiTokens,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:GcpEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project = options.project

        required = list(REQUIRED_APIS)
        if spec.public_name is not None:
            required += [COMPUTE_API, CERTIFICATE_MANAGER_API]
        if tokens.enabled:
            required.append(SECRET_MANAGER_API)
        apis = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                # Other workloads in the project may use these APIs too.
                disable_on_destroy=False,
                opts=child,
            )
            for api in required
        ]
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)
        self.apis = apis

        # Registry: the image is copied here by digest; Cloud Run pulls same-project images
        # with its own service agent, so the runtime account needs no registry role.
        repository = gcp.artifactregistry.Repository(
            f"{name}-images",
            project=project,
            location=spec.region,
            repository_id=options.repository_id,
            format="DOCKER",
            docker_config={"immutable_tags": True},
            opts=after_apis,
        )

        # Model bucket: private (uniform access, public access prevention), versioned; every
        # read and write audit-logged with the caller's identity.
        bucket = private_bucket(f"{name}-models", project, spec.region, self)
        gcp.projects.IAMAuditConfig(
            f"{name}-storage-audit",
            project=project,
            service="storage.googleapis.com",
            audit_log_configs=[{"log_type": "DATA_READ"}, {"log_type": "DATA_WRITE"}],
            opts=child,
        )

        # Identity: reads this bucket's objects (and the token secrets), nothing else.
        account = gcp.serviceaccount.Account(
            f"{name}-runtime",
            project=project,
            account_id=options.service_account_id,
            display_name="ML endpoint (reads its model bucket)",
            opts=after_apis,
        )
        reads_models = gcp.storage.BucketIAMMember(
            f"{name}-reads-models",
            bucket=bucket.name,
            role="roles/storage.objectViewer",
            member=account.member,
            opts=child,
        )
        self.tokens = api_token_secrets(name, self, tokens, project, apis)
        reads_tokens = grant_access(name, self, self.tokens, account.member)
        self._deployers(name, options, bucket, repository)

        self.registry = pulumi.Output.concat(repository.registry_uri, "/", spec.image_name)
        self.set_model_bucket(spec, bucket.name)
        self.storage_settings = {"project": project}
        self.api_token_secrets = {reference.slot: reference.secret.name for reference in self.tokens}

        if spec.public_name is not None and spec.cloud_name is not None:
            ingress = https_load_balancer(
                name,
                self,
                project=project,
                region=spec.region,
                service_name=options.service_name,
                names=(spec.public_name, spec.cloud_name),
                depends_on=apis,
            )
            self.set_public_entry(spec, dns_records=ingress.dns_records, health_check_ip=ingress.address)
            self.endpoint_url = pulumi.Output.from_input(f"https://{spec.cloud_name}")
        else:
            pulumi.log.warn(
                "gcp: no public name (ml-orchestrator:endpoint.public_name): the endpoint is served on "
                "its run.app address only; set it to answer the public name over TLS",
                resource=self,
            )
            self.set_public_entry(spec, dns_records=[], health_check_ip=None)
            self.endpoint_url = None

        if spec.digest is None:
            self.image = None
            self.warn_no_image()
        else:
            self.image = pulumi.Output.concat(self.registry, "@", spec.digest)
            service = self._service(
                name, spec, options, self.image, account, depends_on=[*apis, reads_models, *reads_tokens]
            )
            if self.endpoint_url is None:
                self.endpoint_url = service.uri

        self.register_endpoint_outputs()

    def _deployers(
        self,
        name: str,
        options: GcpOptions,
        bucket: gcp.storage.Bucket,
        repository: gcp.artifactregistry.Repository,
    ) -> None:
        """What ``orchestrator sync`` and ``image push`` need, for each configured deployer."""
        child = pulumi.ResourceOptions(parent=self)
        for index, member in enumerate(options.deployers):
            gcp.storage.BucketIAMMember(
                f"{name}-deployer-{index}-publishes",
                bucket=bucket.name,
                role="roles/storage.objectUser",
                member=member,
                opts=child,
            )
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-deployer-{index}-pushes",
                project=options.project,
                location=repository.location,
                repository=repository.name,
                role="roles/artifactregistry.writer",
                member=member,
                opts=child,
            )

    def _service(
        self,
        name: str,
        spec: EndpointSpec,
        options: GcpOptions,
        image: pulumi.Output[str],
        account: gcp.serviceaccount.Account,
        depends_on: list[pulumi.Resource],
    ) -> gcp.cloudrunv2.Service:
        """The Cloud Run service and its invokers."""
        startup, liveness = spec.startup_probe, spec.liveness_probe
        env = spec.container_env(self.model_uri)
        envs: list[Any] = [
            *(
                {"name": key, "value": value}
                for key, value in sorted(env.items())
                if key not in CLOUD_RUN_RESERVED_ENV
            ),
            *(reference.env_var() for reference in self.tokens),
        ]
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=options.service_name,
            project=options.project,
            location=spec.region,
            # With a public name, only the load balancer (its TLS policy, its certificate) reaches
            # the service: the run.app address refuses outside traffic.
            ingress="INGRESS_TRAFFIC_ALL"
            if spec.public_name is None
            else "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            # Stateless: replacing or deleting it loses nothing (the bucket keeps the models).
            deletion_protection=False,
            template={
                "service_account": account.email,
                "execution_environment": "EXECUTION_ENVIRONMENT_GEN2",
                "max_instance_request_concurrency": spec.concurrency,
                "scaling": {
                    "min_instance_count": spec.min_instances,
                    "max_instance_count": spec.max_instances,
                },
                "containers": [
                    {
                        "name": CONTAINER_NAME,
                        "image": image,
                        "ports": {"container_port": spec.port},
                        "envs": envs,
                        "resources": {
                            "limits": {"cpu": _cpu(spec.cpu_milli), "memory": _memory(spec.memory_mib)},
                            # CPU stays allocated between requests (instance-based billing): the
                            # endpoint polls LATEST and hot-swaps models in the background, which a
                            # throttled idle instance would stall. Boosted while the model loads.
                            "cpu_idle": False,
                            "startup_cpu_boost": True,
                        },
                        "startup_probe": {
                            "http_get": {"path": startup.path, "port": spec.port},
                            "period_seconds": startup.period_s,
                            "timeout_seconds": startup.timeout_s,
                            "failure_threshold": startup.failure_threshold,
                        },
                        "liveness_probe": {
                            "http_get": {"path": liveness.path, "port": spec.port},
                            "period_seconds": liveness.period_s,
                            "timeout_seconds": liveness.timeout_s,
                            "failure_threshold": liveness.failure_threshold,
                        },
                    }
                ],
            },
            # The first revision must be able to read its model and its tokens.
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        # Authoritative for the invoker role: nobody else can call the service by accident.
        gcp.cloudrunv2.ServiceIamBinding(
            f"{name}-invokers",
            project=options.project,
            location=spec.region,
            name=service.name,
            role="roles/run.invoker",
            members=list(options.invokers),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return service
