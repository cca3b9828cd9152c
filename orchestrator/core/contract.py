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
    "ENV_AZURE_STORAGE_ACCOUNT",
    "ENV_CACHE_DIR",
    "ENV_CONFIG",
    "ENV_ENDPOINTS",
    "ENV_HOST",
    "ENV_MAX_BODY_MB",
    "ENV_MODEL_URI",
    "ENV_PORT",
    "ENV_RELOAD_INTERVAL",
    "ENV_RELOAD_TIMEOUT",
    "ENV_SERVE_DOCS",
    "ENV_SIGNING_PUBLIC_KEY",
    "ENV_STATE",
    "MODELS",
    "POINTER",
    "REMOTE_SCHEMES",
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
ENV_ENDPOINTS: Final = "ORCHESTRATOR_ENDPOINTS"

# Environment of the endpoint container (set by the stacks and the demo, read by `python -m serving`).
ENV_MODEL_URI: Final = "MODEL_URI"
ENV_HOST: Final = "HOST"
ENV_PORT: Final = "PORT"
ENV_RELOAD_INTERVAL: Final = "MODEL_RELOAD_INTERVAL_S"
ENV_RELOAD_TIMEOUT: Final = "MODEL_RELOAD_TIMEOUT_S"
ENV_CACHE_DIR: Final = "MODEL_CACHE_DIR"
ENV_MAX_BODY_MB: Final = "MAX_BODY_MB"
ENV_SIGNING_PUBLIC_KEY: Final = "MODEL_SIGNING_PUBLIC_KEY"
ENV_SERVE_DOCS: Final = "SERVE_DOCS"
# The Azure endpoint's and job's storage account (set by the Azure stack beside AZURE_CLIENT_ID,
# which only the Azure SDK reads; read by the Azure storage backend when no account_url is given).
ENV_AZURE_STORAGE_ACCOUNT: Final = "AZURE_STORAGE_ACCOUNT"
