"""The stack configuration: one typed, validated object per stack, read once at program start.

- :class:`EndpointSpec`, the cloud-neutral endpoint every cloud stack deploys (image, port, size,
  scaling, probes, environment, model), from ``ml-orchestrator:endpoint`` plus the region.
- :class:`AwsOptions`, :class:`GcpOptions`, :class:`AzureOptions`: what only one cloud needs,
  from ``ml-orchestrator:aws`` / ``:gcp`` / ``:azure``.
- :class:`DnsSpec`: the weighted record in front of the clouds, from ``ml-orchestrator:dns``.
- :class:`HealthJobSpec`: the scheduled ``orchestrator health --once`` job a cloud stack may run,
  from ``ml-orchestrator:health_job`` (schedule in :mod:`infra.schedule`).

The region is the provider's own key (``aws:region``, ``gcp:region``, ``azure-native:location``)
so the provider and this program cannot disagree about it. The stack's kind comes from
``ml-orchestrator:cloud``, defaulting to the stack's name.

Validation is pure (``parse_*`` take plain mappings) and complete before any resource exists:
a bad value raises :class:`ConfigError` naming the full key (``ml-orchestrator:endpoint.cpu``),
what is wrong, and what would be accepted. Sizes are validated against each platform's own
rules (Fargate's fixed CPU/memory pairs, Cloud Run's CPU/memory bounds, Container Apps' 1:2
ratio), so a stack that would only fail halfway through ``pulumi up`` fails here instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, cast

import pulumi

from infra.specs import schedule

__all__ = [
    "CLOUDS",
    "REGION_KEYS",
    "AwsOptions",
    "AzureOptions",
    "Cloud",
    "ConfigError",
    "DnsSpec",
    "EndpointSpec",
    "GcpOptions",
    "HealthJobSpec",
    "Probe",
    "Route53Target",
    "load_aws_options",
    "load_azure_options",
    "load_dns_spec",
    "load_endpoint_spec",
    "load_gcp_options",
    "load_health_job_spec",
    "parse_aws_options",
    "parse_azure_options",
    "parse_dns_spec",
    "parse_endpoint_spec",
    "parse_gcp_options",
    "parse_health_job_spec",
    "stack_kind",
]

Cloud: TypeAlias = Literal["aws", "gcp", "azure"]
StackKind: TypeAlias = Literal["aws", "gcp", "azure", "dns"]
# The same cloud keys as the orchestrator (orchestrator.types.CLOUDS) and Route 53's SetIdentifier.
CLOUDS: Final[tuple[Cloud, ...]] = ("aws", "gcp", "azure")

# Where each cloud's region lives: the provider's own configuration key.
REGION_KEYS: Final[Mapping[Cloud, str]] = MappingProxyType(
    {"aws": "aws:region", "gcp": "gcp:region", "azure": "azure-native:location"}
)
_REGION_FORMATS: Final[Mapping[Cloud, tuple[re.Pattern[str], str]]] = MappingProxyType(
    {
        # us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5
        "aws": (re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}"), "like us-east-1"),
        # us-central1, europe-west4, northamerica-northeast1 (a zone such as us-central1-a is not a region)
        "gcp": (re.compile(r"[a-z]+-[a-z]+\d{1,2}"), "like us-central1"),
        # westeurope, eastus2: Azure's canonical names, not display names such as "West Europe"
        "azure": (re.compile(r"[a-z]+[a-z0-9]*"), "a lowercase name like westeurope or eastus2"),
    }
)

# The endpoint's own defaults (README, `orchestrator serve`): port 8080, liveness /healthz,
# readiness /readyz (200 only once a verified model reproduced its canary), cache under /tmp,
# which is writable for the image's non-root user.
DEFAULT_PORT: Final = 8080
DEFAULT_LIVENESS_PATH: Final = "/healthz"
DEFAULT_READINESS_PATH: Final = "/readyz"
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
COMMON_ENV_KEYS: Final = ("MODEL_URI", "PORT", "HOST", "MODEL_RELOAD_INTERVAL_S", "MODEL_CACHE_DIR")
# With endpoint.signing_public_key: the endpoint serves only versions signed by its private key.
SIGNING_ENV_KEY: Final = "MODEL_SIGNING_PUBLIC_KEY"
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
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")

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

# Fargate accepts only these pairs: vCPU -> allowed memory in GiB (AWS ECS developer guide,
# "Task CPU and memory").
FARGATE_SIZES: Final[Mapping[float, tuple[float, ...]]] = MappingProxyType(
    {
        0.25: (0.5, 1.0, 2.0),
        0.5: (1.0, 2.0, 3.0, 4.0),
        1.0: tuple(float(g) for g in range(2, 9)),
        2.0: tuple(float(g) for g in range(4, 17)),
        4.0: tuple(float(g) for g in range(8, 31)),
        8.0: tuple(float(g) for g in range(16, 61, 4)),
        16.0: tuple(float(g) for g in range(32, 121, 8)),
    }
)
# Cloud Run (services, second generation): whole vCPUs from this set, or 0.08 to 1 in 0.001
# steps with concurrency 1; memory 512 MiB to 32 GiB, and more memory needs more vCPUs.
CLOUD_RUN_WHOLE_CPUS: Final = (1, 2, 4, 6, 8)
CLOUD_RUN_MEMORY_MIB: Final = (512, 32 * 1024)
# memory above X GiB needs at least Y vCPU
CLOUD_RUN_MIN_CPU_FOR_MEMORY: Final = ((24, 8), (16, 6), (8, 4), (4, 2))
# Y vCPU needs at least X GiB
CLOUD_RUN_MIN_MEMORY_FOR_CPU: Final = ((6, 4), (4, 2))
# Container Apps, Consumption workload profile: 0.25 to 4 vCPU in 0.25 steps, memory exactly
# twice the vCPUs in GiB.
CONTAINER_APPS_CPU_STEP_MILLI: Final = 250
CONTAINER_APPS_MAX_CPU: Final = 4.0
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS: Final = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
# Route 53 weights are 0..255; a record set's TTL should stay low enough that a weight change
# reaches clients within the orchestrator's failover budget (AWS advises <= 60 s with health checks).
MAX_WEIGHT: Final = 255
MAX_DNS_TTL: Final = 300
DEFAULT_DNS_TTL: Final = 10  # the orchestrator's route53 backend default (DEFAULT_TTL)
# Route 53 health checks probe every 30 s (standard) or 10 s (fast, billed extra).
HEALTH_CHECK_INTERVALS: Final = (10, 30)

# The health job. Every minute by default: the finest grain all three schedulers offer, and the
# orchestrator's thresholds (a few failed probes in one round) then bound detection at about a
# minute. The same schedule in each cloud's own dialect (infra/schedule.py).
DEFAULT_JOB_SCHEDULES: Final[Mapping[Cloud, str]] = MappingProxyType(
    {"aws": "rate(1 minute)", "gcp": "* * * * *", "azure": "* * * * *"}
)
HEALTH_COMMAND: Final = ("orchestrator", "health", "--once")
APPLY_FLAG: Final = "--apply"
# Where the job's configuration and state live in its own control bucket (the job reads the
# configuration and writes the state object only; operators upload the configuration). Not the
# model bucket: whoever publishes models must not be able to change what the job probes and routes.
DEFAULT_JOB_CONFIG_PATH: Final = "orchestrator/orchestrator.yaml"
DEFAULT_JOB_STATE_PATH: Final = "orchestrator/state.json"
_MODELS_PREFIX: Final = "models/"
# A round that has not finished in two minutes is stuck (probes time out in seconds): Cloud Run
# and Container Apps kill it rather than let runs pile up. ECS has no task timeout; there the
# orchestrator's own probe timeouts bound a round.
JOB_TIMEOUT_S: Final = 120
# What the job's container is told (the orchestrator reads both as URIs; see infra/README.md).
JOB_ENV_KEYS: Final = ("ORCHESTRATOR_CONFIG", "ORCHESTRATOR_STATE")
# The endpoints the job may probe and route to (JSON cloud -> URL): its own stack's, and the other
# clouds' from health_job.endpoints. A configuration naming any other endpoint is refused.
JOB_ENDPOINTS_ENV: Final = "ORCHESTRATOR_ENDPOINTS"
_ENDPOINT_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
# GCP and Azure jobs that apply routing read AWS credentials for Route 53 from their secret
# store, mounted as a shared-credentials file (boto3 reads AWS_SHARED_CREDENTIALS_FILE).
AWS_CREDENTIALS_DIR: Final = "/secrets/aws"
AWS_CREDENTIALS_NAME: Final = "credentials"
AWS_CREDENTIALS_FILE: Final = f"{AWS_CREDENTIALS_DIR}/{AWS_CREDENTIALS_NAME}"
_OBJECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_GCP_SECRET = re.compile(r"(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/secrets/)?[A-Za-z0-9_-]{1,255}")
_KEY_VAULT_SECRET = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w().-]{1,90}"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<vault>[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])"
    r"/secrets/(?P<secret>[A-Za-z0-9-]{1,127})",
    re.IGNORECASE,
)


class ConfigError(pulumi.RunError):
    """A stack configuration value is missing or invalid; ``key`` is the full configuration key.

    A ``RunError``: Pulumi prints its message alone, without a traceback.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"configuration {key}: {message}")
        self.key = key


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

    cloud: Cloud
    region: str
    image: str  # repository@sha256:<64 hex>, as configured
    model_name: str
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
    def digest(self) -> str:
        """``sha256:<hex>``: the same in every cloud's registry, since a copy keeps the manifest."""
        return self.image.rpartition("@")[2]

    @property
    def image_name(self) -> str:
        """The repository's last path component (``ml-endpoint``): the name in each cloud's registry."""
        name = self.image.rpartition("@")[0].rpartition("/")[2]
        return name.partition(":")[0]

    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * 1000)

    @property
    def memory_mib(self) -> int:
        return round(self.memory_gib * 1024)

    @property
    def model_key(self) -> str:
        """The LATEST pointer's key in a bucket (README, "Every bucket holds the same layout")."""
        return f"models/{self.model_name}/LATEST"

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
            "MODEL_URI": model_uri,
            "PORT": str(self.port),
            # Listen on every interface of the container's own network namespace: the platform's
            # load balancer reaches it from outside the container.
            "HOST": "0.0.0.0",  # noqa: S104
            "MODEL_RELOAD_INTERVAL_S": str(self.reload_interval_s),
            "MODEL_CACHE_DIR": self.cache_dir,
        }
        if self.signing_public_key is not None:
            env[SIGNING_ENV_KEY] = self.signing_public_key
        env.update(self.environment)
        return env


