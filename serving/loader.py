"""Where the endpoint gets its model: ``MODEL_URI`` resolved to a verified :class:`Predictor`.

Accepted forms:

- an artifact directory: a path or ``file:///abs/path`` (verified in place);
- ``<bucket URI>/models/<name>/<version>``: that version, pinned;
- ``<bucket URI>/models/<name>/LATEST`` (or another channel, upper case: ``.../STABLE``): whatever
  that channel's pointer names, followed on every reload.

Nothing read from the bucket is trusted until checked, in this order: the pointer (at most 64 kB,
its version in the name grammar), the manifest (at most 4 MiB, names and file paths in the
grammar, its ``name`` equal to the URI's model and its ``version`` to the pointer's, its sha256
the one the pointer names), each object's size equal to the manifest's before it is downloaded,
the signature when a public key is configured (its envelope and the digests it signs, before any
file the manifest lists is downloaded; then again over the downloaded files), every file's sha256,
the ONNX graph's interface, and the canary. Errors name the bucket object at fault.

Remote versions are downloaded into the cache (:class:`serving.cache.ModelCache`, confined to
``$MODEL_CACHE_DIR``), into a fresh directory renamed into place only after everything verified.
A cached version is re-verified before use; if it fails it is removed (inside the cache only) and
downloaded again.

A refusal is remembered by what was refused: the pointer's bytes (``LATEST``; its version token
when it is too large to be read), the manifest object's version token (a pinned version), or the
manifest's bytes and the files' sizes and modification times (a local directory). Until that
changes, a reload raises :class:`StillRefused` at the cost of one small read, and nothing is
downloaded again. Failures that are not the content's are not remembered, and are retried with
backoff: transient storage errors, denied access, and local ones (``OSError``: a full disk, an
unusable cache directory, another endpoint sharing the cache installing the same version at the
same moment).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from orchestrator.core.artifact.layout import (
    ModelLocation,
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
from orchestrator.core.artifact.signing import MAX_SIGNATURE_BYTES, SignatureVerifier
from orchestrator.core.errors import ArtifactError, ConfigError, NotFound, PermissionDenied, TransientError
from serving.cache import CacheError, ModelCache
from serving.model import Predictor, load_verified

__all__ = ["Loader", "StillRefused", "make_loader"]

# Given the model currently served (or None), return the model to serve: ``current`` itself when
# nothing changed, a newly verified one otherwise; raise to refuse.
Loader = Callable[[Predictor | None], Predictor]

# Refusals remembered per loader: a pointer moving between many bad versions forgets the oldest.
_REMEMBERED = 64


class StillRefused(ArtifactError):
    """The source still holds what was refused before; nothing was downloaded this time."""


def make_loader(
    uri: str, *, cache_dir: Path | None = None, verifier: SignatureVerifier | None = None
) -> Loader:
    """The loader for ``uri``; the endpoint calls it at start-up and at every reload. With a
    ``verifier``, every version must carry a signature that verifies with its key. Remote versions
    are cached under ``cache_dir`` (default ``$TMPDIR/model-cache``; the endpoint passes
    ``$MODEL_CACHE_DIR``). ConfigError for a URI outside the grammar or a local path to a file."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        if root.is_file():
            raise ConfigError(
                f"MODEL_URI {uri!r}: {root} is a file, not an artifact directory (to follow a LATEST "
                "pointer, serve the bucket's URI: s3://, gs:// or az://)"
            )
        return _LocalLoader(root, verifier)
    location = parse_model_uri(uri)
    cache = cache_dir or Path(tempfile.gettempdir()) / "model-cache"
    return _RemoteLoader(location, ModelCache(cache), verifier)


