"""What a correct endpoint must serve right now: the expected version and its canary.

The expected version is the pinned ``model.version`` if configured, else the newest ``LATEST``
pointer (by its publication ``sequence``) across the clouds' buckets: a cloud whose bucket or endpoint
lags behind a completed rollout is then seen serving the wrong version, and loses its traffic until
it catches up. The canary comes from that version's manifest in a bucket that holds it. Without any
bucket configured, the endpoints' own ``/v1/model`` is the only source (see
:mod:`orchestrator.control.health.prober`, which also bounds the time these reads take).

A rollout: endpoints follow ``LATEST`` at their own reload interval, so for
``health.rollout_grace_s`` after the pointer moved (its ``published_at``), an endpoint still serving
the version the pointer replaced (its ``previous``) is expected too, checked with that version's
canary. The grace comes from the pointer, so a one-shot ``health --once`` knows it as well as the
watch loop does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from orchestrator.control.config import Config
from orchestrator.control.health.probe import Expectation
from orchestrator.core.artifact.layout import Pointer, read_pointer, version_prefix
from orchestrator.core.artifact.manifest import MANIFEST_NAME, parse_manifest
from orchestrator.core.errors import ConfigError, OrchestratorError
from orchestrator.core.storage import Storage, open_storage

__all__ = ["expected_model", "storages"]


def storages(config: Config) -> dict[str, Storage]:
    """Every configured cloud's bucket, opened with its settings (cloud -> Storage)."""
    return {
        name: open_storage(cloud.storage, settings=cloud.storage_settings)
        for name, cloud in config.clouds.items()
        if cloud.storage
    }


def expected_model(config: Config, buckets: dict[str, Storage], *, clock: Callable[[], float]) -> Expectation:
    """The expectation read from ``buckets`` (at least one); ConfigError when none holds the model.
    ``clock`` (unix seconds, the prober's) says whether a rollout's grace is still running."""
    if not buckets:
        raise ValueError("expected_model needs at least one bucket")
    slo = config.routing.latency_slo_ms
    name = config.model.name
    version, pointer, holders = _expected_version(config, buckets)
    expect = _from_manifest(name, version, holders, slo)
    if expect is None:
        raise ConfigError(f"no bucket holds the manifest of {name} version {version}")
    # A rollout: for rollout_grace_s after the pointer moved, the version it replaced is fine too.
    if pointer is not None and pointer.previous:
        until = pointer.published + config.health.rollout_grace_s
        previous = _from_manifest(name, pointer.previous, list(buckets.values()), slo)
        if previous is not None and clock() < until:
            expect = replace(expect, previous=previous, rollout_until=until)
    return expect


def _from_manifest(name: str, version: str, holders: list[Storage], slo: float) -> Expectation | None:
    for storage in holders:
        try:
            key = version_prefix(name, version) + MANIFEST_NAME
            manifest = parse_manifest(storage.get(key), source=storage.key_uri(key))
        except OrchestratorError:
            continue
        c = manifest.canary
        return Expectation(version, c.instances, c.labels, c.probabilities, slo)
    return None


def _expected_version(
    config: Config, buckets: dict[str, Storage]
) -> tuple[str, Pointer | None, list[Storage]]:
    """The expected version, the newest pointer naming it (None when pinned), and the buckets to
    read its manifest from, those whose pointer names it first."""
    name = config.model.name
    if config.model.version:
        return config.model.version, None, list(buckets.values())
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
    newest = max(pointers, key=lambda p: p[0].order())[0]  # the highest publication sequence
    holders = [storage for pointer, storage in pointers if pointer.version == newest.version]
    return newest.version, newest, holders + [s for s in buckets.values() if s not in holders]
