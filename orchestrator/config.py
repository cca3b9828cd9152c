"""``orchestrator.yaml``: one file, validated on load, every error naming the key at fault.

The file is found by ``--config``, else ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.yaml``.
Clouds are keyed by the same names in every layer (``aws``, ``gcp``, ``azure``); a cloud's
``storage`` is a bucket URI (``s3://``, ``gs://``, ``az://``, ``file://``) and ``storage_settings``
holds backend options such as an emulator's ``endpoint_url`` (never credentials: those come from each
cloud's usual source). Every key is documented in the README; defaults say why they are what they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.allowed_endpoints import check_allowed_endpoints
from orchestrator.errors import ConfigError
from orchestrator.types import CLOUDS, CloudName

__all__ = [
    "CLOUDS",
    "CloudConfig",
    "Config",
    "HealthConfig",
    "ModelConfig",
    "RoutingConfig",
    "find_config",
    "load_config",
]

DEFAULT_PATH = Path("orchestrator.yaml")
# Keys that would put a secret into a file that gets committed; refused with a pointer instead.
_SECRET_SETTINGS = frozenset(
    {"connection_string", "account_key", "secret_access_key", "sas_token", "credentials"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="the model's name in every bucket")
    version: str | None = Field(
        default=None, description="pin: endpoints must serve this version, not LATEST"
    )


class SizeConfig(_Strict):
    """What one instance of the endpoint has; pricing needs it. Defaults: the Pulumi stacks' defaults."""

    vcpu: float = Field(default=1.0, gt=0)
    memory_gib: float = Field(default=2.0, gt=0)
    concurrency: int = Field(default=80, ge=1, description="requests one instance serves at once")


class CloudConfig(_Strict):
    storage: str | None = Field(default=None, description="bucket URI holding models/<name>/...")
    storage_settings: dict[str, str] = Field(default_factory=dict)
    endpoint: str | None = Field(default=None, description="the endpoint's base URL")
    registry: str | None = Field(default=None, description="where `orchestrator image push` puts the image")
    region: str | None = None
    capacity_rps: float = Field(default=100.0, gt=0, description="requests/s the cloud's deployment carries")
    size: SizeConfig = Field(default_factory=SizeConfig)
    price: dict[str, float | str] = Field(
        default_factory=dict, description="overrides of the packaged price table"
    )
    min_weight: int = Field(default=0, ge=0, le=100)
    max_weight: int = Field(default=100, ge=0, le=100)

    @field_validator("storage")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("s3://", "gs://", "az://", "file://", "/")):
            raise ValueError(f"{value!r} is not a bucket URI (s3://, gs://, az:// or file://)")
        return value

    @field_validator("storage_settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        if secret := _SECRET_SETTINGS & value.keys():
            raise ValueError(
                f"{sorted(secret)} must not be written in the configuration file; use the cloud's "
                "usual credential source (AZURE_STORAGE_CONNECTION_STRING, AWS profiles, ADC)"
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _weights(self) -> CloudConfig:
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight {self.min_weight} is above max_weight {self.max_weight}")
        return self


class HealthConfig(_Strict):
    # 5 s between probes and 2 failures to go down: a dead cloud leaves routing within ~12 s,
    # against 30 s or more for DNS health checks, while one lost packet never flips anything.
    interval_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    unhealthy_threshold: int = Field(default=2, ge=1)
    # Coming back needs more evidence than going down (hysteresis), so a flapping cloud stays out.
    healthy_threshold: int = Field(default=3, ge=1)
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="fraction of the interval, +/-")
    startup_grace_s: float = Field(default=30.0, ge=0, description="'not ready' is not a failure this long")
    hold_down_s: float = Field(default=30.0, ge=0, description="wait before readmitting; doubles per flap")
    max_hold_down_s: float = Field(default=600.0, ge=0)
    latency_window: int = Field(default=20, ge=1, description="canary latencies kept per cloud for the p95")
    rollout_grace_s: float = Field(
        default=120.0,
        ge=0,
        description="after LATEST moves, the previous version still counts as healthy this long "
        "(endpoints reload on their own interval)",
    )


class Route53Config(_Strict):
    hosted_zone_id: str
    record_name: str
    ttl: int = Field(default=10, ge=0)
    endpoint_url: str | None = None
    region: str | None = None


class FileRoutingConfig(_Strict):
    path: Path = Path(".orchestrator/routing.json")


class TrafficConfig(_Strict):
    """The expected load: what the cost model prices. Defaults: one-row digits predictions."""

    requests_per_s: float = Field(default=50.0, gt=0)
    request_bytes: float = Field(default=600.0, ge=0)
    response_bytes: float = Field(default=400.0, ge=0)
    cpu_ms_per_request: float = Field(default=0.3, ge=0, description="measured: a one-row prediction")


BackendKind = Literal["file", "route53"]


class RoutingConfig(_Strict):
    # One backend, or several applied in order (e.g. [route53, file]: DNS for clients, and a
    # routing table for a proxy); the first one is read back as "the weights in effect".
    backend: BackendKind | list[BackendKind] = "file"
    file: FileRoutingConfig = Field(default_factory=FileRoutingConfig)
    route53: Route53Config | None = None
    latency_slo_ms: float = Field(default=250.0, gt=0)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)

    @property
    def backends(self) -> list[BackendKind]:
        return [self.backend] if isinstance(self.backend, str) else list(self.backend)

    @model_validator(mode="after")
    def _backend_settings(self) -> RoutingConfig:
        kinds = self.backends
        if not kinds:
            raise ValueError("backend: name at least one of file, route53")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"backend: {kinds} names a backend twice")
        if "route53" in kinds and self.route53 is None:
            raise ValueError(
                "backend is route53 but routing.route53 (hosted_zone_id, record_name) is missing"
            )
        return self


