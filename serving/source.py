"""Where the endpoint gets its model: ``MODEL_URI`` resolved to a verified :class:`Predictor`.

Accepted forms:

- an artifact directory: a path or ``file:///abs/path`` (verified in place);
- ``<bucket URI>/models/<name>/<version>``: that version, pinned;
- ``<bucket URI>/models/<name>/LATEST``: whatever the pointer names, followed on every reload.

Remote versions are downloaded into a local cache (``$MODEL_CACHE_DIR``, default a temp directory),
into a fresh directory that is renamed into place only after every file verified, so a crash
mid-download never leaves a cache entry that looks whole. A cached version is re-verified before
use; if it fails it is downloaded again. With ``LATEST``, the manifest downloaded must be the one
the pointer names (by sha256): a pointer moved between two reads is caught and retried at the next
reload rather than served half-understood.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from orchestrator.errors import ArtifactError, ConfigError
from serving.artifact import MANIFEST_NAME, parse_manifest
from serving.model import Predictor, load_verified

__all__ = ["Loader", "ModelLocation", "make_loader", "parse_model_uri"]

# Given the model currently served (or None), return the model to serve: ``current`` itself when
# nothing changed, a newly verified one otherwise; raise OrchestratorError to refuse.
Loader = Callable[[Predictor | None], Predictor]

_REMOTE_SCHEMES = ("s3", "gs", "az")
_MODEL_PATH = re.compile(r"^(?P<root>.*?)/?models/(?P<name>[^/]+)/(?P<ref>[^/]+)/?$")


@dataclass(frozen=True)
class ModelLocation:
    root: str  # the bucket URI the registry lives under
    name: str
    ref: str  # a version, or "LATEST"

    @property
    def follows_latest(self) -> bool:
        return self.ref == "LATEST"


def parse_model_uri(uri: str) -> ModelLocation:
    parsed = urlparse(uri)
    match = _MODEL_PATH.match(f"{parsed.netloc}{parsed.path}")
    if parsed.scheme not in _REMOTE_SCHEMES or not match:
        raise ConfigError(
            f"MODEL_URI {uri!r}: expected {{s3,gs,az}}://BUCKET[/PREFIX]/models/NAME/(VERSION|LATEST), "
            "or a local artifact directory"
        )
    return ModelLocation(root=f"{parsed.scheme}://{match['root']}", name=match["name"], ref=match["ref"])


def make_loader(uri: str, *, cache_dir: Path | None = None) -> Loader:
    """The loader for ``uri``; the endpoint calls it at start-up and at every reload."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        return lambda current: _local(root, current)
    location = parse_model_uri(uri)
    cache = cache_dir or Path(
        os.environ.get("MODEL_CACHE_DIR") or Path(tempfile.gettempdir()) / "model-cache"
    )
    return _RemoteLoader(location, cache)


def _local(root: Path, current: Predictor | None) -> Predictor:
    predictor = load_verified(root, source=str(root))
    return current if current is not None and current.manifest == predictor.manifest else predictor


class _RemoteLoader:
    def __init__(self, location: ModelLocation, cache: Path) -> None:
        from orchestrator.storage import open_storage

        self.location = location
        self.cache = cache
        self.storage = open_storage(location.root)

    def __call__(self, current: Predictor | None) -> Predictor:
        from orchestrator.registry import read_pointer

        name, expected_sha = self.location.name, None
        version = self.location.ref
        if self.location.follows_latest:
            pointer, _ = read_pointer(self.storage, name)
            if pointer is None:
                raise ArtifactError(
                    f"{self.storage.key_uri(f'models/{name}/LATEST')}: no model published yet"
                )
            version, expected_sha = pointer.version, pointer.manifest_sha256
        if current is not None and current.version == version:
            return current
        return self._load(version, expected_sha)

    def _load(self, version: str, expected_sha: str | None) -> Predictor:
        from orchestrator.registry import version_prefix

        source = self.storage.key_uri(version_prefix(self.location.name, version)).rstrip("/")
        final = self.cache / self.location.name / version
        if final.is_dir():
            try:
                return self._checked(final, source, expected_sha)
            except ArtifactError:
                shutil.rmtree(final, ignore_errors=True)  # a damaged cache entry: fetch it again
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
        try:
            self._download(version, staging)
            predictor = self._checked(staging, source, expected_sha)
            staging.replace(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return predictor

    def _download(self, version: str, dest: Path) -> None:
        from orchestrator.registry import version_prefix

        prefix = version_prefix(self.location.name, version)
        raw = self.storage.get(prefix + MANIFEST_NAME)
        manifest = parse_manifest(raw, source=self.storage.key_uri(prefix + MANIFEST_NAME))
        (dest / MANIFEST_NAME).write_bytes(raw)
        for entry in manifest.files:
            target = (dest / entry.path).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ArtifactError(f"{prefix}{MANIFEST_NAME}: path {entry.path!r} escapes the artifact")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.storage.download(prefix + entry.path, target)

    @staticmethod
    def _checked(root: Path, source: str, expected_sha: str | None) -> Predictor:
        if expected_sha is not None:
            actual = hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()
            if actual != expected_sha:
                raise ArtifactError(
                    f"{source}/{MANIFEST_NAME}: sha256 {actual[:12]}… is not the {expected_sha[:12]}… "
                    "that LATEST names (it moved mid-read, or the manifest was altered)",
                    path=MANIFEST_NAME,
                )
        return load_verified(root, source=source)
