"""What a correct endpoint must serve right now: the expected version and its canary.

The expected version is the pinned ``model.version`` if configured, else the newest ``LATEST``
pointer (by the model's ``created_at``) across the clouds' buckets: a cloud whose bucket or endpoint
lags behind a completed rollout is then seen serving the wrong version, and loses its traffic until
it catches up. The canary comes from that version's manifest in a bucket that holds it. Without any
bucket configured, the endpoints' own ``/v1/model`` is the only source: the version is not checked
and the canary is the one the first answering endpoint reports.
"""

from __future__ import annotations

import httpx

from orchestrator.config import Config
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.health.probe import Expectation
from orchestrator.registry import Pointer, read_pointer, version_prefix
from orchestrator.storage import Storage, open_storage
from serving.artifact import MANIFEST_NAME, parse_manifest

__all__ = ["expected_model", "storages"]


def storages(config: Config) -> dict[str, Storage]:
    return {
        name: open_storage(cloud.storage, settings=cloud.storage_settings)
        for name, cloud in config.clouds.items()
        if cloud.storage
    }


def expected_model(config: Config, buckets: dict[str, Storage], client: httpx.Client) -> Expectation:
    slo = config.routing.latency_slo_ms
    name = config.model.name
    if buckets:
        version, holders = _expected_version(config, buckets)
        for storage in holders:
            try:
                key = version_prefix(name, version) + MANIFEST_NAME
                manifest = parse_manifest(storage.get(key), source=storage.key_uri(key))
            except OrchestratorError:
                continue
            c = manifest.canary
            return Expectation(version, c.instances, c.labels, c.probabilities, slo)
        raise ConfigError(f"no bucket holds the manifest of {name} version {version}")
    for endpoint in config.endpoints().values():
        try:
            info = client.get(f"{endpoint}/v1/model", timeout=config.health.timeout_s).json()
            c = info["canary"]
            return Expectation(None, c["instances"], c["labels"], c["probabilities"], slo)
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            continue
    raise ConfigError("no bucket configured and no endpoint reports its model: nothing to check against")


def _expected_version(config: Config, buckets: dict[str, Storage]) -> tuple[str, list[Storage]]:
    name = config.model.name
    if config.model.version:
        return config.model.version, list(buckets.values())
    pointers: list[tuple[Pointer, Storage]] = []
    errors = []
    for cloud, storage in buckets.items():
        try:
            pointer, _ = read_pointer(storage, name)
        except OrchestratorError as exc:
            errors.append(f"{cloud}: {exc}")
            continue
        if pointer is not None:
            pointers.append((pointer, storage))
    if not pointers:
        detail = "; ".join(errors) or "no LATEST pointer in any bucket"
        raise ConfigError(f"model {name!r} is not published anywhere ({detail}); run `orchestrator sync`")
    newest = max(pointers, key=lambda p: (p[0].created_at, p[0].version))[0]
    holders = [storage for pointer, storage in pointers if pointer.version == newest.version]
    return newest.version, holders + [s for s in buckets.values() if s not in holders]
