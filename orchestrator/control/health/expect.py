"""What a correct endpoint must serve right now: the expected version and its canary.

The expected version is the pinned ``model.version`` if configured, else chosen from the clouds'
pointers of the channel the endpoints follow (``model.channel``, ``LATEST`` by default) so that
no single bucket's writer chooses it:

- with a signing public key configured (``signing.public_key``, or ``$MODEL_SIGNING_PUBLIC_KEY`` as
  the endpoint reads it), a pointer counts only if its version's manifest, in that bucket, carries
  a signature that verifies with the key and covers the manifest and every file it lists; the
  canary is taken from such a verified manifest only;
- the version named by a strict majority of the (counted) pointers wins; only without a majority
  (two buckets disagreeing, one bucket readable...) does the newest pointer by its publication
  ``sequence`` decide, as a lone pointer does.

A cloud whose bucket or endpoint lags behind a completed rollout is then seen serving the wrong
version, and loses its traffic until it catches up; a rollout (``sync`` moves every pointer within
seconds) counts as expected once a majority of the pointers moved. The canary comes from that
version's manifest in a bucket that holds it. Without any
bucket configured, the endpoints' own ``/v1/model`` is the only source (see
:mod:`orchestrator.control.health.prober`, which also bounds the time these reads take).

A rollout: endpoints follow ``LATEST`` at their own reload interval, so for
``health.rollout_grace_s`` after the pointer moved (its ``published_at``), an endpoint still serving
the version the pointer replaced (its ``previous``) is expected too, checked with that version's
canary. The grace comes from the pointer, so a one-shot ``health --once`` knows it as well as the
watch loop does.

A progressive rollout (``orchestrator rollout``) moves the clouds' pointers one stage at a time:
while the state store's rollout record is active (``running`` or ``rolling-back``) for that
version and baseline, and the pointers name those two versions (the newest moved by the rollout
off the other), both versions are expected, without a time limit (the rollout record, not a
grace, bounds it). Pointers that say ``moved_by: rollout`` without an active record (a rollout
that ended, another state store's, a hand-written pointer) do not count as one: outside a
rollout, a cloud serving a version other than its channel's gets no weight.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.control.config import Config
from orchestrator.control.health.probe import Expectation
from orchestrator.core.artifact.layout import Pointer, read_pointer, version_prefix
from orchestrator.core.artifact.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, parse_manifest
from orchestrator.core.artifact.signing import MAX_SIGNATURE_BYTES, SignatureVerifier, load_public_key
from orchestrator.core.contract import ENV_SIGNING_PUBLIC_KEY
from orchestrator.core.errors import ConfigError, NotFound, OrchestratorError
from orchestrator.core.storage import Storage, open_storage

__all__ = ["expectation_of", "expected_model", "signature_verifier", "storages"]


def storages(config: Config) -> dict[str, Storage]:
    """Every configured cloud's bucket, opened with its settings (cloud -> Storage)."""
    return {
        name: open_storage(cloud.storage, settings=cloud.storage_settings)
        for name, cloud in config.clouds.items()
        if cloud.storage
    }


def expected_model(
    config: Config,
    buckets: dict[str, Storage],
    *,
    clock: Callable[[], float],
    rollout: Mapping[str, Any] | None = None,
) -> Expectation:
    """The expectation read from ``buckets`` (at least one); ConfigError when none holds the model.
    ``clock`` (unix seconds, the prober's) says whether a rollout's grace is still running;
    ``rollout`` is the state store's rollout record when one is active (None otherwise): only then,
    and only for its version and baseline, are a staged rollout's two versions both expected."""
    if not buckets:
        raise ValueError("expected_model needs at least one bucket")
    slo = config.routing.latency_slo_ms
    name = config.model.name
    verifier = signature_verifier(config)
    version, pointer, holders, pointers = _expected_version(config, buckets, verifier)
    expect = _from_manifest(name, version, holders, slo, verifier)
    if expect is None:
        signed = " with a signature that verifies" if verifier else ""
        raise ConfigError(f"no bucket holds the manifest of {name} version {version}{signed}")
    # A progressive rollout in progress (`orchestrator rollout`): the clouds' pointers name its new
    # version (moved by the rollout) and the version it replaces; both are expected, each with its
    # own canary, for as long as the pointers disagree. The rollout itself gives weight to a moved
    # cloud only once it serves the new version (orchestrator.control.rollout).
    staged = _staged_rollout(pointers)
    if staged is not None and not _recorded(rollout, name, config.model.channel, staged):
        staged = None  # pointers moved "by a rollout" that the state store does not hold active
    if staged is not None:
        new, old = staged
        expect_new = _from_manifest(name, new, list(buckets.values()), slo, verifier)
        expect_old = _from_manifest(name, old, list(buckets.values()), slo, verifier)
        if expect_new is not None and expect_old is not None:
            return replace(expect_new, previous=expect_old, rollout_until=math.inf)
    # A rollout: for rollout_grace_s after the pointer moved, the version it replaced is fine too.
    if pointer is not None and pointer.previous:
        until = pointer.published + config.health.rollout_grace_s
        previous = _from_manifest(name, pointer.previous, list(buckets.values()), slo, verifier)
        if previous is not None and clock() < until:
            expect = replace(expect, previous=previous, rollout_until=until)
    return expect


