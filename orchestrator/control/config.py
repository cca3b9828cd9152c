"""``orchestrator.yaml``: one file, validated on load, every error naming the file and the key.

The file is found by ``--config``, else ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.yaml``.
Clouds are keyed by the same names in every layer (``aws``, ``gcp``, ``azure``); a cloud's
``storage`` is a bucket URI (``s3://``, ``gs://``, ``az://``, ``file://``) and ``storage_settings``
holds backend options such as an emulator's ``endpoint_url`` (never credentials: those come from each
cloud's usual source). Every key is documented in the README; defaults say why they are what they are.

Everything a later command would refuse is refused here, once, by :func:`load_config` (so by
``orchestrator config check`` too), as one ``FILE: key.path: message`` line:

- the file itself (:mod:`orchestrator.control.config_file`): missing, unreadable, over
  :data:`MAX_CONFIG_BYTES`, not UTF-8 text, not YAML, a duplicate key, aliases that expand past
  :data:`MAX_CONFIG_NODES` nodes (a "billion laughs"), not a mapping at the top;
- every value: types, unknown keys, finite numbers only (``.inf`` and ``.nan`` are refused
  everywhere), and bounds that keep one health round short (the maxima below, with their reasons);
- what only makes sense together: model and version grammar, endpoint URLs with a host and no
  credentials, bucket URIs and their settings, the Route 53 record name, the price overrides, the
  state location (also from ``$ORCHESTRATOR_STATE``); the checks shared by several keys, and those
  across keys, are in :mod:`orchestrator.control.config_checks`.

No message repeats a value that could be a secret: a URL with credentials is named, not quoted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.control.allowed_endpoints import check_allowed_endpoints
from orchestrator.control.config_access import AuthConfig, PublicEndpointConfig
from orchestrator.control.config_checks import (
    MAX_URL_LENGTH,
    check_settings,
    check_state_location,
    check_together,
    check_url,
)
from orchestrator.control.config_drift import DriftConfig
from orchestrator.control.config_file import MAX_CONFIG_BYTES, MAX_CONFIG_NODES, parse_yaml, read_text
from orchestrator.control.config_vantage import VantageConfig, resolve_vantage
from orchestrator.core.contract import POINTER, CloudName
from orchestrator.core.errors import ConfigError
from orchestrator.core.names import CHANNEL_PATTERN, NAME_PATTERN

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_NODES",
    "MAX_URL_LENGTH",
    "CloudConfig",
    "Config",
    "DriftConfig",
    "HealthConfig",
    "ModelConfig",
    "RoutingConfig",
    "check_settings",
    "check_state_location",
    "check_together",
    "check_url",
    "find_config",
    "load_config",
    "parse_yaml",
]

# Where `config from-stacks --out` is told to write it, and where commands look without --config.
DEFAULT_PATH = Path("orchestrator.yaml")
# Bounds that keep one health round bounded (README, "Configuration reference"). A probe of an
# endpoint that has not answered within 10 s is a failed probe whatever the SLO; more than 10
# consecutive probes before acting makes failover slower than any DNS health check; probing less
# often than every 5 minutes is a schedule for cron (`health --once`), not a watch.
MAX_TIMEOUT_S = 10.0
MAX_INTERVAL_S = 300.0
MAX_THRESHOLD = 10
# And from below: a probe is three HTTP requests, a canary prediction alone takes milliseconds, so
# a deadline under 50 ms fails every endpoint, even on loopback; probing more than ten times a
# second only loads the endpoints (clients follow DNS answers cached for seconds anyway).
MIN_TIMEOUT_S = 0.05
MIN_INTERVAL_S = 0.1
# A day: longer grace or hold-down periods keep a cloud out (or in) past any incident.
MAX_PERIOD_S = 86_400.0
MAX_LATENCY_WINDOW = 1000
# A request that takes a minute is not served; an SLO above it is a typo.
MAX_SLO_MS = 60_000.0
# Route 53 accepts up to 2^31 - 1 s, but clients cache an answer for the TTL: above a day,
# failover by DNS stops meaning anything.
MAX_TTL_S = 86_400
# Far above any deployment this project prices (the largest instances, the busiest services):
# the bounds only catch typos and overflows, such as 1e308.
MAX_RATE = 1e7
MAX_BYTES = 1e9
MAX_VCPU = 64.0
MAX_MEMORY_GIB = 1024.0
MAX_CONCURRENCY = 10_000


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf` and `.nan` are valid YAML floats, and nothing here means them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(_Strict):
    """``model``: which model every cloud serves, and optionally the version pinned."""

    name: str = Field(pattern=NAME_PATTERN, description="the model's name in every bucket")
    version: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="pin: endpoints must serve this version, not LATEST"
    )
    channel: str = Field(
        default=POINTER,
        pattern=CHANNEL_PATTERN,
        description="the channel every endpoint follows (its MODEL_URI's models/<name>/<CHANNEL>)",
    )


class SizeConfig(_Strict):
    """What one instance of the endpoint has; pricing needs it. Defaults: the Pulumi stacks' defaults."""

    vcpu: float = Field(default=1.0, gt=0, le=MAX_VCPU)
    memory_gib: float = Field(default=2.0, gt=0, le=MAX_MEMORY_GIB)
    concurrency: int = Field(
        default=80, ge=1, le=MAX_CONCURRENCY, description="requests one instance serves at once"
    )


