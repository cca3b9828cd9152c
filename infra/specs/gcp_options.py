"""What only the GCP stack needs or accepts: ``ml-orchestrator:gcp``, ``gcp:project`` and Cloud
Run's rules.

:class:`GcpOptions` holds the project, who may invoke the service, the ids of the service
accounts, the Artifact Registry repository and the Cloud Run service, and the deployer members.
:data:`PLATFORM` is Cloud Run's region names and its CPU/memory bounds, applied to the endpoint
spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from infra.specs.fields import ConfigError, ConfigObject
from infra.specs.platform import Platform, Size, fmt

__all__ = ["PLATFORM", "GcpOptions", "parse_gcp_options"]

# Cloud Run (services, second generation): whole vCPUs from this set, or 0.08 to 1 in 0.001
# steps with concurrency 1; memory 512 MiB to 32 GiB, and more memory needs more vCPUs.
CLOUD_RUN_WHOLE_CPUS: Final = (1, 2, 4, 6, 8)
CLOUD_RUN_MEMORY_MIB: Final = (512, 32 * 1024)
# memory above X GiB needs at least Y vCPU
CLOUD_RUN_MIN_CPU_FOR_MEMORY: Final = ((24, 8), (16, 6), (8, 4), (4, 2))
# Y vCPU needs at least X GiB
CLOUD_RUN_MIN_MEMORY_FOR_CPU: Final = ((6, 4), (4, 2))

_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_GCP_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])")
_GCP_REPOSITORY_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
# Cloud Run service names: lowercase letters, digits and hyphens, a letter first, at most 49.
_CLOUD_RUN_NAME = re.compile(r"[a-z]([a-z0-9-]{0,47}[a-z0-9])?")
# Deployers are identities, never allUsers/allAuthenticatedUsers or a whole domain.
_GCP_DEPLOYER = re.compile(r"(user|serviceAccount|group|principal\w*):\S+")
_GCP_MEMBER = re.compile(
    r"allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain|principal\w*):\S+"
)


def _check_cloud_run(size: Size) -> None:
    cpu, memory_gib = size.cpu, size.memory_gib
    if cpu < 1:
        if size.cpu_milli < 80:
            raise size.cpu_error(f"Cloud Run needs at least 0.08 vCPU, not {fmt(cpu)}")
        if size.concurrency != 1:
            raise ConfigError(
                f"{size.namespace}:endpoint.concurrency",
                f"Cloud Run requires concurrency 1 below 1 vCPU ({fmt(cpu)})",
            )
        if size.memory_mib > 1024 or (cpu < 0.5 and size.memory_mib > 512):
            raise size.memory_error("Cloud Run allows at most 512 MiB below 0.5 vCPU, 1 GiB below 1")
    elif cpu not in CLOUD_RUN_WHOLE_CPUS:
        whole = ", ".join(map(str, CLOUD_RUN_WHOLE_CPUS))
        raise size.cpu_error(f"Cloud Run accepts {whole} vCPU or 0.08 to 1, not {fmt(cpu)}")
    low, high = CLOUD_RUN_MEMORY_MIB
    if not low <= size.memory_mib <= high:
        raise size.memory_error(f"Cloud Run accepts 0.5 to 32 GiB, not {fmt(memory_gib)}")
    for above_gib, min_cpu in CLOUD_RUN_MIN_CPU_FOR_MEMORY:
        if memory_gib > above_gib and cpu < min_cpu:
            raise size.cpu_error(
                f"Cloud Run needs at least {min_cpu} vCPU for more than {above_gib} GiB of memory"
            )
    for at_cpu, min_gib in CLOUD_RUN_MIN_MEMORY_FOR_CPU:
        if cpu >= at_cpu and memory_gib < min_gib:
            raise size.memory_error(f"Cloud Run needs at least {min_gib} GiB with {at_cpu} vCPU or more")


PLATFORM: Final = Platform(
    region_key="gcp:region",
    # us-central1, europe-west4, northamerica-northeast1 (a zone such as us-central1-a is not a region)
    region_pattern=re.compile(r"[a-z]+-[a-z]+\d{1,2}"),
    region_example="like us-central1",
    check_size=_check_cloud_run,
)


@dataclass(frozen=True)
class GcpOptions:
    """What only the GCP stack needs (``ml-orchestrator:gcp`` and ``gcp:project``)."""

    project: str
    # Who may call the service: ["allUsers"] is public, like the other clouds' load balancers.
    invokers: tuple[str, ...] = ("allUsers",)
    service_account_id: str = "ml-endpoint"
    repository_id: str = "ml-endpoint"
    # The health job's identities (used only when it is enabled): one runs the job, one only
    # triggers it, so neither holds the other's rights.
    health_job_account_id: str = "ml-health-job"
    health_scheduler_account_id: str = "ml-health-scheduler"
    # The Cloud Run service's name, fixed so the load balancer's serverless NEG can name it
    # before the service exists (the first `up` has no image yet).
    service_name: str = "ml-endpoint"
    # IAM members that may publish models to the bucket (`orchestrator sync`) and push images to
    # the repository, nothing else.
    deployers: tuple[str, ...] = ()


def parse_gcp_options(raw: object, project: str | None, *, namespace: str) -> GcpOptions:
    """The GCP options from ``ml-orchestrator:gcp`` and ``gcp:project``; pure, raises ConfigError
    naming the key."""
    if not project:
        raise ConfigError("gcp:project", "is required: the Google Cloud project to deploy to")
    if not _GCP_PROJECT.fullmatch(project):
        raise ConfigError("gcp:project", f"{project!r} is not a project id (6 to 30 of a-z, 0-9 and -)")
    obj = ConfigObject(f"{namespace}:gcp", raw)
    invokers = obj.strings("invokers", ("allUsers",))
    account_id = obj.string("service_account_id", "ml-endpoint")
    repository_id = obj.string("repository_id", "ml-endpoint")
    job_account_id = obj.string("health_job_account_id", "ml-health-job")
    scheduler_account_id = obj.string("health_scheduler_account_id", "ml-health-scheduler")
    service_name = obj.string("service_name", "ml-endpoint")
    deployers = obj.strings("deployers", ())
    obj.done()
    if not _CLOUD_RUN_NAME.fullmatch(service_name):
        raise ConfigError(obj.sub("service_name"), f"{service_name!r} is not a Cloud Run service name")
    for member in deployers:
        if not _GCP_DEPLOYER.fullmatch(member):
            raise ConfigError(
                obj.sub("deployers"),
                f"{member!r} is not one identity (user:, serviceAccount:, group: or principal:...)",
            )
    if not invokers:
        raise ConfigError(obj.sub("invokers"), 'must name at least one member, or ["allUsers"] for public')
    for member in invokers:
        if not _GCP_MEMBER.fullmatch(member):
            raise ConfigError(
                obj.sub("invokers"),
                f"{member!r} is not an IAM member (allUsers, user:, serviceAccount:, group:, domain:...)",
            )
    accounts = {
        "service_account_id": account_id,
        "health_job_account_id": job_account_id,
        "health_scheduler_account_id": scheduler_account_id,
    }
    for name, value in accounts.items():
        if not _GCP_ACCOUNT_ID.fullmatch(value):
            raise ConfigError(obj.sub(name), f"{value!r} is not 6 to 30 of a-z, 0-9 and -")
    if len(set(accounts.values())) != len(accounts):
        raise ConfigError(
            obj.sub("health_job_account_id"), "the three service account ids must differ: one identity each"
        )
    if not _GCP_REPOSITORY_ID.fullmatch(repository_id):
        raise ConfigError(obj.sub("repository_id"), f"{repository_id!r} is not a repository id")
    return GcpOptions(
        project=project,
        invokers=invokers,
        service_account_id=account_id,
        repository_id=repository_id,
        health_job_account_id=job_account_id,
        health_scheduler_account_id=scheduler_account_id,
        service_name=service_name,
        deployers=deployers,
    )
