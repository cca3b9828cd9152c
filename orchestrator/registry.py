"""The model registry layout in every bucket, and the ``LATEST`` pointer.

::

    models/<name>/<version>/<files...>     every file the manifest lists
    models/<name>/<version>/manifest.json  written LAST: the version's commit marker
    models/<name>/LATEST                   {"version", "manifest_sha256", "created_at", "published_at"}

A version directory without ``manifest.json`` is incomplete and nothing reads it. The manifest is
only written after every file it lists was uploaded and re-verified, and ``LATEST`` only moves
(with a conditional write) after the manifest landed, so a reader following ``LATEST`` never sees
half a version.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ArtifactError, NotFound
from orchestrator.storage import ObjectInfo, Storage

__all__ = ["MODELS", "POINTER", "Pointer", "pointer_key", "read_pointer", "version_prefix"]

MODELS = "models"
POINTER = "LATEST"


def version_prefix(name: str, version: str) -> str:
    return f"{MODELS}/{name}/{version}/"


def pointer_key(name: str) -> str:
    return f"{MODELS}/{name}/{POINTER}"


class Pointer(BaseModel):
    """The content of ``models/<name>/LATEST``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str = Field(description="the model's created_at: versions are ordered by it")
    published_at: str
    # The version this pointer replaced: during a rollout, endpoints still serving it are expected
    # (they pick up the new pointer at their next reload). None for a first publication.
    previous: str | None = None

    @classmethod
    def new(cls, version: str, manifest_sha256: str, created_at: str, previous: str | None = None) -> Pointer:
        return cls(
            version=version,
            manifest_sha256=manifest_sha256,
            created_at=created_at,
            published_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            previous=previous,
        )

    @property
    def published(self) -> float:
        """``published_at`` in unix seconds."""
        return datetime.fromisoformat(self.published_at).timestamp()

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(), option=orjson.OPT_INDENT_2)


def read_pointer(storage: Storage, name: str) -> tuple[Pointer | None, ObjectInfo | None]:
    """The pointer and its version token, or (None, None) when the model was never published."""
    key = pointer_key(name)
    try:
        # Token first, content second: if the pointer moves in between, the token is the older one
        # and a conditional write based on it fails safely, instead of succeeding on stale content.
        info = storage.stat(key)
        raw = storage.get(key)
    except NotFound:
        return None, None
    try:
        return Pointer.model_validate(orjson.loads(raw)), info
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ArtifactError(f"{storage.key_uri(key)}: not a valid pointer ({exc})", path=key) from exc
