"""The scheduled health job on Google Cloud: Cloud Scheduler runs a Cloud Run job beside the endpoint.

:class:`GcpHealthJob` (when ``ml-orchestrator:health_job.enabled``) runs ``orchestrator health
--once`` as a Cloud Run job of the endpoint's image that Cloud Scheduler starts; its permissions
are in its docstring.
"""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pulumi_gcp as gcp

from infra.components.endpoint import storage_root
from infra.components.gcp_alarms import MONITORING_API, job_alert_policy
from infra.components.gcp_endpoint import GcpEndpoint
from infra.components.gcp_secrets import grant_access
from infra.components.gcp_shared import private_bucket
from infra.components.health_job import HealthJobComponent, running_endpoint
from infra.specs.endpoint import EndpointSpec
from infra.specs.gcp_options import GcpOptions
from infra.specs.health_job import (
    AWS_CREDENTIALS_DIR,
    AWS_CREDENTIALS_ENV,
    AWS_CREDENTIALS_FILE,
    AWS_CREDENTIALS_NAME,
    JOB_TIMEOUT_S,
    HealthJobSpec,
)

__all__ = ["JOB_CONTAINER_NAME", "GcpHealthJob"]

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


class GcpHealthJob(HealthJobComponent):
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
      With API tokens configured, ``roles/secretmanager.secretAccessor`` on each token secret:
      the job references them as the endpoint does (for its probes to send once they
      authenticate; they do not yet).
    - the scheduler's account: ``roles/run.invoker`` on this job only, used to mint the OAuth
      token Cloud Scheduler sends with each run request.
    - a Cloud Monitoring alert policy (:mod:`infra.components.gcp_alarms`).
    """

    job: gcp.cloudrunv2.Job
    scheduler: gcp.cloudscheduler.Job
    alert_policy: gcp.monitoring.AlertPolicy

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
        image, endpoint_url = running_endpoint(endpoint)

        scheduler_api, monitoring_api = (
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                disable_on_destroy=False,  # other workloads in the project may use them too
                opts=child,
            )
            for api in (SCHEDULER_API, MONITORING_API)
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
        control = private_bucket(f"{name}-control", project, region, self)
        self.control_root = storage_root("gcp", control.name)
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
        grants += grant_access(f"{name}-job", self, endpoint.tokens, runtime.member)
        env: dict[str, pulumi.Input[str]] = job.container_env(self.control_root, endpoint_url)
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
            env[AWS_CREDENTIALS_ENV] = AWS_CREDENTIALS_FILE

        container: gcp.cloudrunv2.JobTemplateTemplateContainerArgsDict = {
            "name": JOB_CONTAINER_NAME,
            "image": image,
            # The whole argv, whatever the image's ENTRYPOINT (it starts the endpoint).
            "commands": list(job.command[:1]),
            "args": list(job.command[1:]),
            "envs": [
                *(cast(Any, {"name": key, "value": value}) for key, value in sorted(env.items())),
                *(cast(Any, reference.env_var()) for reference in endpoint.tokens),
            ],
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
        self.alert_policy, _ = job_alert_policy(
            name,
            self,
            project=project,
            job_name=self.job.name,
            emails=job.alert_emails,
            depends_on=[monitoring_api],
        )
        if not job.alert_emails:
            pulumi.log.warn(
                "gcp: no health_job.alert_emails: the job's alert policy notifies no channel; add one",
                resource=self,
            )
        # For the AWS stack's health_job.federation.gcp.service_account_id (the role's trust).
        self.exports = {"identity": runtime.unique_id}
        self.register_outputs({"job": self.job.name, "scheduler": self.scheduler.name})