class StateConfig(_Strict):
    path: str = Field(
        default=".orchestrator/state.db",
        description="a SQLite file, or an object store document (s3://, gs://, az://; conditional writes)",
    )
    settings: dict[str, str] = Field(default_factory=dict, description="storage settings for an object store")

    @field_validator("settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        return CloudConfig._no_secrets(value)


class Config(_Strict):
    model: ModelConfig
    clouds: dict[CloudName, CloudConfig] = Field(min_length=1)
    health: HealthConfig = Field(default_factory=HealthConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    source: str | None = Field(default=None, exclude=True)

    def endpoints(self) -> dict[str, str]:
        """Every cloud's endpoint; a cloud without one is a ConfigError naming its key."""
        missing = [name for name, cloud in self.clouds.items() if not cloud.endpoint]
        if missing:
            keys = ", ".join(f"clouds.{name}.endpoint" for name in missing)
            raise ConfigError(
                f"{self.source or 'configuration'}: {keys} missing (health and routing need it)"
            )
        return {name: cloud.endpoint for name, cloud in self.clouds.items() if cloud.endpoint}

    def cloud(self, name: str) -> CloudConfig:
        if name not in self.clouds:
            configured = ", ".join(self.clouds) or "none"
            raise ConfigError(
                f"{self.source or 'configuration'}: cloud {name!r} is not configured ({configured})"
            )
        return self.clouds[name]


def find_config(path: str | Path | None) -> str:
    """``--config``, else ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.yaml``: a path or an object URI."""
    if path is not None:
        return str(path)
    return os.environ.get("ORCHESTRATOR_CONFIG") or str(DEFAULT_PATH)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError naming the file and the key.

    The file may be an object (``s3://bucket/orchestrator/orchestrator.yaml``, ``gs://``, ``az://``):
    that is how the scheduled job reads it in the cloud, with the cloud's own credentials and no
    local disk.
    """
    source = find_config(path)
    raw_text = _read(source)
    try:
        raw: Any = yaml.safe_load(raw_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        config = Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {key}: {first['msg']}") from None
    if state := os.environ.get("ORCHESTRATOR_STATE"):
        # One file serves every cloud's job; each job keeps its state where its stack says. The
        # file's state.settings still apply to a store of the same kind (same URI scheme).
        same_kind = _scheme(state) == _scheme(config.state.path)
        settings = config.state.settings if same_kind else {}
        config = config.model_copy(update={"state": StateConfig(path=state, settings=settings)})
    check_allowed_endpoints(config, os.environ)  # only the endpoints the stacks exported (if listed)
    return config


def _scheme(location: str) -> str:
    scheme, sep, _ = location.partition("://")
    return scheme if sep else "file"


def _read(source: str) -> str:
    if source.startswith(("s3://", "gs://", "az://")):
        from orchestrator.errors import NotFound
        from orchestrator.storage import open_storage

        root, _, key = source.rpartition("/")
        try:
            return open_storage(root).get(key).decode()
        except NotFound:
            raise ConfigError(f"{source}: configuration object not found") from None
    try:
        return Path(source).read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: configuration file not found (pass --config or set ORCHESTRATOR_CONFIG)"
        ) from None
