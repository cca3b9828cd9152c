"""The endpoint on Google Cloud: Artifact Registry, a private GCS model bucket, Cloud Run v2.

One :class:`GcpEndpoint` component owns every resource of the GCP endpoint:

- the project services it needs (Cloud Run, Artifact Registry, IAM), left enabled on destroy;
- an Artifact Registry Docker repository with immutable tags, which the image is copied into;
- the GCS bucket the orchestrator publishes models to: uniform bucket-level access, public access
  prevention enforced, versioning (GCS encrypts at rest and serves only HTTPS by itself);
- a service account whose only grant is ``roles/storage.objectViewer`` on that bucket;
- a Cloud Run v2 service running as that account: min/max instances, concurrency, CPU and
  memory, a startup probe on the readiness path and a liveness probe;
- invoker IAM: one authoritative ``roles/run.invoker`` binding with the configured members
  (``allUsers`` makes it public, like the other clouds' load balancers).

Environment: :meth:`EndpointSpec.container_env` minus ``PORT``, which Cloud Run reserves and
sets itself from the container port (the same value). The storage client finds the service
account through the metadata server; no key, no extra variable.

The scheduled health job beside it is :mod:`infra.components.gcp_health_job`.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.endpoint import EndpointComponent
from infra.components.gcp_shared import private_bucket
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

    def __init__(
        self, name: str, spec: EndpointSpec, options: GcpOptions, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-orchestrator:infra:GcpEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        apis = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=options.project,
                service=api,
                # Other workloads in the project may use these APIs too.
                disable_on_destroy=False,
                opts=child,
            )
            for api in REQUIRED_APIS
        ]
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)
        self.apis = apis

        # Registry: the image is copied here by digest; Cloud Run pulls same-project images
        # with its own service agent, so the runtime account needs no registry role.
        repository = gcp.artifactregistry.Repository(
            f"{name}-images",
            project=options.project,
            location=spec.region,
            repository_id=options.repository_id,
            format="DOCKER",
            docker_config={"immutable_tags": True},
            opts=after_apis,
        )

        # Model bucket: private (uniform access, public access prevention), versioned.
        bucket = private_bucket(f"{name}-models", options.project, spec.region, self)

        # Identity: reads this bucket's objects, nothing else.
        account = gcp.serviceaccount.Account(
            f"{name}-runtime",
            project=options.project,
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

        self.registry = pulumi.Output.concat(repository.registry_uri, "/", spec.image_name)
        self.image = pulumi.Output.concat(self.registry, "@", spec.digest)
        self.set_model_bucket(spec, bucket.name)
        self.storage_settings = {"project": options.project}

        startup, liveness = spec.startup_probe, spec.liveness_probe
        env = spec.container_env(self.model_uri)
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            project=options.project,
            location=spec.region,
            ingress="INGRESS_TRAFFIC_ALL",
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
                        "image": self.image,
                        "ports": {"container_port": spec.port},
                        "envs": [
                            {"name": key, "value": value}
                            for key, value in sorted(env.items())
                            if key not in CLOUD_RUN_RESERVED_ENV
                        ],
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
            # The first revision must be able to read its model.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*apis, reads_models]),
        )
        # Authoritative for the invoker role: nobody else can call the service by accident.
        gcp.cloudrunv2.ServiceIamBinding(
            f"{name}-invokers",
            project=options.project,
            location=spec.region,
            name=service.name,
            role="roles/run.invoker",
            members=list(options.invokers),
            opts=child,
        )
        self.endpoint_url = service.uri

        self.register_endpoint_outputs()
