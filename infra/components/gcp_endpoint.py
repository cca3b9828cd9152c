"""The endpoint on Google Cloud: Artifact Registry, a private GCS model bucket, Cloud Run v2.

One :class:`GcpEndpoint` component owns every resource of the GCP stack:

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

:class:`GcpHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs the scheduled
``orchestrator health --once`` as a Cloud Run job that Cloud Scheduler starts; its permissions
are in its docstring.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.endpoint import EndpointComponent
from infra.specs.endpoint import EndpointSpec
from infra.specs.gcp_options import GcpOptions
from infra.specs.health_job import (
    AWS_CREDENTIALS_DIR,
    AWS_CREDENTIALS_FILE,
    AWS_CREDENTIALS_NAME,
    JOB_TIMEOUT_S,
    HealthJobSpec,
)

__all__ = ["CLOUD_RUN_RESERVED_ENV", "JOB_CONTAINER_NAME", "GcpEndpoint", "GcpHealthJob"]

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
        bucket = gcp.storage.Bucket(
            f"{name}-models",
            project=options.project,
            location=spec.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            opts=child,
        )

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
        self.bucket = bucket.name
        self.storage_root = pulumi.Output.concat("gs://", bucket.name)
        self.model_uri = pulumi.Output.concat(self.storage_root, "/", spec.model_key)
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


JOB_CONTAINER_NAME = "health"
# Cloud Run jobs take whole vCPUs; 512 MiB is Cloud Run's least memory. A health round is a few
# HTTP probes and a few small object reads.
JOB_CPU = "1"
JOB_MEMORY = "512Mi"
SCHEDULER_API = "cloudscheduler.googleapis.com"
# The Cloud Run Admin API's jobs.run; an OAuth token (not OIDC) because it is a Google API.
RUN_JOB_URI = "https://run.googleapis.com/v2/projects/{project}/locations/{region}/jobs/{job}:run"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Create, overwrite (delete) and read objects, no IAM: the narrowest predefined role that can
# replace an object, granted on one object name by an IAM condition.
STATE_WRITER_ROLE = "roles/storage.objectUser"
AWS_CREDENTIALS_VOLUME = "aws-credentials"


class GcpHealthJob(pulumi.ComponentResource):
    """``orchestrator health --once [--apply]`` on a schedule: Cloud Scheduler calls the Cloud Run
    Admin API to run a Cloud Run job of the endpoint's image (same registry, same digest).

    Two service accounts, so that neither holds the other's rights:

    - a control bucket of its own (private, versioned) for its configuration and state: only
      operators and the job write there, never publishers (who write the model bucket);
    - the job's runtime account: ``roles/storage.objectViewer`` on the model bucket (LATEST,
      manifests) and on the control bucket (config, state), and ``roles/storage.objectUser`` on
      the control bucket under an IAM condition naming the state object alone; with ``apply``,
      ``roles/secretmanager.secretAccessor`` on the one secret holding the AWS credentials for
      Route 53 (mounted as a file; Route 53 rights are whatever that AWS principal's policy
      grants). No project-level role. Probing the endpoints needs none: they are HTTPS URLs.
    - the scheduler's account: ``roles/run.invoker`` on this job only, used to mint the OAuth
      token Cloud Scheduler sends with each run request.
    """

    job: gcp.cloudrunv2.Job
    scheduler: gcp.cloudscheduler.Job
    control_root: pulumi.Output[str]  # gs://<the job's control bucket>

    def __init__(
        self,
        name: str,
        spec: EndpointSpec,
        job: HealthJobSpec,
        options: GcpOptions,
        endpoint: GcpEndpoint,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-orchestrator:infra:GcpHealthJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, region = options.project, spec.region

        scheduler_api = gcp.projects.Service(
            f"{name}-cloudscheduler",
            project=project,
            service=SCHEDULER_API,
            disable_on_destroy=False,  # other workloads in the project may schedule too
            opts=child,
        )
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=endpoint.apis)
        runtime = gcp.serviceaccount.Account(
            f"{name}-runtime",
            project=project,
            account_id=options.health_job_account_id,
            display_name="Health job (reads its bucket, writes its state object)",
            opts=after_apis,
        )
        trigger = gcp.serviceaccount.Account(
            f"{name}-scheduler",
            project=project,
            account_id=options.health_scheduler_account_id,
            display_name="Health job scheduler (runs the health job, nothing else)",
            opts=after_apis,
        )

        # The job's configuration and state live in their own bucket, which only operators and the
        # job write: not the model bucket, which publishers write.
        control = gcp.storage.Bucket(
            f"{name}-control",
            project=project,
            location=region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            opts=child,
        )
        self.control_root = pulumi.Output.concat("gs://", control.name)
        grants: list[pulumi.Resource] = [
            gcp.storage.BucketIAMMember(
                f"{name}-reads-models",
                bucket=endpoint.bucket,
                role="roles/storage.objectViewer",
                member=runtime.member,
                opts=child,
            ),
            gcp.storage.BucketIAMMember(
                f"{name}-reads-control",
                bucket=control.name,
                role="roles/storage.objectViewer",
                member=runtime.member,
                opts=child,
            ),
            gcp.storage.BucketIAMMember(
                f"{name}-writes-state",
                bucket=control.name,
                role=STATE_WRITER_ROLE,
                member=runtime.member,
                condition={
                    "title": "health-job-state-only",
                    "description": "The health job may write its state object and nothing else",
                    "expression": pulumi.Output.concat(
                        'resource.name == "projects/_/buckets/',
                        control.name,
                        "/objects/",
                        job.state_path,
                        '"',
                    ),
                },
                opts=child,
            ),
        ]
        env: dict[str, pulumi.Input[str]] = job.container_env(self.control_root, endpoint.endpoint_url)
        volumes: list[gcp.cloudrunv2.JobTemplateTemplateVolumeArgsDict] = []
        mounts: list[gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgsDict] = []
        if job.aws_credentials_secret is not None:
            secret = job.aws_credentials_secret
            if not secret.startswith("projects/"):
                secret = f"projects/{project}/secrets/{secret}"
            grants.append(
                gcp.secretmanager.SecretIamMember(
                    f"{name}-reads-aws-credentials",
                    secret_id=secret,
                    role="roles/secretmanager.secretAccessor",
                    member=runtime.member,
                    opts=child,
                )
            )
            # The latest version at each run: a rotated key needs no redeploy.
            volumes.append(
                {
                    "name": AWS_CREDENTIALS_VOLUME,
                    "secret": {
                        "secret": secret,
                        "items": [{"version": "latest", "path": AWS_CREDENTIALS_NAME}],
                    },
                }
            )
            mounts.append({"name": AWS_CREDENTIALS_VOLUME, "mount_path": AWS_CREDENTIALS_DIR})
            env["AWS_SHARED_CREDENTIALS_FILE"] = AWS_CREDENTIALS_FILE

        container: gcp.cloudrunv2.JobTemplateTemplateContainerArgsDict = {
            "name": JOB_CONTAINER_NAME,
            "image": endpoint.image,
            # The whole argv, whatever the image's ENTRYPOINT (it starts the endpoint).
            "commands": list(job.command[:1]),
            "args": list(job.command[1:]),
            "envs": [{"name": key, "value": value} for key, value in sorted(env.items())],
            "resources": {"limits": {"cpu": JOB_CPU, "memory": JOB_MEMORY}},
        }
        task: gcp.cloudrunv2.JobTemplateTemplateArgsDict = {
            "service_account": runtime.email,
            # The next scheduled run is the retry; a late round would only race it.
            "max_retries": 0,
            "timeout": f"{JOB_TIMEOUT_S}s",
            "containers": [container],
        }
        if volumes:
            container["volume_mounts"] = mounts
            task["volumes"] = volumes
        self.job = gcp.cloudrunv2.Job(
            f"{name}-job",
            project=project,
            location=region,
            # Stateless: replacing or deleting it loses nothing (state is in the bucket).
            deletion_protection=False,
            template={"task_count": 1, "parallelism": 1, "template": task},
            # The first run must be able to read its config and write its state.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*endpoint.apis, *grants]),
        )
        runs_job = gcp.cloudrunv2.JobIamMember(
            f"{name}-scheduler-runs-job",
            project=project,
            location=region,
            name=self.job.name,
            role="roles/run.invoker",
            member=trigger.member,
            opts=child,
        )
        self.scheduler = gcp.cloudscheduler.Job(
            f"{name}-schedule",
            project=project,
            region=region,
            description="orchestrator " + " ".join(job.command[1:]),
            schedule=job.schedule,
            time_zone="Etc/UTC",
            # jobs.run answers at once (it starts an execution); it does not wait for the round.
            attempt_deadline="30s",
            retry_config={"retry_count": 0},
            http_target={
                "http_method": "POST",
                "uri": self.job.name.apply(
                    lambda job_name: RUN_JOB_URI.format(project=project, region=region, job=job_name)
                ),
                "oauth_token": {"service_account_email": trigger.email, "scope": CLOUD_PLATFORM_SCOPE},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_api, runs_job]),
        )
        self.register_outputs({"job": self.job.name, "scheduler": self.scheduler.name})
