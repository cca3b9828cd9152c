"""What only the Azure stack needs or accepts: ``ml-orchestrator:azure`` and Container Apps' rules.

:class:`AzureOptions` holds the models container's name, the log retention, the Container
App's name, the custom domain's binding step and the deployer principals. :data:`PLATFORM`
is Azure's region names and the Consumption profile's CPU/memory pairs, applied to the endpoint
spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from infra.specs.fields import ConfigError, ConfigObject
from infra.specs.platform import Platform, Size, fmt

__all__ = ["PLATFORM", "AzureOptions", "parse_azure_options"]

# Container Apps, Consumption workload profile: 0.25 to 4 vCPU in 0.25 steps, memory exactly
# twice the vCPUs in GiB.
CONTAINER_APPS_CPU_STEP_MILLI: Final = 250
CONTAINER_APPS_MAX_CPU: Final = 4.0
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
# Container App names: lowercase letters, digits and hyphens, a letter first, 2 to 32.
_CONTAINER_APP = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_AZURE_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def _check_container_apps(size: Size) -> None:
    if size.cpu_milli % CONTAINER_APPS_CPU_STEP_MILLI or size.cpu > CONTAINER_APPS_MAX_CPU:
        raise size.cpu_error(f"Container Apps accepts 0.25 to 4 vCPU in steps of 0.25, not {fmt(size.cpu)}")
    if size.memory_mib != 2 * size.cpu_milli * 1024 // 1000:
        raise size.memory_error(
            f"Container Apps pairs {fmt(size.cpu)} vCPU with exactly {fmt(2 * size.cpu)} GiB, "
            f"not {fmt(size.memory_gib)}"
        )


PLATFORM: Final = Platform(
    region_key="azure-native:location",
    # westeurope, eastus2: Azure's canonical names, not display names such as "West Europe"
    region_pattern=re.compile(r"[a-z]+[a-z0-9]*"),
    region_example="a lowercase name like westeurope or eastus2",
    check_size=_check_container_apps,
)


@dataclass(frozen=True)
class AzureOptions:
    """What only the Azure stack needs (``ml-orchestrator:azure``)."""

    container: str = "models"
    log_retention_days: int = 30
    # The Container App's name, fixed so its host name (<name>.<environment's default domain>) is
    # known before the app exists: the dns stack points the public name at it on the first `up`.
    app_name: str = "ml-endpoint"
    # Second step of the custom domain: false adds the public name to the app unbound and
    # requests a managed certificate; true (once the certificate is issued) binds it (SNI).
    certificate_bound: bool = False
    # Entra object ids (users, groups, service principals) that may publish models
    # (`orchestrator sync`: Storage Blob Data Contributor on the models container) and push
    # images (AcrPush on the registry), nothing else.
    deployers: tuple[str, ...] = ()


def parse_azure_options(raw: object, *, namespace: str) -> AzureOptions:
    """The Azure options from ``ml-orchestrator:azure``; pure, raises ConfigError naming the key."""
    obj = ConfigObject(f"{namespace}:azure", raw)
    container = obj.string("container", "models")
    retention = obj.integer("log_retention_days", 30, low=30, high=730)  # Log Analytics' PerGB2018 range
    app_name = obj.string("app_name", "ml-endpoint")
    certificate_bound = obj.boolean("certificate_bound", False)
    deployers = obj.strings("deployers", ())
    obj.done()
    if not _CONTAINER_APP.fullmatch(app_name):
        raise ConfigError(obj.sub("app_name"), f"{app_name!r} is not a Container App name")
    for deployer in deployers:
        if not _OBJECT_ID.fullmatch(deployer):
            raise ConfigError(obj.sub("deployers"), f"{deployer!r} is not an Entra object id (a GUID)")
    if not _AZURE_CONTAINER.fullmatch(container):
        raise ConfigError(obj.sub("container"), f"{container!r} is not a blob container name")
    return AzureOptions(
        container=container,
        log_retention_days=retention,
        app_name=app_name,
        certificate_bound=certificate_bound,
        deployers=deployers,
    )
