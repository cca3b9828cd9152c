"""The contract between the parts: one spelling of every name that crosses a boundary.

The same cloud keys, stack export keys, environment variable names and bucket layout words are
read by ``infra/`` (which sets them), the endpoint (``serving/``), training, publishing and the
control plane. Each is spelled here once; everything else imports it, so a rename is one change
and a typo is an import error, not a silent mismatch between a stack and the code that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "CLOUDS",
    "CLOUD_SCHEMES",
    "DNS_EXPORTS",
    "ENDPOINT_EXPORTS",
    "ENV_API_TOKEN",
    "ENV_API_TOKENS",
    "ENV_API_TOKEN_PREVIOUS",
    "ENV_AWS_AUDIENCE",
    "ENV_AWS_ROLE_ARN",
    "ENV_AWS_WEB_IDENTITY",
    "ENV_AZURE_STORAGE_ACCOUNT",
    "ENV_BODY_TIMEOUT",
    "ENV_CACHE_DIR",
    "ENV_CONFIG",
    "ENV_DRIFT_WINDOW_ROWS",
    "ENV_ENDPOINTS",
    "ENV_HEADER_TIMEOUT",
    "ENV_HOST",
    "ENV_LOG_LEVEL",
    "ENV_MAX_BODY_MB",
    "ENV_MODEL_URI",
    "ENV_PORT",
    "ENV_RELOAD_INTERVAL",
    "ENV_RELOAD_TIMEOUT",
    "ENV_SERVE_DOCS",
    "ENV_SIGNING_PUBLIC_KEY",
    "ENV_STATE",
    "ENV_VANTAGE",
    "LEASE_OBJECT",
    "MODELS",
    "POINTER",
    "REMOTE_SCHEMES",
    "VANTAGE_PREFIX",
    "CloudName",
]

# The cloud keys, in the order every table and listing uses (SkyPilot's lesson: one key per
# cloud in every layer: stacks, configuration, state, metrics, DNS set identifiers).
CLOUDS: Final[tuple[str, ...]] = ("aws", "gcp", "azure")
CloudName = Literal["aws", "gcp", "azure"]

# Each cloud's object-storage URI scheme (file:// is local and not a cloud's): the buckets infra/
# creates and the URIs the stacks export (model_uri, the health job's config_uri and state_uri).
CLOUD_SCHEMES: Final[Mapping[CloudName, str]] = MappingProxyType({"aws": "s3", "gcp": "gs", "azure": "az"})
# The same schemes, in the order of CLOUDS.
REMOTE_SCHEMES: Final[tuple[str, ...]] = tuple(CLOUD_SCHEMES.values())

# What every cloud stack exports (`pulumi stack output --json`), in this order:
#   cloud, region          the stack's cloud key and region
#   endpoint_url           the endpoint's base URL (health checks and DNS use its host)
#   model_uri              the bucket URI of models/<name>/LATEST the endpoint follows
#   registry, image        where `orchestrator image push` copies the image; what runs (registry@digest)
#   cpu, memory            vCPU and GiB per instance
#   min_instances, max_instances, concurrency
#   readiness_path         what the dns stack's health checks ask
#   storage_settings       orchestrator.yaml's clouds.<cloud>.storage_settings for model_uri's bucket
#   health_job             what the scheduled job runs, when, and where its configuration and state live
#   public_name            the one name clients use (every cloud answers it over TLS), or None
#   dns_records            records the dns stack must create in the zone for this cloud ({name, type,
#                          value}: certificate validation, domain ownership, the entry's address)
#   health_check_ip        the address a Route 53 health check connects to while sending the public
#                          name as Host and SNI (None: it resolves endpoint_url's host instead)
#   api_token_secrets      where the API tokens are stored in this cloud's secret store (references,
#                          never values): {"current": ..., "previous": ...}
ENDPOINT_EXPORTS: Final[tuple[str, ...]] = (
    "cloud",
    "region",
    "endpoint_url",
    "model_uri",
    "registry",
    "image",
    "cpu",
    "memory",
    "min_instances",
    "max_instances",
    "concurrency",
    "readiness_path",
    "storage_settings",
    "health_job",
    "public_name",
    "dns_records",
    "health_check_ip",
    "api_token_secrets",
)
# What the dns stack exports: the weighted record, its zone, its TTL and each cloud's health check.
DNS_EXPORTS: Final[tuple[str, ...]] = ("record_name", "zone_id", "ttl", "health_check_ids")

# Where a bucket keeps the models: models/<name>/<version>/ and the pointer models/<name>/LATEST.
MODELS: Final = "models"
# The pointer every endpoint follows by default: models/<name>/LATEST.
POINTER: Final = "LATEST"

# Environment of the scheduled health job (set by the stacks, read by the control plane).
ENV_CONFIG: Final = "ORCHESTRATOR_CONFIG"
ENV_STATE: Final = "ORCHESTRATOR_STATE"
# Which vantage point a health job is (its id in the configuration's `vantage.points`).
ENV_VANTAGE: Final = "ORCHESTRATOR_VANTAGE"
# A job outside AWS that changes Route 53 (or reads the AWS vantage point's objects) assumes this
# role with its own platform's identity token (web identity federation): no AWS key is stored.
ENV_AWS_ROLE_ARN: Final = "ORCHESTRATOR_AWS_ROLE_ARN"
# Where the token comes from: "gcp" (the metadata server's ID token) or "azure" (the managed
# identity's access token for ENV_AWS_AUDIENCE).
ENV_AWS_WEB_IDENTITY: Final = "ORCHESTRATOR_AWS_WEB_IDENTITY"
ENV_AWS_AUDIENCE: Final = "ORCHESTRATOR_AWS_AUDIENCE"
# Under a vantage point's home (its state location): each point's observation, and the point's
# copy of the cross-cloud leader lease (orchestrator.control.vantage; the stacks grant exactly these).
VANTAGE_PREFIX: Final = "orchestrator/vantage/"
LEASE_OBJECT: Final = "orchestrator/leader-lease.json"
ENV_ENDPOINTS: Final = "ORCHESTRATOR_ENDPOINTS"

# The API tokens predictions need (`Authorization: Bearer <token>`), given to the endpoint and the
# health job by reference to the cloud's secret store (never as plain configuration): the current
# token, and during a rotation the previous one too; both are accepted while both are set.
ENV_API_TOKEN: Final = "API_TOKEN"  # noqa: S105  # a variable name, not a token
ENV_API_TOKEN_PREVIOUS: Final = "API_TOKEN_PREVIOUS"  # noqa: S105  # a variable name
ENV_API_TOKENS: Final[tuple[str, ...]] = (ENV_API_TOKEN, ENV_API_TOKEN_PREVIOUS)

# Environment of the endpoint container (set by the stacks and the demo, read by `python -m serving`).
ENV_MODEL_URI: Final = "MODEL_URI"
ENV_HOST: Final = "HOST"
ENV_PORT: Final = "PORT"
ENV_RELOAD_INTERVAL: Final = "MODEL_RELOAD_INTERVAL_S"
ENV_RELOAD_TIMEOUT: Final = "MODEL_RELOAD_TIMEOUT_S"
ENV_CACHE_DIR: Final = "MODEL_CACHE_DIR"
# Rows in the drift monitor's sliding window (serving.drift); 0 turns drift monitoring off.
ENV_DRIFT_WINDOW_ROWS: Final = "DRIFT_WINDOW_ROWS"
ENV_MAX_BODY_MB: Final = "MAX_BODY_MB"
ENV_SIGNING_PUBLIC_KEY: Final = "MODEL_SIGNING_PUBLIC_KEY"
ENV_SERVE_DOCS: Final = "SERVE_DOCS"
ENV_HEADER_TIMEOUT: Final = "HTTP_HEADER_TIMEOUT_S"
ENV_BODY_TIMEOUT: Final = "HTTP_BODY_TIMEOUT_S"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"
# The Azure endpoint's and job's storage account (set by the Azure stack beside AZURE_CLIENT_ID,
# which only the Azure SDK reads; read by the Azure storage backend when no account_url is given).
ENV_AZURE_STORAGE_ACCOUNT: Final = "AZURE_STORAGE_ACCOUNT"
