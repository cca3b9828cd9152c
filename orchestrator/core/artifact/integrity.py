"""Hashing and verifying an artifact's files against its manifest.

Nothing in an artifact is trusted until :func:`verify_artifact` has hashed every file the manifest
lists: the endpoint, training, publishing and the ``verify`` command all go through it (or, for
bytes already in memory, :func:`verify_bytes`). Content identity is sha256, read in 1 MiB chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from orchestrator.core.artifact.manifest import (
    MANIFEST_NAME,
    RESERVED_NAMES,
    FileEntry,
    Manifest,
    load_manifest,
)
from orchestrator.core.errors import ArtifactError

__all__ = ["hash_file", "iter_files", "verify_artifact", "verify_bytes"]

# 1 MiB reads keep hashing at disk speed without holding large files in memory.
_CHUNK = 1 << 20


def hash_file(path: Path) -> tuple[str, int]:
    """Return (sha256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under root except the manifest and the signature, in a stable order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.relative_to(root).as_posix() not in RESERVED_NAMES:
            yield path


def verify_bytes(entry: FileEntry, data: bytes, *, source: str) -> None:
    """Check bytes already in memory against their manifest entry."""
    if len(data) != entry.size:
        raise ArtifactError(
            f"{source}: {entry.path} is {len(data)} bytes, manifest says {entry.size}", path=entry.path
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise ArtifactError(
            f"{source}: {entry.path} sha256 {actual[:12]}… does not match manifest {entry.sha256[:12]}…",
            path=entry.path,
        )


def verify_artifact(root: Path, *, source: str | None = None) -> Manifest:
    """Hash every file the manifest lists; raise ArtifactError naming the first one that differs.

    ``source`` is what messages name (a bucket URI for a download; default: ``root``). Files
    present on disk but not in the manifest are ignored here (the signature, when one is required,
    covers them: :mod:`orchestrator.core.artifact.signing`).
    """
    where = source or str(root)
    manifest = load_manifest(root) if source is None else _load_manifest_as(root, where)
    base = root.resolve()
    for entry in manifest.files:
        path = root / entry.path
        if not path.resolve().is_relative_to(base):
            raise ArtifactError(
                f"{where}: manifest path {entry.path!r} escapes the artifact", path=entry.path
            )
        if not path.is_file():
            raise ArtifactError(f"{where}: {entry.path} is missing", path=entry.path)
        sha, size = hash_file(path)
        if size != entry.size:
            raise ArtifactError(
                f"{where}: {entry.path} is {size} bytes, manifest says {entry.size}", path=entry.path
            )
        if sha != entry.sha256:
            raise ArtifactError(
                f"{where}: {entry.path} sha256 {sha[:12]}… does not match manifest {entry.sha256[:12]}…",
                path=entry.path,
            )
    return manifest


def _load_manifest_as(root: Path, source: str) -> Manifest:
    try:
        return load_manifest(root)
    except ArtifactError as exc:
        # Name the object the manifest came from, not the local directory it was downloaded to.
        raise ArtifactError(
            str(exc).replace(str(root / MANIFEST_NAME), f"{source}/{MANIFEST_NAME}"), path=exc.path
        ) from exc