class CloudConfig(_Strict):
    """``clouds.<cloud>``: one cloud's bucket, endpoint, registry, capacity, size and prices."""

    storage: str | None = Field(default=None, description="bucket URI holding models/<name>/...")
    storage_settings: dict[str, str] = Field(default_factory=dict)
    endpoint: str | None = Field(default=None, description="the endpoint's base URL")
    registry: str | None = Field(default=None, description="where `orchestrator image push` puts the image")
    region: str | None = Field(default=None, max_length=64)
    capacity_rps: float = Field(
        default=100.0, gt=0, le=MAX_RATE, description="requests/s the cloud's deployment carries"
    )
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
        if value is not None:
            from orchestrator.core.storage import parse_uri

            try:
                parse_uri(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("storage_settings")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_settings(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not (value and value.isprintable() and value == "".join(value.split())):
            raise ValueError("a region name is one word of printable characters")
        return value

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None:
            return value
        check_url(value, what="the endpoint")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _weights(self) -> CloudConfig:
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight {self.min_weight} is above max_weight {self.max_weight}")
        return self


class HealthConfig(_Strict):
    """``health``: how probes run and how many it takes to flip (bounded: README, reference)."""

    # 5 s between probes and 2 failures to go down: a dead cloud leaves routing within ~12 s,
    # against 30 s or more for DNS health checks, while one lost packet never flips anything.
    interval_s: float = Field(default=5.0, ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)
    # One total deadline per probe (its three requests, connect to last byte).
    timeout_s: float = Field(default=2.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    unhealthy_threshold: int = Field(default=2, ge=1, le=MAX_THRESHOLD)
    # Coming back needs more evidence than going down (hysteresis), so a flapping cloud stays out.
    healthy_threshold: int = Field(default=3, ge=1, le=MAX_THRESHOLD)
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="fraction of the interval, +/-")
    startup_grace_s: float = Field(
        default=30.0, ge=0, le=MAX_PERIOD_S, description="'not ready' is not a failure this long"
    )
    hold_down_s: float = Field(
        default=30.0, ge=0, le=MAX_PERIOD_S, description="wait before readmitting; doubles per flap"
    )
    max_hold_down_s: float = Field(default=600.0, ge=0, le=MAX_PERIOD_S)
    latency_window: int = Field(
        default=20, ge=1, le=MAX_LATENCY_WINDOW, description="canary latencies kept per cloud for the p95"
    )
    rollout_grace_s: float = Field(
        default=120.0,
        ge=0,
        le=MAX_PERIOD_S,
        description="after LATEST moves, the previous version still counts as healthy this long "
        "(endpoints reload on their own interval)",
    )


class Route53Config(_Strict):
    """``routing.route53``: the weighted record group the orchestrator sets the weights of."""

    hosted_zone_id: str = Field(pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    record_name: str
    ttl: int = Field(default=10, ge=0, le=MAX_TTL_S)
    # The dns stack's health check per cloud (`config from-stacks` copies them): attached to a
    # record the orchestrator has to create; records that exist keep theirs.
    health_check_ids: dict[CloudName, str] = Field(default_factory=dict)
    endpoint_url: str | None = None
    region: str | None = Field(default=None, max_length=64)

    def backend_settings(self) -> dict[str, str]:
        """The settings of :func:`orchestrator.control.routing.backends.open_backend` ("route53")."""
        settings = {
            "hosted_zone_id": self.hosted_zone_id,
            "record_name": self.record_name,
            "ttl": str(self.ttl),
        }
        if self.health_check_ids:
            settings["health_check_ids"] = ",".join(f"{c}={i}" for c, i in self.health_check_ids.items())
        if self.endpoint_url:
            settings["endpoint_url"] = self.endpoint_url
        if self.region:
            settings["region"] = self.region
        return settings

    @field_validator("record_name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        from orchestrator.control.routing.dnsname import route53_name

        try:
            route53_name(value)
        except ValueError as exc:
            raise ValueError(f"not a DNS name Route 53 accepts: {exc}") from None
        return value

    @field_validator("health_check_ids")
    @classmethod
    def _ids(cls, value: dict[str, str]) -> dict[str, str]:
        for cloud, check_id in value.items():
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", check_id):
                raise ValueError(f"{cloud}: a health check id is letters, digits and '-'")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value, what="endpoint_url")
        return value


class FileRoutingConfig(_Strict):
    """``routing.file``: where the JSON routing table is written."""

    path: Path = Path(".orchestrator/routing.json")

    @field_validator("path", mode="before")
    @classmethod
    def _a_file(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: name the routing table's file")
        if isinstance(value, str | Path) and Path(value).expanduser().is_dir():
            raise ValueError(f"{value} is a directory: name the routing table's file in it")
        return value


class TrafficConfig(_Strict):
    """The expected load: what the cost model prices. Defaults: one-row digits predictions."""

    requests_per_s: float = Field(default=50.0, gt=0, le=MAX_RATE)
    request_bytes: float = Field(default=600.0, ge=0, le=MAX_BYTES)
    response_bytes: float = Field(default=400.0, ge=0, le=MAX_BYTES)
    cpu_ms_per_request: float = Field(
        default=0.3, ge=0, le=MAX_SLO_MS, description="measured: a one-row prediction"
    )


BackendKind = Literal["file", "route53"]


class RoutingConfig(_Strict):
    """``routing``: the backends, the latency SLO and the expected traffic the router prices."""

    # One backend, or several, each reconciled on its own (e.g. [route53, file]: DNS for clients,
    # and a routing table for a proxy); one failing does not stop the others.
    backend: BackendKind | list[BackendKind] = "file"
    file: FileRoutingConfig = Field(default_factory=FileRoutingConfig)
    route53: Route53Config | None = None
    latency_slo_ms: float = Field(default=250.0, gt=0, le=MAX_SLO_MS)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)

    @property
    def backends(self) -> list[BackendKind]:
        """The configured backends, in order (one, or the list given)."""
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
    """``state``: where the control plane's memory lives (a SQLite file or an object)."""

    path: str = Field(
        default=".orchestrator/state.db",
        description="a SQLite file, or an object store document (s3://, gs://, az://; conditional writes)",
    )
    settings: dict[str, str] = Field(default_factory=dict, description="storage settings for an object store")

    @field_validator("path")
    @classmethod
    def _location(cls, value: str) -> str:
        check_state_location(value)
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_settings(value)


class SigningConfig(_Strict):
    """``signing``: the public key the control plane checks the expected version's signature with
    (PEM text or a path; ``$MODEL_SIGNING_PUBLIC_KEY``, as the endpoint reads it, when absent)."""

    public_key: str | None = Field(default=None, max_length=20_000)


class Config(_Strict):
    """The whole configuration (:func:`load_config`); ``source`` names the file it came from."""

    model: ModelConfig
    clouds: dict[CloudName, CloudConfig] = Field(min_length=1)
    health: HealthConfig = Field(default_factory=HealthConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    # Several health jobs deciding by quorum (orchestrator.control.config_vantage); None: one job.
    vantage: VantageConfig | None = None
    signing: SigningConfig | None = None
    endpoint: PublicEndpointConfig = Field(default_factory=PublicEndpointConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
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
        """One cloud's configuration; ConfigError naming the file if it is not configured."""
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
    local disk. ``$ORCHESTRATOR_STATE`` replaces ``state.path`` and is checked like it.
    """
    source = find_config(path)
    raw = parse_yaml(read_text(source), source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    if "source" in raw:
        raise ConfigError(f"{source}: source: Extra inputs are not permitted")
    config = validate(Config, {**raw, "source": source}, source)
    if state := os.environ.get("ORCHESTRATOR_STATE"):
        # One file serves every cloud's job; each job keeps its state where its stack says. The
        # file's state.settings still apply to a store of the same kind (same URI scheme).
        same_kind = _scheme(state) == _scheme(config.state.path)
        settings = config.state.settings if same_kind else {}
        try:
            check_state_location(state)
        except ValueError as exc:
            raise ConfigError(f"$ORCHESTRATOR_STATE: {exc}") from None
        config = config.model_copy(update={"state": StateConfig(path=state, settings=settings)})
    config = resolve_vantage(config, source)
    check_together(config, source)
    check_allowed_endpoints(config, os.environ)  # only the endpoints the stacks exported (if listed)
    return config


def validate(model: type[Config], data: Mapping[str, Any], source: str) -> Config:
    """``model.model_validate(data)``, with the first error as ``SOURCE: key.path: message``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        # A bad mapping key (say a cloud "ibm") is reported at that key, not at "clouds.ibm.[key]".
        key = ".".join(str(p) for p in first["loc"] if p != "[key]") or "(top level)"
        raise ConfigError(f"{source}: {key}: {first['msg']}") from None


def _scheme(location: str) -> str:
    scheme, sep, _ = location.partition("://")
    return scheme if sep else "file"