def expectation_of(
    config: Config, holders: list[Storage], version: str, verifier: SignatureVerifier | None
) -> Expectation:
    """What an endpoint serving exactly ``version`` must answer: its canary from the first of
    ``holders`` whose manifest of it reads (and verifies, with ``verifier``); no other version is
    accepted. ConfigError when none holds it."""
    expect = _from_manifest(config.model.name, version, holders, config.routing.latency_slo_ms, verifier)
    if expect is None:
        raise ConfigError(f"no bucket holds a readable manifest of {config.model.name} version {version}")
    return expect


def signature_verifier(config: Config) -> SignatureVerifier | None:
    """The verifier of the configured public key (``signing.public_key``, else
    ``$MODEL_SIGNING_PUBLIC_KEY``), None when neither is set; ConfigError naming the key when it
    cannot be loaded."""
    if config.signing is not None and config.signing.public_key:
        return _verifier(config.signing.public_key, f"{config.source or 'configuration'}: signing.public_key")
    if value := os.environ.get(ENV_SIGNING_PUBLIC_KEY):
        return _verifier(value, f"${ENV_SIGNING_PUBLIC_KEY}")
    return None


@functools.lru_cache(maxsize=4)
def _verifier(value: str, where: str) -> SignatureVerifier:
    return SignatureVerifier(load_public_key(value, where=where))


def _manifest(storage: Storage, name: str, version: str, verifier: SignatureVerifier | None) -> Manifest:
    """``version``'s manifest in ``storage``; with ``verifier``, only if its signature there
    verifies and covers the manifest and its files (SignatureError otherwise)."""
    prefix = version_prefix(name, version)
    raw = storage.get(prefix + MANIFEST_NAME)
    manifest = parse_manifest(raw, source=storage.key_uri(prefix + MANIFEST_NAME))
    if verifier is not None:
        with tempfile.TemporaryDirectory(prefix="expect-sig-") as tmp:
            signature = Path(tmp) / SIGNATURE_NAME
            try:
                data = storage.get(prefix + SIGNATURE_NAME)
                signature.write_bytes(data[: MAX_SIGNATURE_BYTES + 1])
            except NotFound:
                pass  # the verifier refuses a missing signature as unsigned, naming it
            verifier.verify_digests(
                signature,
                manifest.published_digests(hashlib.sha256(raw).hexdigest()),
                source=storage.key_uri(prefix).rstrip("/"),
            )
    return manifest


def _from_manifest(
    name: str, version: str, holders: list[Storage], slo: float, verifier: SignatureVerifier | None
) -> Expectation | None:
    for storage in holders:
        try:
            manifest = _manifest(storage, name, version, verifier)
        except OrchestratorError:
            continue
        c = manifest.canary
        return Expectation(version, c.instances, c.labels, c.probabilities, slo)
    return None


def _recorded(rollout: Mapping[str, Any] | None, name: str, channel: str, staged: tuple[str, str]) -> bool:
    """Whether ``rollout`` (an active record, or None) is the rollout of ``staged`` (new, old)."""
    return (
        rollout is not None
        and rollout.get("model") == name
        and rollout.get("channel") == channel
        and (rollout.get("version"), rollout.get("baseline")) == staged
    )


def _staged_rollout(pointers: list[Pointer]) -> tuple[str, str] | None:
    """(new version, old version) when the pointers name two versions and the newest pointer
    naming one of them was moved by a rollout off the other; None otherwise."""
    if len({p.version for p in pointers}) != 2:
        return None
    newest = max((p for p in pointers if p.moved_by == "rollout"), key=lambda p: p.order(), default=None)
    if newest is None or newest.previous is None:
        return None
    if {p.version for p in pointers} != {newest.version, newest.previous}:
        return None
    return newest.version, newest.previous


def _expected_version(
    config: Config, buckets: dict[str, Storage], verifier: SignatureVerifier | None
) -> tuple[str, Pointer | None, list[Storage], list[Pointer]]:
    """The expected version (the module docstring's rule), the newest pointer naming it (None
    when pinned), the buckets to read its manifest from, those whose pointer names it first, and
    every pointer counted."""
    name = config.model.name
    if config.model.version:
        return config.model.version, None, list(buckets.values()), []
    pointers: list[tuple[Pointer, Storage]] = []
    errors = []
    for cloud, storage in buckets.items():
        try:
            pointer, _ = read_pointer(storage, name, config.model.channel)
        except OrchestratorError as exc:
            errors.append(f"{cloud}: {exc}")
            continue
        if pointer is None:
            continue
        if verifier is not None:
            try:
                _manifest(storage, name, pointer.version, verifier)
            except OrchestratorError as exc:  # unsigned, or not by the key: the pointer is ignored
                errors.append(f"{cloud}: {exc}")
                continue
        pointers.append((pointer, storage))
    if not pointers:
        detail = "; ".join(errors) or f"no {config.model.channel} pointer in any bucket"
        if verifier is not None and errors:
            raise ConfigError(
                f"model {name!r}: no bucket's {config.model.channel} names a version signed by the "
                f"configured public key ({detail})"
            )
        raise ConfigError(f"model {name!r} is not published anywhere ({detail}); run `orchestrator sync`")
    votes = Counter(pointer.version for pointer, _ in pointers)
    version, count = votes.most_common(1)[0]
    if 2 * count > len(pointers):  # a strict majority of the pointers agree
        newest = max((p for p, _ in pointers if p.version == version), key=lambda p: p.order())
    else:
        newest = max(pointers, key=lambda p: p[0].order())[0]  # the highest publication sequence
    holders = [storage for pointer, storage in pointers if pointer.version == newest.version]
    others = [s for s in buckets.values() if s not in holders]
    return newest.version, newest, holders + others, [p for p, _ in pointers]
