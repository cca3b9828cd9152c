"""Checking what the clouds hold against the manifest: every drift named by cloud, object and field.

For each target: resolve the version (the one asked for, or ``LATEST``'s), read the stored manifest
and check it is the one ``LATEST`` names (sha256), then compare the version directory with the
manifest: a missing object, an unexpected one, a size or sha256 that differs. The sha256 comes from
object metadata, or with ``deep`` from downloading and hashing every object (what catches bytes
changed behind the metadata's back). The manifest's own name and version must be the ones asked
for. With a signature verifier, the version is downloaded and its ``model.sig`` must verify with
the public key (an unsigned version is drift). Finally all targets' ``LATEST`` pointers must agree.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.artifact.layout import read_pointer, version_prefix
from orchestrator.core.artifact.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    parse_manifest,
)
from orchestrator.core.errors import NotFound, OrchestratorError, PreconditionFailed, StorageError
from orchestrator.core.storage import Storage
from orchestrator.publish.sync import OBJECT_CONCURRENCY, Target, object_sha256

if TYPE_CHECKING:
    from orchestrator.core.artifact.signing import SignatureVerifier

__all__ = ["Drift", "VerifyResult", "verify_targets", "verify_version"]


@dataclass(frozen=True)
class Drift:
    """One difference between a bucket and the manifest: which target, which object, what."""

    target: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.target}: {self.key}: {self.problem}"


@dataclass
class VerifyResult:
    """One target's verification: the version and manifest sha256 found, objects checked, drift."""

    target: str
    uri: str
    version: str | None = None
    manifest_sha256: str | None = None
    objects_checked: int = 0
    drift: list[Drift] = field(default_factory=list)
    # Why the target could not be checked at all (its bucket unreachable or refusing access), None
    # when it was: then the drift says nothing about the version, only about the cloud.
    unreachable: str | None = None

    @property
    def ok(self) -> bool:
        """No drift."""
        return not self.drift

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data, for ``verify --json``."""
        return {
            "target": self.target,
            "uri": self.uri,
            "ok": self.ok,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "objects_checked": self.objects_checked,
            "drift": [{"key": d.key, "problem": d.problem} for d in self.drift],
        }


def verify_targets(
    targets: Sequence[Target],
    name: str,
    version: str | None = None,
    *,
    deep: bool = False,
    verifier: SignatureVerifier | None = None,
) -> tuple[list[VerifyResult], list[Drift]]:
    """Verify every target; return per-target results and the cross-target disagreements."""
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="verify") as pool:
        results = list(
            pool.map(lambda t: _verify_one(t, name, version, deep=deep, verifier=verifier), targets)
        )
    return results, _disagreements(results, pinned=version is not None)


def verify_version(
    target: Target, name: str, version: str, *, deep: bool = False, verifier: SignatureVerifier | None = None
) -> VerifyResult:
    """One target's check of one version (what ``verify --model NAME@VERSION`` does there): drift
    when the version is incomplete, differs from its manifest, or (with ``verifier``) is unsigned;
    ``unreachable`` set when the bucket could not be read at all. No pointer is read: a corrupt
    ``LATEST`` (or any channel) says nothing about a version named explicitly."""
    return _verify_one(target, name, version, deep=deep, verifier=verifier, read_latest=False)


def _verify_one(
    target: Target,
    name: str,
    version: str | None,
    *,
    deep: bool,
    verifier: SignatureVerifier | None,
    read_latest: bool = True,
) -> VerifyResult:
    storage = target.storage
    result = VerifyResult(target=target.name, uri=storage.uri)

    def drift(key: str, problem: str) -> None:
        result.drift.append(Drift(target.name, key, problem))

    try:
        pointer = read_pointer(storage, name)[0] if read_latest or version is None else None
        if version is None and pointer is None:
            drift(f"models/{name}/LATEST", "missing: the model was never published here")
            return result
        resolved = version or (pointer.version if pointer else "")
        result.version = resolved
        prefix = version_prefix(name, resolved)
        try:
            raw_manifest = storage.get(prefix + MANIFEST_NAME)
        except NotFound:
            drift(prefix + MANIFEST_NAME, "missing: the version is incomplete")
            return result
        result.manifest_sha256 = hashlib.sha256(raw_manifest).hexdigest()
        if (
            pointer is not None
            and pointer.version == result.version
            and pointer.manifest_sha256 != result.manifest_sha256
        ):
            drift(
                prefix + MANIFEST_NAME,
                f"sha256 {result.manifest_sha256} but LATEST says {pointer.manifest_sha256}",
            )
        manifest = parse_manifest(raw_manifest, source=storage.key_uri(prefix + MANIFEST_NAME))
        if (manifest.name, manifest.version) != (name, resolved):
            drift(
                prefix + MANIFEST_NAME,
                f"the manifest is {manifest.name} {manifest.version}, not {name} {resolved}",
            )
        _compare(storage, prefix, manifest.files, deep=deep, result=result, drift=drift)
        if verifier is not None:
            _check_signature(storage, prefix, manifest, raw_manifest, verifier, drift)
    except (NotFound, PreconditionFailed) as exc:
        drift(storage.uri, f"could not be checked: {exc}")
    except StorageError as exc:  # unreachable, refused, out of retries: nothing said of the version
        result.unreachable = str(exc)
        drift(storage.uri, f"could not be checked: {exc}")
    except OrchestratorError as exc:
        drift(storage.uri, f"could not be checked: {exc}")
    return result


def _check_signature(
    storage: Storage,
    prefix: str,
    manifest: Manifest,
    raw_manifest: bytes,
    verifier: SignatureVerifier,
    drift: Callable[[str, str], None],
) -> None:
    """Download the version as the endpoint would and check its signature with the public key."""
    from orchestrator.core.artifact.signing import SignatureError

    with tempfile.TemporaryDirectory(prefix="verify-signature-") as tmp:
        root = Path(tmp) / "artifact"
        root.mkdir()
        (root / MANIFEST_NAME).write_bytes(raw_manifest)
        try:
            storage.download(prefix + SIGNATURE_NAME, root / SIGNATURE_NAME)
        except NotFound:
            drift(prefix + SIGNATURE_NAME, "missing: the version is unsigned, and a public key is configured")
            return
        digests = manifest.published_digests(hashlib.sha256(raw_manifest).hexdigest())
        try:  # the envelope and the digests it signs first: nothing large is read for a forgery
            verifier.verify_digests(
                root / SIGNATURE_NAME, digests, source=storage.key_uri(prefix).rstrip("/")
            )
        except SignatureError as exc:
            drift(prefix + SIGNATURE_NAME, str(exc).split(": ", 1)[-1])
            return
        for entry in manifest.files:
            try:
                storage.download(prefix + entry.path, root / entry.path)
            except NotFound:
                return  # already reported as missing
        try:
            verifier.verify(root, source=storage.key_uri(prefix).rstrip("/"))
        except SignatureError as exc:
            drift(prefix + SIGNATURE_NAME, str(exc).split(": ", 1)[-1])


def _compare(
    storage: Storage,
    prefix: str,
    files: list[FileEntry],
    *,
    deep: bool,
    result: VerifyResult,
    drift: Callable[[str, str], None],
) -> None:
    stored = {info.key.removeprefix(prefix): info for info in storage.list(prefix)}
    expected = {entry.path: entry for entry in files}
    for key in sorted(stored.keys() - expected.keys() - {MANIFEST_NAME, SIGNATURE_NAME}):
        drift(prefix + key, "unexpected object: not in the manifest")
    present = [entry for entry in files if entry.path in stored]
    for entry in files:
        if entry.path not in stored:
            drift(prefix + entry.path, "missing")

    def check(entry: FileEntry) -> str | None:
        info = stored[entry.path]
        if info.size != entry.size:
            return f"size {info.size}, manifest says {entry.size}"
        actual = object_sha256(storage, prefix + entry.path, info, deep=deep)
        source = "content" if deep else "metadata"
        if actual != entry.sha256:
            return f"sha256 ({source}) {actual}, manifest says {entry.sha256}"
        return None

    with ThreadPoolExecutor(max_workers=OBJECT_CONCURRENCY, thread_name_prefix="check") as pool:
        for entry, problem in zip(present, pool.map(check, present), strict=True):
            result.objects_checked += 1
            if problem:
                drift(prefix + entry.path, problem)


def _disagreements(results: list[VerifyResult], *, pinned: bool) -> list[Drift]:
    """All targets must serve the same version with the same manifest."""
    seen = {(r.version, r.manifest_sha256) for r in results if r.version is not None}
    if len(seen) <= 1:
        return []
    what = "version" if not pinned else "manifest"
    return [
        Drift(
            r.target,
            "LATEST" if not pinned else MANIFEST_NAME,
            f"{what} {r.version} ({(r.manifest_sha256 or '')[:12]}) differs from other clouds",
        )
        for r in results
    ]