class _Refusals:
    """What was refused, by the key of what was read; bounded, oldest forgotten first. Thread-safe:
    a reload given up past its deadline may still be running beside the next one."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        with self._lock:
            message = self._seen.get(key)
        if message is not None:
            raise StillRefused(f"still refused (unchanged since): {message}")

    def remember(self, key: str, exc: Exception) -> None:
        if isinstance(exc, TransientError | PermissionDenied | OSError):
            return  # the storage's or this machine's trouble, not the content's: retried
        with self._lock:
            self._seen[key] = str(exc)
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)


class _LocalLoader:
    def __init__(self, root: Path, verifier: SignatureVerifier | None) -> None:
        self.root = root
        self.verifier = verifier
        self.refused = _Refusals()

    def _key(self) -> str:
        """The manifest's bytes plus the size and mtime of every file: what a change would touch."""
        digest = hashlib.sha256()
        try:
            digest.update((self.root / MANIFEST_NAME).read_bytes()[: MAX_MANIFEST_BYTES + 1])
            for path in sorted(self.root.rglob("*")):
                info = path.lstat()
                digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
        except OSError:
            return ""
        return digest.hexdigest()

    def __call__(self, current: Predictor | None) -> Predictor:
        key = self._key()
        if key:
            self.refused.check(key)
        try:
            predictor = load_verified(self.root, source=str(self.root), verifier=self.verifier)
        except Exception as exc:
            if key:
                self.refused.remember(key, exc)
            raise
        same = current is not None and current.manifest_sha256 == predictor.manifest_sha256
        return current if same and current is not None else predictor


