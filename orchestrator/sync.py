"""Publishing an artifact to every cloud: all or nothing per cloud, never half a version visible.

For each target, concurrently (one thread per cloud, a small pool of object uploads in each):

1. List ``models/<name>/<version>/`` once. An object whose stored sha256 (our metadata) matches the
   manifest is skipped. If the commit marker (``manifest.json``) is there with the local
   manifest's sha256 and every file has its size, the version is complete and nothing is sent: that
   is what makes a no-change re-sync cost one LIST (plus one HEAD on S3, whose listings carry no
   metadata).
2. Upload what is missing or different (multipart for large files, in the backends).
3. Re-verify what landed: stat each uploaded object and compare sha256 and size with the manifest.
4. Write ``manifest.json`` last: the version is now complete.
5. Move ``LATEST`` with a conditional write on the token read before; never backwards (by the
   model's ``created_at``) unless forced. A lost race re-reads the pointer and decides again.

A failure in one cloud is reported for that cloud and does not stop the others; a re-run finishes
only what is missing. The local artifact is verified against its manifest before anything is sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ArtifactError, OrchestratorError, PreconditionFailed
from orchestrator.registry import Pointer, pointer_key, read_pointer, version_prefix
from orchestrator.storage import ObjectInfo, Storage
from serving.artifact import MANIFEST_NAME, Manifest, verify_artifact

__all__ = ["SyncEvent", "SyncResult", "Target", "sync_artifact"]

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
    kind: str  # "skip", "upload", "verified", "commit", "pointer"
    key: str
    size: int = 0


@dataclass
class SyncResult:
    target: str
    uri: str
    ok: bool = False
    version: str = ""
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    pointer: str = "unchanged"  # "moved", "unchanged", "refused", "not moved (dry run)", "failed"
    previous_version: str | None = None
    error: str | None = None
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
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
    on_event: Callable[[SyncEvent], None] | None = None,
) -> list[SyncResult]:
    """Publish ``artifact`` to every target; one result per target, in order. Raises only for a bad
    local artifact (nothing is sent then); per-target failures are in the results."""
    manifest = verify_artifact(artifact)
    manifest_path = artifact / MANIFEST_NAME
    manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    files = [_File(e.path, artifact / e.path, e.sha256, e.size) for e in manifest.files]
    marker = _File(MANIFEST_NAME, manifest_path, manifest_sha, manifest_path.stat().st_size)
    emit = on_event or (lambda _: None)

    def one(target: Target) -> SyncResult:
        return _sync_one(target, manifest, files, marker, force=force, dry_run=dry_run, emit=emit)

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
    emit: Callable[[SyncEvent], None],
) -> SyncResult:
    started = time.monotonic()
    storage = target.storage
    result = SyncResult(target=target.name, uri=storage.uri, version=manifest.version)
    before = dict(storage.stats)
    try:
        prefix = version_prefix(manifest.name, manifest.version)
        existing = {info.key.removeprefix(prefix): info for info in storage.list(prefix)}
        if _complete(storage, prefix, existing, files, marker):
            result.skipped = [f.key for f in [*files, marker]]
            for f in [*files, marker]:
                emit(SyncEvent(target.name, "skip", f.key, f.size))
        else:
            todo = _plan(storage, prefix, existing, files, result=result, emit=emit)
            if not dry_run:
                _upload(storage, prefix, todo, result, emit)
                _upload(storage, prefix, [marker], result, emit)  # the commit marker, last
            else:
                result.uploaded = [f.key for f in [*todo, marker]]
        _move_pointer(storage, manifest, marker.sha256, result, force=force, dry_run=dry_run)
        emit(SyncEvent(target.name, "pointer", pointer_key(manifest.name)))
        result.ok = result.pointer != "refused"
        if result.pointer == "refused":
            result.error = (
                f"LATEST points to {result.previous_version}, which is newer than {manifest.version}; "
                "pass --force to move it backwards"
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


def _complete(
    storage: Storage, prefix: str, existing: dict[str, ObjectInfo], files: list[_File], marker: _File
) -> bool:
    """The version was published before: the commit marker matches and every file is there."""
    info = existing.get(marker.key)
    if info is None or info.size != marker.size:
        return False
    if any(f.key not in existing or existing[f.key].size != f.size for f in files):
        return False
    sha = info.sha256 if info.sha256 is not None else storage.stat(prefix + marker.key).sha256
    return sha == marker.sha256


def _plan(
    storage: Storage,
    prefix: str,
    existing: dict[str, ObjectInfo],
    files: list[_File],
    *,
    result: SyncResult,
    emit: Callable[[SyncEvent], None],
) -> list[_File]:
    todo = []
    for f in files:
        info = existing.get(f.key)
        if info is not None and info.size == f.size:
            # Listings without metadata (S3) need a stat to learn our sha256.
            sha = info.sha256 if info.sha256 is not None else storage.stat(prefix + f.key).sha256
            if sha == f.sha256:
                result.skipped.append(f.key)
                emit(SyncEvent(result.target, "skip", f.key, f.size))
                continue
        todo.append(f)
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


def _move_pointer(
    storage: Storage, manifest: Manifest, manifest_sha: str, result: SyncResult, *, force: bool, dry_run: bool
) -> None:
    for _ in range(POINTER_ATTEMPTS):
        current, info = read_pointer(storage, manifest.name)
        result.previous_version = current.version if current else None
        previous = current.version if current and current.version != manifest.version else None
        new = Pointer.new(manifest.version, manifest_sha, manifest.created_at, previous=previous)
        if current is not None and current.version == new.version and current.manifest_sha256 == manifest_sha:
            result.pointer = "unchanged"
            return
        if current is not None and current.created_at > new.created_at and not force:
            result.pointer = "refused"
            return
        if dry_run:
            result.pointer = "not moved (dry run)"
            return
        try:
            storage.put_if(pointer_key(manifest.name), new.to_bytes(), token=info.token if info else None)
        except PreconditionFailed:
            continue  # someone moved it since we read it: read again and decide again
        result.pointer = "moved"
        return
    raise PreconditionFailed(
        f"LATEST kept changing under us ({POINTER_ATTEMPTS} attempts); run the sync again",
        uri=storage.key_uri(pointer_key(manifest.name)),
    )