@dataclass(frozen=True)
class AwsOptions:
    """What only the AWS stack needs (``ml-orchestrator:aws``)."""

    # HTTPS on the load balancer: an ACM certificate in the stack's region and the name it covers.
    certificate_arn: str | None = None
    domain: str | None = None
    # With a Route 53 zone for ``domain``, an alias record points it at the load balancer.
    hosted_zone_id: str | None = None
    # Without both, the account's default VPC and its default subnets.
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    log_retention_days: int = 30
    # ECS service autoscaling keeps average CPU near this; predictions are CPU-bound and the ALB
    # has no in-flight-requests metric to match Cloud Run's and Container Apps' concurrency.
    target_cpu_percent: int = 60

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None


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


@dataclass(frozen=True)
class AzureOptions:
    """What only the Azure stack needs (``ml-orchestrator:azure``)."""

    container: str = "models"
    log_retention_days: int = 30


@dataclass(frozen=True)
class Route53Target:
    """The weighted record the AWS health job may change: its zone and name, nothing else."""

    zone_id: str
    record_name: str  # without the trailing dot, lowercase (as Route 53 normalizes it)


@dataclass(frozen=True)
class HealthJobSpec:
    """The scheduled health job of one cloud stack (``ml-orchestrator:health_job``)."""

    cloud: Cloud
    enabled: bool = False
    schedule: str = "* * * * *"  # in this cloud's scheduler's dialect, as deployed
    # --apply: the job moves Route 53 weights. The AWS job does with its own role; GCP and Azure
    # jobs need AWS credentials from their secret store (aws_credentials_secret).
    apply: bool = False
    config_path: str = DEFAULT_JOB_CONFIG_PATH
    state_path: str = DEFAULT_JOB_STATE_PATH
    route53: Route53Target | None = None  # AWS only: what the job role may change
    # GCP: a Secret Manager secret (NAME or projects/P/secrets/NAME); Azure: a Key Vault secret's
    # resource id. Holds an AWS shared-credentials file ([default] with a key pair).
    aws_credentials_secret: str | None = None
    # The other clouds' endpoint URLs (their stacks' endpoint_url outputs); the job's own cloud's
    # comes from its own stack. Together: ORCHESTRATOR_ENDPOINTS, the only endpoints it accepts.
    endpoints: Mapping[Cloud, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def command(self) -> tuple[str, ...]:
        """The container's full argv (entrypoint and arguments: the image's own are replaced)."""
        return (*HEALTH_COMMAND, APPLY_FLAG) if self.apply else HEALTH_COMMAND

    @property
    def key_vault_secret_url(self) -> str | None:
        """Azure: the versionless Key Vault URL of ``aws_credentials_secret`` (the latest version
        is read whenever a replica starts), in the public cloud's vault DNS zone."""
        match = _KEY_VAULT_SECRET.fullmatch(self.aws_credentials_secret or "")
        if match is None:
            return None
        return f"https://{match['vault'].lower()}.vault.azure.net/secrets/{match['secret']}"

    def uris(self, control_root: pulumi.Input[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """``(config URI, state URI)`` under the job's own control bucket root (``s3://bucket``):
        not the model bucket, which publishers write."""
        return (
            pulumi.Output.concat(control_root, "/", self.config_path),
            pulumi.Output.concat(control_root, "/", self.state_path),
        )

    def allowed_endpoints(self, own_endpoint: pulumi.Input[str]) -> pulumi.Output[str]:
        """``ORCHESTRATOR_ENDPOINTS``: JSON ``{cloud: URL}``, this stack's endpoint plus the others."""
        return pulumi.Output.from_input(own_endpoint).apply(
            lambda url: json.dumps({**dict(self.endpoints), self.cloud: url}, sort_keys=True)
        )

    def container_env(
        self, control_root: pulumi.Input[str], own_endpoint: pulumi.Input[str]
    ) -> dict[str, pulumi.Input[str]]:
        """:data:`JOB_ENV_KEYS` and :data:`JOB_ENDPOINTS_ENV`; clouds add only what their identity
        needs (documented there)."""
        env: dict[str, pulumi.Input[str]] = dict(zip(JOB_ENV_KEYS, self.uris(control_root), strict=True))
        env[JOB_ENDPOINTS_ENV] = self.allowed_endpoints(own_endpoint)
        return env

    def export(self, control_root: pulumi.Input[str] | None) -> dict[str, Any]:
        """The stack's ``health_job`` output: where config and state live (None while the job, and
        so its control bucket, does not exist), and what runs when."""
        config_uri, state_uri = self.uris(control_root) if control_root is not None else (None, None)
        return {
            "enabled": self.enabled,
            "schedule": self.schedule if self.enabled else None,
            "command": list(self.command) if self.enabled else None,
            "config_uri": config_uri,
            "state_uri": state_uri,
        }


@dataclass(frozen=True)
class DnsSpec:
    """The weighted record in front of the clouds (``ml-orchestrator:dns``)."""

    zone_id: str
    record_name: str  # without the trailing dot
    weights: Mapping[Cloud, int]  # initial weights; the orchestrator owns them afterwards
    stacks: Mapping[Cloud, str]  # fully qualified stack names for StackReference
    ttl: int = DEFAULT_DNS_TTL
    request_interval_s: int = 30
    failure_threshold: int = 3

    @property
    def clouds(self) -> tuple[Cloud, ...]:
        return tuple(c for c in CLOUDS if c in self.weights)


# --- reading ---------------------------------------------------------------------------------

_REQUIRED: Final = object()


class _Object:
    """A configuration object's fields, read once each, with the full key in every error."""

    def __init__(self, key: str, raw: object) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(key, f"must be an object, not {type(raw).__name__}")
        self.key = key
        self._raw: Mapping[str, Any] = raw
        self._seen: set[str] = set()

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}"

    def _get(self, name: str, default: object) -> Any:
        self._seen.add(name)
        value = self._raw.get(name)
        if value is None or value == "":
            if default is _REQUIRED:
                raise ConfigError(self.sub(name), "is required")
            return default
        return value

    def required(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, str):
            raise ConfigError(self.sub(name), f"must be a string, not {value!r}")
        return value

    def optional(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.sub(name), f"must be a string, not {value!r}")
        return value

    def string(self, name: str, default: str) -> str:
        value = self.optional(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.sub(name), f"must be true or false, not {value!r}")
        return value

    def integer(self, name: str, default: object = _REQUIRED, *, low: int, high: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.sub(name), f"must be an integer, not {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(self.sub(name), f"must be {bounds}, not {value}")
        return value

    def number(self, name: str, default: object = _REQUIRED) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(self.sub(name), f"must be a positive number, not {value!r}")
        return float(value)

    def strings(self, name: str, default: Sequence[str]) -> tuple[str, ...]:
        value = self._get(name, None)
        if value is None:
            return tuple(default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(self.sub(name), f"must be a list of strings, not {value!r}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise ConfigError(self.sub(name), f"must be a list of strings, not {value!r}")
        return tuple(value)

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self._get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.sub(name), f"must be an object, not {value!r}")
        return value

    def done(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ConfigError(
                self.sub(unknown[0]), f"is not a known key; known: {', '.join(sorted(self._seen))}"
            )


def _check_path(key: str, value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ConfigError(key, f"must be an absolute URL path such as /readyz, not {value!r}")
    return value


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


def _check_region(cloud: Cloud, region: str | None) -> str:
    key = REGION_KEYS[cloud]
    if not region:
        raise ConfigError(key, f"is required: the {cloud} region to deploy to")
    pattern, example = _REGION_FORMATS[cloud]
    if not pattern.fullmatch(region):
        raise ConfigError(key, f"{region!r} is not a {cloud} region name ({example})")
    return region


def _check_environment(key: str, raw: Mapping[str, Any]) -> Mapping[str, str]:
    env: dict[str, str] = {}
    for name, value in raw.items():
        sub = f"{key}.{name}"
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError(sub, "is not an environment variable name (A-Z, 0-9 and _)")
        if name in (*COMMON_ENV_KEYS, SIGNING_ENV_KEY) or name.startswith(
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


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class _Size:
    """A requested size and the keys to name when a platform refuses it."""

    cpu: float
    memory_gib: float
    concurrency: int
    namespace: str

    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * 1000)

    @property
    def memory_mib(self) -> int:
        return round(self.memory_gib * 1024)

    def cpu_error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.namespace}:endpoint.cpu", message)

    def memory_error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.namespace}:endpoint.memory", message)


def _check_fargate(size: _Size) -> None:
    allowed = FARGATE_SIZES.get(size.cpu)
    if allowed is None:
        offered = ", ".join(_fmt(c) for c in FARGATE_SIZES)
        raise size.cpu_error(f"Fargate offers {offered} vCPU, not {_fmt(size.cpu)}")
    if size.memory_gib not in allowed:
        raise size.memory_error(
            f"{_fmt(size.cpu)} vCPU with {_fmt(size.memory_gib)} GiB is not a Fargate size; with "
            f"{_fmt(size.cpu)} vCPU Fargate accepts {', '.join(_fmt(m) for m in allowed)} GiB"
        )


def _check_cloud_run(size: _Size) -> None:
    cpu, memory_gib = size.cpu, size.memory_gib
    if cpu < 1:
        if size.cpu_milli < 80:
            raise size.cpu_error(f"Cloud Run needs at least 0.08 vCPU, not {_fmt(cpu)}")
        if size.concurrency != 1:
            raise ConfigError(
                f"{size.namespace}:endpoint.concurrency",
                f"Cloud Run requires concurrency 1 below 1 vCPU ({_fmt(cpu)})",
            )
        if size.memory_mib > 1024 or (cpu < 0.5 and size.memory_mib > 512):
            raise size.memory_error("Cloud Run allows at most 512 MiB below 0.5 vCPU, 1 GiB below 1")
    elif cpu not in CLOUD_RUN_WHOLE_CPUS:
        whole = ", ".join(map(str, CLOUD_RUN_WHOLE_CPUS))
        raise size.cpu_error(f"Cloud Run accepts {whole} vCPU or 0.08 to 1, not {_fmt(cpu)}")
    low, high = CLOUD_RUN_MEMORY_MIB
    if not low <= size.memory_mib <= high:
        raise size.memory_error(f"Cloud Run accepts 0.5 to 32 GiB, not {_fmt(memory_gib)}")
    for above_gib, min_cpu in CLOUD_RUN_MIN_CPU_FOR_MEMORY:
        if memory_gib > above_gib and cpu < min_cpu:
            raise size.cpu_error(
                f"Cloud Run needs at least {min_cpu} vCPU for more than {above_gib} GiB of memory"
            )
    for at_cpu, min_gib in CLOUD_RUN_MIN_MEMORY_FOR_CPU:
        if cpu >= at_cpu and memory_gib < min_gib:
            raise size.memory_error(f"Cloud Run needs at least {min_gib} GiB with {at_cpu} vCPU or more")


def _check_container_apps(size: _Size) -> None:
    if size.cpu_milli % CONTAINER_APPS_CPU_STEP_MILLI or size.cpu > CONTAINER_APPS_MAX_CPU:
        raise size.cpu_error(f"Container Apps accepts 0.25 to 4 vCPU in steps of 0.25, not {_fmt(size.cpu)}")
    if size.memory_mib != 2 * size.cpu_milli * 1024 // 1000:
        raise size.memory_error(
            f"Container Apps pairs {_fmt(size.cpu)} vCPU with exactly {_fmt(2 * size.cpu)} GiB, "
            f"not {_fmt(size.memory_gib)}"
        )


_SIZE_RULES: Final = {"aws": _check_fargate, "gcp": _check_cloud_run, "azure": _check_container_apps}


def _check_size(cloud: Cloud, size: _Size) -> None:
    """The platform's own CPU/memory rules; errors name the key to change."""
    if abs(size.cpu_milli - size.cpu * 1000) > 1e-6:
        raise size.cpu_error(f"{_fmt(size.cpu)} vCPU is finer than a thousandth of a vCPU")
    if abs(size.memory_mib - size.memory_gib * 1024) > 1e-6:
        raise size.memory_error(f"{_fmt(size.memory_gib)} GiB is not a whole number of MiB")
    _SIZE_RULES[cloud](size)


def parse_endpoint_spec(cloud: Cloud, raw: object, region: str | None, *, namespace: str) -> EndpointSpec:
    """The endpoint for ``cloud`` from the ``endpoint`` object and the region; pure."""
    obj = _Object(f"{namespace}:endpoint", raw)
    image = _check_image(obj.sub("image"), obj.required("image"))
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
    liveness = _check_path(obj.sub("liveness_path"), obj.string("liveness_path", DEFAULT_LIVENESS_PATH))
    readiness = _check_path(obj.sub("readiness_path"), obj.string("readiness_path", DEFAULT_READINESS_PATH))
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
    _check_size(cloud, _Size(cpu, memory, concurrency, namespace))
    return EndpointSpec(
        cloud=cloud,
        region=_check_region(cloud, region),
        image=image,
        model_name=model_name,
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


_ACM_ARN = re.compile(r"arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}")
_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,32}")


def _zone_id(key: str, value: str) -> str:
    zone = value.removeprefix("/hostedzone/")
    if not _ZONE_ID.fullmatch(zone):
        raise ConfigError(
            key, f"{value!r} is not a Route 53 hosted zone id (Z followed by letters and digits)"
        )
    return zone


def _hostname(key: str, value: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not _HOSTNAME.fullmatch(name):
        raise ConfigError(key, f"{value!r} is not a DNS name such as model.example.com")
    return name


def parse_aws_options(raw: object, region: str, *, namespace: str) -> AwsOptions:
    obj = _Object(f"{namespace}:aws", raw)
    certificate_arn = obj.optional("certificate_arn")
    domain = obj.optional("domain")
    hosted_zone_id = obj.optional("hosted_zone_id")
    vpc_id = obj.optional("vpc_id")
    subnet_ids = obj.strings("subnet_ids", ())
    retention = obj.integer("log_retention_days", 30, low=1)
    target_cpu = obj.integer("target_cpu_percent", 60, low=10, high=90)
    obj.done()
    if certificate_arn is not None:
        match = _ACM_ARN.fullmatch(certificate_arn)
        if match is None:
            raise ConfigError(
                obj.sub("certificate_arn"), f"{certificate_arn!r} is not an ACM certificate ARN"
            )
        if match["region"] != region:
            raise ConfigError(
                obj.sub("certificate_arn"),
                f"the certificate is in {match['region']}; a load balancer in {region} needs one from there",
            )
        if domain is None:
            raise ConfigError(
                obj.sub("domain"), "is required with certificate_arn: the name the certificate covers"
            )
    if domain is not None:
        domain = _hostname(obj.sub("domain"), domain)
        if certificate_arn is None:
            raise ConfigError(
                obj.sub("certificate_arn"), f"is required with domain ({domain}) to serve HTTPS"
            )
    if hosted_zone_id is not None:
        hosted_zone_id = _zone_id(obj.sub("hosted_zone_id"), hosted_zone_id)
        if domain is None:
            raise ConfigError(
                obj.sub("domain"), "is required with hosted_zone_id: the name to point at the ALB"
            )
    if (vpc_id is None) != (not subnet_ids):
        raise ConfigError(obj.sub("subnet_ids" if vpc_id else "vpc_id"), "vpc_id and subnet_ids go together")
    if retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            obj.sub("log_retention_days"),
            f"CloudWatch Logs accepts {', '.join(map(str, LOG_RETENTION_DAYS))} days, not {retention}",
        )
    return AwsOptions(
        certificate_arn=certificate_arn,
        domain=domain,
        hosted_zone_id=hosted_zone_id,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        log_retention_days=retention,
        target_cpu_percent=target_cpu,
    )


_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_GCP_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])")
_GCP_REPOSITORY_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_GCP_MEMBER = re.compile(
    r"allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain|principal\w*):\S+"
)


def parse_gcp_options(raw: object, project: str | None, *, namespace: str) -> GcpOptions:
    if not project:
        raise ConfigError("gcp:project", "is required: the Google Cloud project to deploy to")
    if not _GCP_PROJECT.fullmatch(project):
        raise ConfigError("gcp:project", f"{project!r} is not a project id (6 to 30 of a-z, 0-9 and -)")
    obj = _Object(f"{namespace}:gcp", raw)
    invokers = obj.strings("invokers", ("allUsers",))
    account_id = obj.string("service_account_id", "ml-endpoint")
    repository_id = obj.string("repository_id", "ml-endpoint")
    job_account_id = obj.string("health_job_account_id", "ml-health-job")
    scheduler_account_id = obj.string("health_scheduler_account_id", "ml-health-scheduler")
    obj.done()
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
    )


# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_AZURE_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def parse_azure_options(raw: object, *, namespace: str) -> AzureOptions:
    obj = _Object(f"{namespace}:azure", raw)
    container = obj.string("container", "models")
    retention = obj.integer("log_retention_days", 30, low=30, high=730)  # Log Analytics' PerGB2018 range
    obj.done()
    if not _AZURE_CONTAINER.fullmatch(container):
        raise ConfigError(obj.sub("container"), f"{container!r} is not a blob container name")
    return AzureOptions(container=container, log_retention_days=retention)


def parse_dns_spec(raw: object, *, namespace: str, organization: str, project: str) -> DnsSpec:
    obj = _Object(f"{namespace}:dns", raw)
    zone_id = _zone_id(obj.sub("zone_id"), obj.required("zone_id"))
    record_name = _hostname(obj.sub("record_name"), obj.required("record_name"))
    ttl = obj.integer("ttl", DEFAULT_DNS_TTL, low=1, high=MAX_DNS_TTL)
    raw_weights = obj.mapping("weights")
    raw_stacks = obj.mapping("stacks")
    interval = obj.integer("request_interval_s", 30, low=10, high=30)
    failure_threshold = obj.integer("failure_threshold", 3, low=1, high=10)
    obj.done()
    if interval not in HEALTH_CHECK_INTERVALS:
        raise ConfigError(obj.sub("request_interval_s"), f"Route 53 probes every 10 or 30 s, not {interval}")
    if not raw_weights:
        raise ConfigError(
            obj.sub("weights"), "must give an initial weight to at least one of aws, gcp, azure"
        )
    weights: dict[Cloud, int] = {}
    for cloud, weight in raw_weights.items():
        key = f"{obj.sub('weights')}.{cloud}"
        if cloud not in CLOUDS:
            raise ConfigError(key, f"is not a cloud; clouds are {', '.join(CLOUDS)}")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ConfigError(key, f"must be an integer from 0 to {MAX_WEIGHT}, not {weight!r}")
        weights[cloud] = weight
    if not any(weights.values()):
        # Route 53 answers all-zero groups with every record alike: never the intent.
        raise ConfigError(obj.sub("weights"), "cannot all be 0")
    stacks: dict[Cloud, str] = {}
    for cloud in weights:
        name = raw_stacks.get(cloud) or f"{organization}/{project}/{cloud}"
        if not isinstance(name, str) or name.count("/") != 2:
            raise ConfigError(f"{obj.sub('stacks')}.{cloud}", f"{name!r} is not ORGANIZATION/PROJECT/STACK")
        stacks[cloud] = name
    for cloud in raw_stacks:
        if cloud not in weights:
            raise ConfigError(f"{obj.sub('stacks')}.{cloud}", "names a stack without a weight")
    return DnsSpec(
        zone_id=zone_id,
        record_name=record_name,
        weights=MappingProxyType(weights),
        stacks=MappingProxyType(stacks),
        ttl=ttl,
        request_interval_s=interval,
        failure_threshold=failure_threshold,
    )


def _object_key(key: str, value: str) -> str:
    if not _OBJECT_KEY.fullmatch(value):
        raise ConfigError(key, f"{value!r} is not an object key such as orchestrator/state.json")
    if value.startswith(_MODELS_PREFIX):
        raise ConfigError(
            key, f"{value!r} is under {_MODELS_PREFIX}: the job must not touch where models live"
        )
    return value


def _job_schedule(cloud: Cloud, key: str, value: str) -> str:
    try:
        if cloud == "aws":
            return schedule.aws_expression(value)
        schedule.unix_cron(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return value


def _route53_target(key: str, raw: object) -> Route53Target:
    obj = _Object(key, raw)
    zone_id = _zone_id(obj.sub("zone_id"), obj.required("zone_id"))
    record_name = _hostname(obj.sub("record_name"), obj.required("record_name"))
    obj.done()
    return Route53Target(zone_id=zone_id, record_name=record_name)


def _job_endpoints(cloud: Cloud, key: str, raw: Mapping[str, Any]) -> dict[Cloud, str]:
    """``health_job.endpoints``: the other clouds' endpoint URLs, as their stacks export them."""
    endpoints: dict[Cloud, str] = {}
    for other, url in raw.items():
        sub = f"{key}.{other}"
        if other not in CLOUDS:
            raise ConfigError(sub, f"is not a cloud; clouds are {', '.join(CLOUDS)}")
        if other == cloud:
            raise ConfigError(sub, "is this stack's own endpoint: it comes from the stack itself")
        if not isinstance(url, str) or not _ENDPOINT_URL.fullmatch(url):
            raise ConfigError(sub, f"{url!r} is not an endpoint URL (the other stack's endpoint_url output)")
        endpoints[other] = url.rstrip("/")
    return endpoints


def parse_health_job_spec(cloud: Cloud, raw: object, *, namespace: str) -> HealthJobSpec:
    """The health job of the ``cloud`` stack from ``ml-orchestrator:health_job``; pure.

    Defaults: disabled; every minute; ``--apply`` on AWS only (the one cloud whose own identity
    can be granted Route 53 rights), so GCP and Azure jobs apply routing only when given AWS
    credentials through their secret store.
    """
    obj = _Object(f"{namespace}:health_job", raw)
    enabled = obj.boolean("enabled", False)
    job_schedule = _job_schedule(
        cloud, obj.sub("schedule"), obj.string("schedule", DEFAULT_JOB_SCHEDULES[cloud])
    )
    apply = obj.boolean("apply", cloud == "aws")
    config_path = _object_key(obj.sub("config_path"), obj.string("config_path", DEFAULT_JOB_CONFIG_PATH))
    state_path = _object_key(obj.sub("state_path"), obj.string("state_path", DEFAULT_JOB_STATE_PATH))
    raw_route53 = obj.mapping("route53")
    secret = obj.optional("aws_credentials_secret")
    raw_endpoints = obj.mapping("endpoints")
    obj.done()
    endpoints = _job_endpoints(cloud, obj.sub("endpoints"), raw_endpoints)
    if state_path == config_path:
        raise ConfigError(
            obj.sub("state_path"), "must differ from config_path: the job may write its state only"
        )
    route53 = None
    if cloud == "aws":
        if secret is not None:
            raise ConfigError(
                obj.sub("aws_credentials_secret"), "is for gcp and azure: the AWS job uses its task role"
            )
        if raw_route53:
            route53 = _route53_target(obj.sub("route53"), raw_route53)
        elif enabled and apply:
            raise ConfigError(
                obj.sub("route53"),
                "is required with apply: the zone_id and record_name the job's role may change",
            )
    else:
        if raw_route53:
            raise ConfigError(
                obj.sub("route53"),
                f"is for aws only: a {cloud} job changes Route 53 with the AWS credentials in "
                "aws_credentials_secret, whose own policy limits them",
            )
        if secret is not None and not apply:
            raise ConfigError(obj.sub("aws_credentials_secret"), "is only used with apply: true")
        if enabled and apply and secret is None:
            raise ConfigError(
                obj.sub("aws_credentials_secret"),
                f"is required with apply on {cloud}: Route 53 is in AWS, so the job needs AWS "
                "credentials from the secret store (or leave apply false: probe and record only)",
            )
        pattern = _GCP_SECRET if cloud == "gcp" else _KEY_VAULT_SECRET
        if secret is not None and not pattern.fullmatch(secret):
            expected = (
                "a Secret Manager secret (NAME or projects/PROJECT/secrets/NAME)"
                if cloud == "gcp"
                else "a Key Vault secret's resource id (/subscriptions/.../vaults/VAULT/secrets/NAME)"
            )
            raise ConfigError(obj.sub("aws_credentials_secret"), f"{secret!r} is not {expected}")
    return HealthJobSpec(
        cloud=cloud,
        enabled=enabled,
        schedule=job_schedule,
        apply=apply,
        config_path=config_path,
        state_path=state_path,
        route53=route53,
        aws_credentials_secret=secret,
        endpoints=MappingProxyType(endpoints),
    )


# --- from the running stack --------------------------------------------------------------------


def stack_kind() -> StackKind:
    """``ml-orchestrator:cloud``, else the stack's name: aws, gcp, azure or dns."""
    configured = pulumi.Config().get("cloud")
    kind = configured or pulumi.get_stack()
    if kind not in (*CLOUDS, "dns"):
        raise ConfigError(
            f"{pulumi.get_project()}:cloud",
            f"{kind!r} is not one of aws, gcp, azure, dns"
            + ("" if configured else " (it defaults to the stack's name; set it for other stack names)"),
        )
    return cast(StackKind, kind)


def _region(cloud: Cloud) -> str | None:
    namespace, _, key = REGION_KEYS[cloud].partition(":")
    return pulumi.Config(namespace).get(key)


def load_endpoint_spec(cloud: Cloud) -> EndpointSpec:
    return parse_endpoint_spec(
        cloud, pulumi.Config().get_object("endpoint"), _region(cloud), namespace=pulumi.get_project()
    )


def load_aws_options(spec: EndpointSpec) -> AwsOptions:
    return parse_aws_options(pulumi.Config().get_object("aws"), spec.region, namespace=pulumi.get_project())


def load_gcp_options() -> GcpOptions:
    return parse_gcp_options(
        pulumi.Config().get_object("gcp"), pulumi.Config("gcp").get("project"), namespace=pulumi.get_project()
    )


def load_azure_options() -> AzureOptions:
    return parse_azure_options(pulumi.Config().get_object("azure"), namespace=pulumi.get_project())


def load_health_job_spec(cloud: Cloud) -> HealthJobSpec:
    return parse_health_job_spec(
        cloud, pulumi.Config().get_object("health_job"), namespace=pulumi.get_project()
    )


def load_dns_spec() -> DnsSpec:
    return parse_dns_spec(
        pulumi.Config().get_object("dns"),
        namespace=pulumi.get_project(),
        organization=pulumi.get_organization(),
        project=pulumi.get_project(),
    )