class _RemoteLoader:
    def __init__(
        self, location: ModelLocation, cache: ModelCache, verifier: SignatureVerifier | None
    ) -> None:
        # Imported here: an endpoint serving a local directory never loads the storage layer.
        from orchestrator.core.storage import open_storage

        self.location = location
        self.cache = cache
        self.verifier = verifier
        self.storage = open_storage(location.root)
        self.refused = _Refusals()

    def __call__(self, current: Predictor | None) -> Predictor:
        name = self.location.name
        expected_sha: str | None = None
        if self.location.follows_latest:
            try:
                raw, info = fetch_pointer(self.storage, name, self.location.ref)
            except ArtifactError as exc:
                # Too large to be a pointer, refused by its size before it was read: remembered by
                # the object's version token instead of its bytes (one more small read).
                token = self.storage.stat(pointer_key(name, self.location.ref)).token
                if token is not None:
                    self.refused.check(f"pointer-object:{token}")
                    self.refused.remember(f"pointer-object:{token}", exc)
                raise
            uri = self.storage.key_uri(pointer_key(name, self.location.ref))
            if info is None:
                raise ArtifactError(f"{uri}: no model published yet")
            key = "pointer:" + hashlib.sha256(raw).hexdigest()
            self.refused.check(key)  # a pointer refused before, whatever was wrong with it
            try:
                pointer = parse_pointer(raw, uri)
            except ArtifactError as exc:
                self.refused.remember(key, exc)
                raise
            version, expected_sha = pointer.version, pointer.manifest_sha256
            if current is not None and (current.version, current.manifest_sha256) == (version, expected_sha):
                return current
        else:
            version = self.location.ref
            if current is not None and current.version == version:
                return current
            manifest_key = version_prefix(name, version) + MANIFEST_NAME
            key = f"pinned:{version}:{self.storage.stat(manifest_key).token}"
        self.refused.check(key)
        try:
            return self._load(version, expected_sha, current)
        except Exception as exc:
            self.refused.remember(key, exc)
            raise

    def _load(self, version: str, expected_sha: str | None, current: Predictor | None) -> Predictor:
        """Load ``version`` through the cache, then keep only it and ``current``'s in the cache.
        A local failure (OSError) becomes a CacheError naming the bucket object and the cache."""
        prefix = version_prefix(self.location.name, version)
        source = self.storage.key_uri(prefix).rstrip("/")
        try:
            predictor = self._through_cache(prefix, source, version, expected_sha)
        except CacheError:
            raise
        except OSError as exc:
            raise CacheError(
                f"{source}: cannot be stored in the model cache {self.cache.root} ({exc.strerror or exc})"
            ) from exc
        keep = {version} | ({current.version} if current is not None else set())
        self.cache.prune(self.location.name, keep)
        return predictor

    def _through_cache(self, prefix: str, source: str, version: str, expected_sha: str | None) -> Predictor:
        final = self.cache.entry(self.location.name, version)
        if final.is_dir():
            try:
                return self._checked(final, source, version, expected_sha)
            except (ArtifactError, OSError):
                self.cache.remove(final)  # a damaged cache entry (inside the cache): fetch it again
        staging = self.cache.staging(self.location.name, version)
        try:
            self._download(prefix, version, expected_sha, staging)
            predictor = self._checked(staging, source, version, expected_sha)
            self.cache.install(staging, final)
        finally:
            self.cache.remove(staging)
        return predictor

    def _fetch(self, key: str, dest: Path, *, size: int | None = None, limit: int | None = None) -> None:
        """Download ``key`` to ``dest`` after checking its size: exactly ``size``, or at most
        ``limit``; the error names the object."""
        info = self.storage.stat(key)
        if size is not None and info.size != size:
            raise ArtifactError(
                f"{self.storage.key_uri(key)}: {info.size} bytes, the manifest says {size}",
                path=key,
            )
        if limit is not None and info.size > limit:
            raise ArtifactError(
                f"{self.storage.key_uri(key)}: {info.size} bytes, more than the {limit} accepted", path=key
            )
        try:
            self.storage.download(key, dest)
        except OSError as exc:
            raise CacheError(
                f"{self.storage.key_uri(key)}: cannot be written to the model cache {self.cache.root} "
                f"({exc.strerror or exc})"
            ) from exc
        if dest.stat().st_size != info.size:  # replaced between the stat and the download
            raise ArtifactError(f"{self.storage.key_uri(key)}: changed while it was downloaded", path=key)

    def _download(self, prefix: str, version: str, expected_sha: str | None, dest: Path) -> None:
        manifest_uri = self.storage.key_uri(prefix + MANIFEST_NAME)
        self._fetch(prefix + MANIFEST_NAME, dest / MANIFEST_NAME, limit=MAX_MANIFEST_BYTES)
        raw = (dest / MANIFEST_NAME).read_bytes()
        _check_manifest_sha(raw, expected_sha, manifest_uri)
        manifest = parse_manifest(raw, source=manifest_uri)
        self._check_identity(manifest, version, manifest_uri)
        if self.verifier is not None:
            # Authenticity before anything large is read: the signature must verify with the key
            # and sign exactly these bytes of the manifest, which names every other file's sha256.
            # A missing signature is refused as unsigned by the verifier, with that message.
            with contextlib.suppress(NotFound):
                self._fetch(prefix + SIGNATURE_NAME, dest / SIGNATURE_NAME, limit=MAX_SIGNATURE_BYTES)
            self.verifier.verify_digests(
                dest / SIGNATURE_NAME,
                manifest.published_digests(hashlib.sha256(raw).hexdigest()),
                source=self.storage.key_uri(prefix).rstrip("/"),
            )
        base = dest.resolve()
        for entry in manifest.files:
            target = dest / entry.path  # a path the manifest's grammar allows: relative, no '..'
            if not target.resolve().is_relative_to(base):
                raise ArtifactError(
                    f"{manifest_uri}: path {entry.path!r} escapes the artifact", path=entry.path
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(prefix + entry.path, target, size=entry.size)

    def _checked(self, root: Path, source: str, version: str, expected_sha: str | None) -> Predictor:
        if expected_sha is not None:
            _check_manifest_sha(
                (root / MANIFEST_NAME).read_bytes(), expected_sha, f"{source}/{MANIFEST_NAME}"
            )
        predictor = load_verified(root, source=source, verifier=self.verifier)
        self._check_identity(predictor.manifest, version, f"{source}/{MANIFEST_NAME}")
        return predictor

    def _check_identity(self, manifest: Manifest, version: str, where: str) -> None:
        """ArtifactError unless the manifest is this URI's model and the version asked for."""
        if manifest.name != self.location.name or manifest.version != version:
            raise ArtifactError(
                f"{where}: the manifest is {manifest.name} {manifest.version}, not "
                f"{self.location.name} {version} as the URI and pointer say",
                path=MANIFEST_NAME,
            )


def _check_manifest_sha(raw: bytes, expected_sha: str | None, where: str) -> None:
    """ArtifactError unless the manifest's bytes have the sha256 ``LATEST`` names (if it names one)."""
    if expected_sha is None:
        return
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected_sha:
        raise ArtifactError(
            f"{where}: sha256 {actual[:12]}… is not the {expected_sha[:12]}… that LATEST names (it moved "
            "mid-read, or the manifest was altered)",
            path=MANIFEST_NAME,
        )
