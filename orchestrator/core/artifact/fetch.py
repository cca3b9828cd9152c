"""Reading one artifact named by a URI, checked as the endpoint checks what it serves.

A model URI is a local artifact directory (a path or ``file:///abs/path``), a bucket version
``{s3,gs,az}://BUCKET[/PREFIX]/models/NAME/VERSION``, or the bucket's ``.../models/NAME/LATEST``
(:func:`orchestrator.core.artifact.layout.parse_model_uri`). Nothing read is trusted until checked,
in the endpoint's order (``serving/loader.py``): the pointer (at most 64 kB, in the grammar), the
manifest (at most 4 MiB; its sha256 the one the pointer names; its ``name`` and ``version`` the
URI's), each object's size equal to the manifest's before it is downloaded, the signature when a
verifier is given (over the manifest's digests before any listed file is downloaded, then over the
directory), and every file's sha256. Errors name the bucket object (or directory) at fault.

Used by ``train`` and ``package`` to read the champion of ``--against``.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from orchestrator.core.artifact.integrity import hash_file, verify_artifact
from orchestrator.core.artifact.layout import (
    fetch_pointer,
    parse_model_uri,
    parse_pointer,
    pointer_key,
    version_prefix,
)
from orchestrator.core.artifact.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    Manifest,
    parse_manifest,
)
from orchestrator.core.errors import ArtifactError, ConfigError, NotFound

if TYPE_CHECKING:
    from orchestrator.core.artifact.signing import SignatureVerifier
    from orchestrator.core.storage import Storage

__all__ = ["VerifiedArtifact", "open_verified"]


@dataclass(frozen=True)
class VerifiedArtifact:
    """A verified artifact on local disk: its directory, manifest, the manifest's sha256 (hex, of
    its bytes: what ``LATEST`` names) and where it came from (the URI's object, for messages)."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    source: str


def open_verified(
    uri: str, workdir: Path, *, verifier: SignatureVerifier | None = None, where: str = "--against"
) -> VerifiedArtifact:
    """The artifact ``uri`` names, verified; a remote one is downloaded under ``workdir`` (which the
    caller removes). ConfigError naming ``where`` for a URI outside the grammar or a local path that
    is not a directory; ArtifactError (SignatureError with a ``verifier``) for what fails a check,
    naming the object; StorageError as the backend raises it (NotFound for a missing bucket)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        if not root.is_dir():
            raise ConfigError(f"{where} {uri}: no such artifact directory")
        manifest = verify_artifact(root)
        if verifier is not None:
            verifier.verify(root, source=str(root))
        sha, _ = hash_file(root / MANIFEST_NAME)
        return VerifiedArtifact(root=root, manifest=manifest, manifest_sha256=sha, source=str(root))

    from orchestrator.core.storage import open_storage

    location = parse_model_uri(uri, where=where)
    storage = open_storage(location.root)
    expected_sha: str | None = None
    version = location.ref
    if location.follows_latest:
        raw, info = fetch_pointer(storage, location.name, location.ref)
        pointer_uri = storage.key_uri(pointer_key(location.name, location.ref))
        if info is None:
            raise ArtifactError(f"{pointer_uri}: no model published yet")
        pointer = parse_pointer(raw, pointer_uri)
        version, expected_sha = pointer.version, pointer.manifest_sha256
    prefix = version_prefix(location.name, version)
    source = storage.key_uri(prefix).rstrip("/")
    dest = workdir / location.name / version
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _download(storage, prefix, dest, expected_sha, verifier=verifier)
    if (manifest.name, manifest.version) != (location.name, version):
        raise ArtifactError(
            f"{source}/{MANIFEST_NAME}: the manifest is {manifest.name} {manifest.version}, not "
            f"{location.name} {version} as the URI and pointer say",
            path=MANIFEST_NAME,
        )
    verify_artifact(dest, source=source)
    if verifier is not None:
        verifier.verify(dest, source=source)
    sha, _ = hash_file(dest / MANIFEST_NAME)
    return VerifiedArtifact(root=dest, manifest=manifest, manifest_sha256=sha, source=source)


def _fetch(
    storage: Storage, key: str, dest: Path, *, size: int | None = None, limit: int | None = None
) -> None:
    """Download ``key`` after checking its size: exactly ``size``, or at most ``limit``."""
    info = storage.stat(key)
    if size is not None and info.size != size:
        raise ArtifactError(f"{storage.key_uri(key)}: {info.size} bytes, the manifest says {size}", path=key)
    if limit is not None and info.size > limit:
        raise ArtifactError(
            f"{storage.key_uri(key)}: {info.size} bytes, more than the {limit} accepted", path=key
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    storage.download(key, dest)
    if dest.stat().st_size != info.size:
        raise ArtifactError(f"{storage.key_uri(key)}: changed while it was downloaded", path=key)


def _download(
    storage: Storage,
    prefix: str,
    dest: Path,
    expected_sha: str | None,
    *,
    verifier: SignatureVerifier | None,
) -> Manifest:
    from orchestrator.core.artifact.signing import MAX_SIGNATURE_BYTES

    manifest_uri = storage.key_uri(prefix + MANIFEST_NAME)
    try:
        _fetch(storage, prefix + MANIFEST_NAME, dest / MANIFEST_NAME, limit=MAX_MANIFEST_BYTES)
    except NotFound as exc:
        raise ArtifactError(f"{manifest_uri}: no such version (no manifest)", path=MANIFEST_NAME) from exc
    raw = (dest / MANIFEST_NAME).read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if expected_sha is not None and actual != expected_sha:
        raise ArtifactError(
            f"{manifest_uri}: sha256 {actual[:12]}… is not the {expected_sha[:12]}… that LATEST names",
            path=MANIFEST_NAME,
        )
    manifest = parse_manifest(raw, source=manifest_uri)
    if verifier is not None:
        # Authenticity before anything large is read; a missing signature is refused as unsigned.
        with contextlib.suppress(NotFound):
            _fetch(storage, prefix + SIGNATURE_NAME, dest / SIGNATURE_NAME, limit=MAX_SIGNATURE_BYTES)
        verifier.verify_digests(
            dest / SIGNATURE_NAME,
            manifest.published_digests(actual),
            source=storage.key_uri(prefix).rstrip("/"),
        )
    base = dest.resolve()
    for entry in manifest.files:
        target = dest / entry.path
        if not target.resolve().is_relative_to(base):
            raise ArtifactError(f"{manifest_uri}: path {entry.path!r} escapes the artifact", path=entry.path)
        _fetch(storage, prefix + entry.path, target, size=entry.size)
    return manifest
