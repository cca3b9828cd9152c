"""Publishing an artifact to every cloud: all or nothing per cloud, never half a version visible.

For each target, concurrently (one thread per cloud, a small pool of object uploads in each):

1. List ``models/<name>/<version>/`` once. Every object, the commit marker included, is checked
   against the local artifact: its size, and its stored sha256 (our metadata; S3 listings carry no
   metadata, so a HEAD each there), or with ``deep`` its content, downloaded and hashed (what
   catches bytes replaced behind the metadata's back). Objects that match are skipped: a
   no-change re-sync sends one LIST per cloud and no PUT.
2. Upload what is missing or different (multipart for large files, in the backends), the signature
   (``model.sig``, when the artifact has one) included; remove objects of the version's directory
   that the manifest does not list.
3. Re-verify what landed: stat each uploaded object and compare sha256 and size with the manifest.
4. Write ``manifest.json`` last when anything changed: the version is now complete.
5. Move ``LATEST`` with a conditional write on the token read before. Publications are ordered by
   the pointer's ``sequence`` (+1 per move), not by dates inside artifacts; moving back to a version
   in the pointer's ``history`` needs ``force``. When objects of the version ``LATEST`` already
   names were repaired, the pointer is rewritten too (``refreshed``): endpoints that refused the
   damaged version retry it. A pointer sync cannot continue (not JSON, outside the grammar, over
   64 kB, at the last sequence: written by hand or by someone else) is replaced only with
   ``force`` (``replaced``, sequence 1). A lost race re-reads the pointer and decides again.

A version whose manifest records no champion-challenger gate against the version ``LATEST`` named
before (``train``/``package --against``) is published all the same; the result says so
(``gated``) and ``sync`` prints one warning line (:func:`ungated_warnings`).

A failure in one cloud is reported for that cloud and does not stop the others; a re-run finishes
only what is missing. The local artifact is verified against its manifest (and its signature,
with a public key) before anything is sent. Errors name bucket objects, never local paths.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.artifact.integrity import hash_file, verify_artifact
from orchestrator.core.artifact.layout import MAX_SEQUENCE, Pointer, pointer_key, read_pointer, version_prefix
from orchestrator.core.artifact.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from orchestrator.core.contract import POINTER
from orchestrator.core.errors import ArtifactError, NotFound, OrchestratorError, PreconditionFailed
from orchestrator.core.storage import ObjectInfo, Storage

if TYPE_CHECKING:
    from orchestrator.core.artifact.signing import SignatureVerifier

__all__ = [
    "SyncEvent",
    "SyncResult",
    "Target",
    "gated_against",
    "object_sha256",
    "sync_artifact",
    "ungated_warnings",
]

# Object uploads in flight per cloud. Each large file is itself split into parallel parts by the
# backend, so a handful of objects at a time keeps the link busy without thousands of threads.
OBJECT_CONCURRENCY = 8
# A lost race on LATEST is re-read and re-decided this many times before giving up.
POINTER_ATTEMPTS = 3


@dataclass(frozen=True)
class Target:
    """One place to publish to: a cloud name (or the URI itself) and its storage."""

    name: str
    storage: Storage


@dataclass(frozen=True)
class SyncEvent:
    """Progress, for the progress bars and for tests that check invariants at every step."""

    target: str
    kind: str  # "skip", "upload", "verified", "remove", "commit", "pointer"
    key: str
    size: int = 0


@dataclass
class SyncResult:
    """What one target's sync did: keys uploaded, skipped and removed (relative to the version's
    directory), what became of ``LATEST``, the error if it failed, and requests sent by kind."""

    target: str
    uri: str
    ok: bool = False
    version: str = ""
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # objects the manifest does not list
    bytes_uploaded: int = 0
    # "moved", "refreshed" (same version, repaired objects), "replaced" (a pointer sync could not
    # continue, with --force), "unchanged", "refused", "not moved (dry run)", "not moved"
    pointer: str = "unchanged"
    sequence: int | None = None  # the pointer's sequence after this sync
    previous_version: str | None = None
    # Whether the manifest records a champion-challenger gate against the version LATEST named
    # before this sync moved it; None when the pointer did not move off another version.
    gated: bool | None = None
    error: str | None = None
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data, for ``sync --json``."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class _File:
    key: str  # relative to the version prefix
    path: Path
    sha256: str
    size: int


def sync_artifact(
    artifact: Path,
    targets: Sequence[Target],
    *,
    force: bool = False,
    dry_run: bool = False,
    deep: bool = False,
    verifier: SignatureVerifier | None = None,
    on_event: Callable[[SyncEvent], None] | None = None,
    channel: str = POINTER,
) -> list[SyncResult]:
    """Publish ``artifact`` to every target; one result per target, in order. The pointer moved
    last is ``channel``'s (``LATEST`` by default; another, e.g. ``CANDIDATE``, publishes a version
    that no endpoint follows yet, for ``promote`` or ``rollout`` to move a served channel to).

    ``deep`` downloads and hashes every object already in a bucket instead of trusting its
    metadata. With a ``verifier``, the local artifact's signature must verify first. Raises only for
    a bad local artifact (ArtifactError or SignatureError: nothing is sent then); per-target
    failures are in the results.
    """
    manifest = verify_artifact(artifact)
    manifest_path = artifact / MANIFEST_NAME
    manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    if verifier is not None:
        verifier.verify(artifact, source=str(artifact))
        # And exactly what is published (the manifest and its files), as every endpoint checks it.
        digests = manifest.published_digests(manifest_sha)
        verifier.verify_digests(artifact / SIGNATURE_NAME, digests, source=str(artifact))
    files = [_File(e.path, artifact / e.path, e.sha256, e.size) for e in manifest.files]
    signature = artifact / SIGNATURE_NAME
    if signature.is_file():
        sha, size = hash_file(signature)
        files.append(_File(SIGNATURE_NAME, signature, sha, size))
    marker = _File(MANIFEST_NAME, manifest_path, manifest_sha, manifest_path.stat().st_size)
    emit = on_event or (lambda _: None)

    def one(target: Target) -> SyncResult:
        return _sync_one(
            target,
            manifest,
            files,
            marker,
            force=force,
            dry_run=dry_run,
            deep=deep,
            emit=emit,
            channel=channel,
        )

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="sync") as pool:
        return list(pool.map(one, targets))


def _sync_one(
    target: Target,
    manifest: Manifest,
    files: list[_File],
    marker: _File,
    *,
    force: bool,
    dry_run: bool,
    deep: bool,
    emit: Callable[[SyncEvent], None],
    channel: str = POINTER,
) -> SyncResult:
    started = time.monotonic()
    storage = target.storage
    result = SyncResult(target=target.name, uri=storage.uri, version=manifest.version)
    before = dict(storage.stats)
    try:
        prefix = version_prefix(manifest.name, manifest.version)
        existing = {info.key.removeprefix(prefix): info for info in storage.list(prefix)}
        todo = _plan(storage, prefix, existing, [*files, marker], deep=deep, result=result, emit=emit)
        if todo and marker not in todo:
            todo.append(marker)  # anything changed: the commit marker is rewritten, last
        body = [f for f in todo if f is not marker]
        # Objects in the version's directory that the manifest does not list (a writer's, or files
        # dropped from the artifact since): no reader reads them, verify reports them, sync removes them.
        extras = sorted(existing.keys() - {f.key for f in files} - {MANIFEST_NAME, SIGNATURE_NAME})
        if not dry_run:
            _upload(storage, prefix, body, result, emit)
            _remove(storage, prefix, extras, result, emit)
            if todo:
                _upload(storage, prefix, [marker], result, emit)
        else:
            result.uploaded = [f.key for f in todo]
            result.removed = extras
        _move_pointer(
            storage,
            manifest,
            marker.sha256,
            result,
            force=force,
            dry_run=dry_run,
            repaired=bool(todo),
            channel=channel,
        )
        emit(SyncEvent(target.name, "pointer", pointer_key(manifest.name, channel)))
        if result.pointer in ("moved", "replaced") and result.previous_version not in (
            None,
            manifest.version,
        ):
            result.gated = gated_against(manifest) == result.previous_version
        result.ok = result.pointer != "refused"
        if result.pointer == "refused":
            result.error = (
                f"{storage.key_uri(pointer_key(manifest.name, channel))} points to "
                f"{result.previous_version} and "
                f"{manifest.version} is an older publication (in its history); pass --force to move it back"
            )
    except OrchestratorError as exc:
        result.error = str(exc)
        if result.pointer == "unchanged":
            result.pointer = "not moved"
    finally:
        result.seconds = round(time.monotonic() - started, 3)
        result.requests = {
            op: n - before.get(op, 0) for op, n in storage.stats.items() if n - before.get(op, 0)
        }
    return result


def gated_against(manifest: Manifest) -> str | None:
    """The version the manifest's champion-challenger gate compared the model with (``gate.against.
    version``, written by ``train``/``package --against``), or None when it records none."""
    extra = manifest.model_extra or {}
    gate = extra.get("gate")
    against = gate.get("against") if isinstance(gate, dict) else None
    version = against.get("version") if isinstance(against, dict) else None
    return version if isinstance(version, str) else None


def ungated_warnings(manifest: Manifest, results: Sequence[SyncResult]) -> list[str]:
    """One line per replaced version that the manifest records no gate against, naming the targets
    where this sync moved ``LATEST`` off it (empty when every replacement was gated)."""
    replaced: dict[str, list[str]] = {}
    for result in results:
        if result.gated is False and result.previous_version is not None:
            replaced.setdefault(result.previous_version, []).append(result.target)
    return [
        f"{manifest.name} {manifest.version} replaced {previous} on {', '.join(targets)} but its manifest "
        f"records no champion-challenger gate against {previous} (train or package --against)"
        for previous, targets in replaced.items()
    ]


def object_sha256(storage: Storage, key: str, info: ObjectInfo, *, deep: bool) -> str | None:
    """The object's sha256: with ``deep`` hashed from its content (streamed to a temporary file, so
    memory stays flat whatever its size), else from its metadata (a stat when the listing ``info``
    carries none, as on S3; None when the object has none). Storage errors as the backend raises
    them (NotFound if it was deleted since the listing)."""
    if not deep:
        return info.sha256 if info.sha256 is not None else storage.stat(key).sha256
    with tempfile.TemporaryDirectory(prefix="sync-deep-") as tmp:
        local = Path(tmp) / "object"
        storage.download(key, local)
        return hash_file(local)[0]


def _plan(
    storage: Storage,
    prefix: str,
    existing: dict[str, ObjectInfo],
    files: list[_File],
    *,
    deep: bool,
    result: SyncResult,
    emit: Callable[[SyncEvent], None],
) -> list[_File]:
    """What must be (re-)uploaded: missing objects, and those whose size or sha256 differs."""

    def differs(f: _File) -> bool:
        info = existing.get(f.key)
        if info is None or info.size != f.size:
            return True
        try:
            return object_sha256(storage, prefix + f.key, info, deep=deep) != f.sha256
        except NotFound:  # deleted since the listing
            return True

    if deep and len(files) > 1:
        with ThreadPoolExecutor(max_workers=OBJECT_CONCURRENCY, thread_name_prefix="check") as pool:
            verdicts = list(pool.map(differs, files))
    else:
        verdicts = [differs(f) for f in files]
    todo = []
    for f, changed in zip(files, verdicts, strict=True):
        if changed:
            todo.append(f)
        else:
            result.skipped.append(f.key)
            emit(SyncEvent(result.target, "skip", f.key, f.size))
    return todo


def _upload(
    storage: Storage, prefix: str, files: list[_File], result: SyncResult, emit: Callable[[SyncEvent], None]
) -> None:
    target = result.target

    def put(f: _File) -> None:
        storage.put(prefix + f.key, f.path, sha256=f.sha256)
        emit(SyncEvent(target, "upload", f.key, f.size))
        landed = storage.stat(prefix + f.key)
        if landed.sha256 != f.sha256 or landed.size != f.size:
            raise ArtifactError(
                f"{storage.key_uri(prefix + f.key)}: after upload the object has sha256 {landed.sha256} "
                f"and {landed.size} bytes; expected {f.sha256} and {f.size}",
                path=f.key,
            )
        emit(SyncEvent(target, "verified", f.key, f.size))

    if len(files) == 1:
        put(files[0])
    elif files:
        with ThreadPoolExecutor(max_workers=OBJECT_CONCURRENCY, thread_name_prefix=f"put-{target}") as pool:
            # list() re-raises the first failure; the others finish or fail on their own.
            list(pool.map(put, files))
    result.uploaded += [f.key for f in files]
    result.bytes_uploaded += sum(f.size for f in files)


def _pointer_for_update(
    storage: Storage, name: str, *, force: bool, channel: str = POINTER
) -> tuple[Pointer | None, ObjectInfo | None, bool]:
    """(the current pointer, its version token, whether to replace it whole). A pointer sync cannot
    continue (unreadable, outside the grammar, oversized, at the last sequence) is an ArtifactError
    naming ``--force``; with ``force`` it is replaced, conditionally on the version read."""
    try:
        current, info = read_pointer(storage, name, channel)
        if current is not None and current.sequence >= MAX_SEQUENCE:
            raise ArtifactError(
                f"{storage.key_uri(pointer_key(name, channel))}: at sequence {current.sequence}, "
                "the last one "
                "(only a hand-written pointer gets there)"
            )
    except ArtifactError as exc:
        if not force:
            raise ArtifactError(f"{exc}; `sync --force` replaces it", path=exc.path) from exc
        return None, storage.stat(pointer_key(name, channel)), True
    return current, info, False


def _remove(
    storage: Storage, prefix: str, keys: list[str], result: SyncResult, emit: Callable[[SyncEvent], None]
) -> None:
    for key in keys:
        storage.delete(prefix + key)
        result.removed.append(key)
        emit(SyncEvent(result.target, "remove", key))


def _move_pointer(
    storage: Storage,
    manifest: Manifest,
    manifest_sha: str,
    result: SyncResult,
    *,
    force: bool,
    dry_run: bool,
    repaired: bool,
    channel: str = POINTER,
) -> None:
    for _ in range(POINTER_ATTEMPTS):
        current, info, replace = _pointer_for_update(storage, manifest.name, force=force, channel=channel)
        result.previous_version = current.version if current else None
        same = current is not None and current.version == manifest.version
        if same and current is not None and current.manifest_sha256 == manifest_sha and not repaired:
            result.pointer, result.sequence = "unchanged", current.sequence
            return
        if current is not None and not same and manifest.version in current.history and not force:
            result.pointer = "refused"
            return
        if dry_run:
            result.pointer = "not moved (dry run)"
            return
        if replace:
            # A pointer sync cannot continue, replaced whole (--force): sequence 1, no history.
            new = Pointer.new(manifest.version, manifest_sha, manifest.created_at)
        elif same and current is not None:
            # Repaired or re-published in place: the same rollout as before, a new sequence so
            # that endpoints which refused the damaged objects read the version again.
            new = Pointer.new(
                manifest.version,
                manifest_sha,
                manifest.created_at,
                previous=current.previous,
                replacing=current,
            )
        else:
            previous = current.version if current else None
            new = Pointer.new(
                manifest.version, manifest_sha, manifest.created_at, previous, replacing=current
            )
        try:
            storage.put_if(
                pointer_key(manifest.name, channel), new.to_bytes(), token=info.token if info else None
            )
        except PreconditionFailed:
            continue  # someone moved it since we read it: read again and decide again
        result.pointer = "replaced" if replace else "refreshed" if same else "moved"
        result.sequence = new.sequence
        return
    raise PreconditionFailed(
        f"LATEST kept changing under us ({POINTER_ATTEMPTS} attempts); run the sync again",
        uri=storage.key_uri(pointer_key(manifest.name, channel)),
    )
