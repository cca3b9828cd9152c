"""The endpoint every cloud stack deploys, from ``ml-orchestrator:endpoint`` and the region.

:class:`EndpointSpec` is cloud-neutral: the image pinned by digest, port, size, scaling, probe
paths and timing, the model it follows, the container's environment, the key signatures are
checked with. :func:`parse_endpoint_spec` validates it completely before any resource exists,
including the platform's own rules for the region and the size (:data:`PLATFORMS`: Fargate's
fixed CPU/memory pairs, Cloud Run's bounds, Container Apps' 1:2 ratio), so a stack that would
only fail halfway through ``pulumi up`` fails here instead, naming the key.

The region is the provider's own key (``aws:region``, ``gcp:region``, ``azure-native:location``)
so the provider and this program cannot disagree about it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import pulumi

from infra.specs import aws_options, azure_options, gcp_options
from infra.specs.fields import ConfigError, ConfigObject, check_hostname, check_path
from infra.specs.platform import Platform, Size, fmt
from orchestrator.core.contract import (
    ENV_API_TOKENS,
    ENV_CACHE_DIR,
    ENV_HOST,
    ENV_MODEL_URI,
    ENV_PORT,
    ENV_RELOAD_INTERVAL,
    ENV_SIGNING_PUBLIC_KEY,
    MODELS,
    POINTER,
    CloudName,
)

__all__ = [
    "COMMON_ENV_KEYS",
    "PLATFORMS",
    "REGION_KEYS",
    "EndpointSpec",
    "Probe",
    "parse_endpoint_spec",
]

# Each cloud's rules for regions and sizes, from its options module.
PLATFORMS: Final[Mapping[CloudName, Platform]] = MappingProxyType(
    {"aws": aws_options.PLATFORM, "gcp": gcp_options.PLATFORM, "azure": azure_options.PLATFORM}
)
# Where each cloud's region lives: the provider's own configuration key.
REGION_KEYS: Final[Mapping[CloudName, str]] = MappingProxyType(
    {cloud: platform.region_key for cloud, platform in PLATFORMS.items()}
)

# The endpoint's own defaults (README, `orchestrator serve`): port 8080, liveness /healthz,
# readiness /readyz (200 only once a verified model reproduced its canary), cache under /tmp,
# which is writable for the image's non-root user.
DEFAULT_PORT: Final = 8080
DEFAULT_LIVENESS_PATH: Final = "/healthz"
DEFAULT_READINESS_PATH: Final = "/readyz"
# The repository name `orchestrator image push` uses (serving/Dockerfile's image).
DEFAULT_IMAGE_NAME: Final = "ml-endpoint"
DEFAULT_CACHE_DIR: Final = "/tmp/model-cache"  # noqa: S108  # the container's own /tmp, as in serving/Dockerfile
# Poll LATEST once a minute: a published model reaches every cloud within about a minute, at
# one small GET per instance per minute.
DEFAULT_RELOAD_INTERVAL_S: Final = 60
# One vCPU / 2 GiB / 80 concurrent requests: the orchestrator's default instance size
# (README, `clouds.<cloud>.size`), so its cost model prices what is deployed.
DEFAULT_CPU: Final = 1.0
DEFAULT_MEMORY_GIB: Final = 2.0
DEFAULT_CONCURRENCY: Final = 80
# One warm instance (a cold start downloads and verifies the model before /readyz turns 200);
# three at most until load says otherwise.
DEFAULT_MIN_INSTANCES: Final = 1
DEFAULT_MAX_INSTANCES: Final = 3
# Cloud Run and Container Apps both cap an app at 1000 instances/replicas.
MAX_INSTANCES_LIMIT: Final = 1000
# Cloud Run's ceiling for max_instance_request_concurrency.
MAX_CONCURRENCY: Final = 1000

# The environment every cloud's container gets, whatever the cloud (README, `orchestrator serve`).
COMMON_ENV_KEYS: Final = (ENV_MODEL_URI, ENV_PORT, ENV_HOST, ENV_RELOAD_INTERVAL, ENV_CACHE_DIR)
_PUBLIC_KEY_PEM = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]{40,4096}-----END PUBLIC KEY-----\s*"
)
# Names that suggest a credential: those belong in each cloud's secret store or identity, never in
# a plain stack file and a container's plain environment.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|CONNECTION_STRING|(^|_)(API_)?KEY($|_)")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# registry[:port]/path/name[:tag] in the distribution spec's lowercase grammar.
_IMAGE_NAME = re.compile(
    r"[a-z0-9]+([._-][a-z0-9]+)*(\.[a-z0-9-]+)*(:\d+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)+(:[\w][\w.-]{0,127})?"
)
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")  # orchestrator.yaml's model.name

# Probe timing shared by every cloud (each probe maps onto the platform's own mechanism).
# Startup: the model is downloaded and verified before /readyz is 200; allow 2 minutes
# (12 s x 10). Container Apps caps failure_threshold at 10, hence a longer period, not more tries.
STARTUP_PERIOD_S: Final = 12
STARTUP_FAILURE_THRESHOLD: Final = 10
# Liveness and readiness: three misses 10 s apart (30 s) before a restart or removal, so one slow
# answer during a hot-swap does not kill a healthy instance.
PROBE_PERIOD_S: Final = 10
PROBE_TIMEOUT_S: Final = 3
PROBE_FAILURE_THRESHOLD: Final = 3
# Two good answers before an instance takes traffic: ALB's minimum healthy threshold.
READINESS_SUCCESS_THRESHOLD: Final = 2


@dataclass(frozen=True)
class Probe:
    """An HTTP probe, in the terms every platform understands."""

    path: str
    period_s: int
    timeout_s: int
    failure_threshold: int
    success_threshold: int = 1


@dataclass(frozen=True)
class EndpointSpec:
    """The endpoint as every cloud deploys it; sizes are validated for ``cloud``."""

    cloud: CloudName
    region: str
    # repository@sha256:<64 hex>, as configured; None before the first image is pushed: the
    # stack then creates registries, buckets and the public entry, but no service and no job.
    image: str | None
    model_name: str
    # The one DNS name clients use (the dns stack's record_name): every cloud answers it over
    # TLS. None: each cloud serves on its platform's own host name only.
    public_name: str | None = None
    port: int = DEFAULT_PORT
    cpu: float = DEFAULT_CPU  # vCPU
    memory_gib: float = DEFAULT_MEMORY_GIB
    min_instances: int = DEFAULT_MIN_INSTANCES
    max_instances: int = DEFAULT_MAX_INSTANCES
    concurrency: int = DEFAULT_CONCURRENCY  # in-flight requests per instance
    liveness_path: str = DEFAULT_LIVENESS_PATH
    readiness_path: str = DEFAULT_READINESS_PATH
    reload_interval_s: int = DEFAULT_RELOAD_INTERVAL_S
    cache_dir: str = DEFAULT_CACHE_DIR
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # PEM text of the EC public key artifacts must be signed with (plain configuration: a public
    # key is no secret); None: signatures are not checked.
    signing_public_key: str | None = None

    @property
    def digest(self) -> str | None:
        """``sha256:<hex>``: the same in every cloud's registry, since a copy keeps the manifest;
        None while no image is configured."""
        return None if self.image is None else self.image.rpartition("@")[2]

    @property
    def image_name(self) -> str:
        """The repository's last path component (``ml-endpoint``, also before an image is
        configured): the name in each cloud's registry."""
        if self.image is None:
            return DEFAULT_IMAGE_NAME
        name = self.image.rpartition("@")[0].rpartition("/")[2]
        return name.partition(":")[0]

    @property
    def cloud_name(self) -> str | None:
        """``<cloud>.<public_name>``: a name only this cloud answers (a weighted record's target,
        covered by the same certificate as the public name); None without a public name."""
        return None if self.public_name is None else f"{self.cloud}.{self.public_name}"

    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * 1000)

    @property
    def memory_mib(self) -> int:
        return round(self.memory_gib * 1024)

    @property
    def model_key(self) -> str:
        """The LATEST pointer's key in a bucket (README, "Every bucket holds the same layout")."""
        return f"{MODELS}/{self.model_name}/{POINTER}"

    @property
    def startup_probe(self) -> Probe:
        return Probe(self.readiness_path, STARTUP_PERIOD_S, PROBE_TIMEOUT_S, STARTUP_FAILURE_THRESHOLD)

    @property
    def startup_budget_s(self) -> int:
        return STARTUP_PERIOD_S * STARTUP_FAILURE_THRESHOLD

    @property
    def liveness_probe(self) -> Probe:
        return Probe(self.liveness_path, PROBE_PERIOD_S, PROBE_TIMEOUT_S, PROBE_FAILURE_THRESHOLD)

    @property
    def readiness_probe(self) -> Probe:
        return Probe(
            self.readiness_path,
            PROBE_PERIOD_S,
            PROBE_TIMEOUT_S,
            PROBE_FAILURE_THRESHOLD,
            READINESS_SUCCESS_THRESHOLD,
        )

    def container_env(self, model_uri: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
        """The environment every cloud's container gets: :data:`COMMON_ENV_KEYS` plus ``environment``.

        Cloud-specific additions (Azure's identity and account) are the components' business and
        documented there; Cloud Run sets ``PORT`` itself from the container port.
        """
        env: dict[str, pulumi.Input[str]] = {
            ENV_MODEL_URI: model_uri,
            ENV_PORT: str(self.port),
            # Listen on every interface of the container's own network namespace: the platform's
            # load balancer reaches it from outside the container.
            ENV_HOST: "0.0.0.0",  # noqa: S104
            ENV_RELOAD_INTERVAL: str(self.reload_interval_s),
            ENV_CACHE_DIR: self.cache_dir,
        }
        if self.signing_public_key is not None:
            env[ENV_SIGNING_PUBLIC_KEY] = self.signing_public_key
        env.update(self.environment)
        return env


def _check_image(key: str, value: str) -> str:
    name, at, digest = value.partition("@")
    if not at:
        raise ConfigError(
            key,
            f"{value!r} is not pinned by digest: use REPOSITORY@sha256:<64 hex> "
            "(`orchestrator image push` prints it); tags can move, digests cannot",
        )
    if not _DIGEST.fullmatch(digest):
        raise ConfigError(key, f"{digest!r} is not a sha256 digest (sha256: followed by 64 lowercase hex)")
    if not _IMAGE_NAME.fullmatch(name):
        raise ConfigError(key, f"{name!r} is not a repository reference such as ghcr.io/example/ml-endpoint")
    return value


def _check_region(cloud: CloudName, region: str | None) -> str:
    platform = PLATFORMS[cloud]
    if not region:
        raise ConfigError(platform.region_key, f"is required: the {cloud} region to deploy to")
    if not platform.region_pattern.fullmatch(region):
        raise ConfigError(
            platform.region_key, f"{region!r} is not a {cloud} region name ({platform.region_example})"
        )
    return region


def _check_environment(key: str, raw: Mapping[str, Any]) -> Mapping[str, str]:
    env: dict[str, str] = {}
    for name, value in raw.items():
        sub = f"{key}.{name}"
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError(sub, "is not an environment variable name (A-Z, 0-9 and _)")
        if name in (*COMMON_ENV_KEYS, ENV_SIGNING_PUBLIC_KEY, *ENV_API_TOKENS) or name.startswith(
            ("AWS_", "AZURE_", "GOOGLE_", "K_", "CLOUD_RUN_")
        ):
            raise ConfigError(sub, "is set by this program or the platform; it cannot be overridden here")
        if _SECRET_NAME.search(name):
            raise ConfigError(
                sub,
                "looks like a secret: plain stack configuration is no place for it; use the cloud's identity",
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(sub, f"must be a string or a number, not {value!r}")
        env[name] = str(value)
    return MappingProxyType(env)


def _check_size(cloud: CloudName, size: Size) -> None:
    """The platform's own CPU/memory rules; errors name the key to change."""
    if abs(size.cpu_milli - size.cpu * 1000) > 1e-6:
        raise size.cpu_error(f"{fmt(size.cpu)} vCPU is finer than a thousandth of a vCPU")
    if abs(size.memory_mib - size.memory_gib * 1024) > 1e-6:
        raise size.memory_error(f"{fmt(size.memory_gib)} GiB is not a whole number of MiB")
    PLATFORMS[cloud].check_size(size)


def parse_endpoint_spec(cloud: CloudName, raw: object, region: str | None, *, namespace: str) -> EndpointSpec:
    """The endpoint for ``cloud`` from the ``endpoint`` object and the region; pure, raises
    ConfigError naming the key."""
    obj = ConfigObject(f"{namespace}:endpoint", raw)
    raw_image = obj.optional("image")
    image = None if raw_image is None else _check_image(obj.sub("image"), raw_image)
    raw_public_name = obj.optional("public_name")
    public_name = None if raw_public_name is None else check_hostname(obj.sub("public_name"), raw_public_name)
    model_name = obj.required("model_name")
    if not _MODEL_NAME.fullmatch(model_name):
        raise ConfigError(obj.sub("model_name"), f"{model_name!r} is not a model name ([a-z0-9][a-z0-9._-]*)")
    port = obj.integer("port", DEFAULT_PORT, low=1, high=65535)
    cpu = obj.number("cpu", DEFAULT_CPU)
    memory = obj.number("memory", DEFAULT_MEMORY_GIB)
    min_instances = obj.integer("min_instances", DEFAULT_MIN_INSTANCES, low=0, high=MAX_INSTANCES_LIMIT)
    max_instances = obj.integer("max_instances", DEFAULT_MAX_INSTANCES, low=1, high=MAX_INSTANCES_LIMIT)
    if min_instances > max_instances:
        raise ConfigError(
            obj.sub("min_instances"), f"{min_instances} is more than max_instances ({max_instances})"
        )
    if cloud == "aws" and min_instances < 1:
        raise ConfigError(
            obj.sub("min_instances"),
            "must be at least 1 on AWS: ECS target tracking cannot scale a service out from zero tasks",
        )
    concurrency = obj.integer("concurrency", DEFAULT_CONCURRENCY, low=1, high=MAX_CONCURRENCY)
    liveness = check_path(obj.sub("liveness_path"), obj.string("liveness_path", DEFAULT_LIVENESS_PATH))
    readiness = check_path(obj.sub("readiness_path"), obj.string("readiness_path", DEFAULT_READINESS_PATH))
    reload_s = obj.integer("model_reload_interval_s", DEFAULT_RELOAD_INTERVAL_S, low=1)
    cache_dir = obj.string("model_cache_dir", DEFAULT_CACHE_DIR)
    if not cache_dir.startswith("/"):
        raise ConfigError(obj.sub("model_cache_dir"), f"must be an absolute path, not {cache_dir!r}")
    environment = _check_environment(obj.sub("environment"), obj.mapping("environment"))
    public_key = obj.optional("signing_public_key")
    obj.done()
    if public_key is not None and not _PUBLIC_KEY_PEM.fullmatch(public_key):
        hint = " (that is a private key: never put one in a stack file)" if "PRIVATE" in public_key else ""
        raise ConfigError(obj.sub("signing_public_key"), f"must be a PEM public key (BEGIN PUBLIC KEY){hint}")
    _check_size(cloud, Size(cpu, memory, concurrency, namespace))
    return EndpointSpec(
        cloud=cloud,
        region=_check_region(cloud, region),
        image=image,
        model_name=model_name,
        public_name=public_name,
        port=port,
        cpu=cpu,
        memory_gib=memory,
        min_instances=min_instances,
        max_instances=max_instances,
        concurrency=concurrency,
        liveness_path=liveness,
        readiness_path=readiness,
        reload_interval_s=reload_s,
        cache_dir=cache_dir,
        environment=environment,
        signing_public_key=public_key,
    )
