"""The artifacts' layout in every bucket, the ``LATEST`` pointer, and the model URI grammar.

::

    models/<name>/<version>/<files...>     every file the manifest lists
    models/<name>/<version>/manifest.json  written LAST: the version's commit marker
    models/<name>/LATEST                   {"version", "manifest_sha256", "sequence", "history", ...}
    models/<name>/<CHANNEL>                the same, for another channel (e.g. STABLE)

A version directory without ``manifest.json`` is incomplete and nothing reads it. The manifest is
only written after every file it lists was uploaded and re-verified, and ``LATEST`` only moves
(with a conditional write) after the manifest landed, so a reader following ``LATEST`` never sees
half a version.

Publications are ordered by the pointer's own ``sequence``, which the publisher increments at every
move (with the conditional write, so two publishers cannot both take the same number), never by a
date inside the artifact: an artifact's ``created_at`` is whatever its writer put there. The
pointer also keeps a bounded ``history`` of the versions it pointed at before (newest first);
``sync`` refuses to move it back to one of them unless forced. A pointer written before
``sequence`` existed reads as sequence 0 with an empty history.

A channel is a pointer file beside ``LATEST`` (the default channel): its name is upper case
(:data:`~orchestrator.core.names.CHANNEL_PATTERN`), so ``models/<name>/<ref>`` is a channel or a
version by its text alone. Every pointer records who moved it last (``moved_by``: ``sync``,
``promote``, ``rollback``, ``rollout``); only ``rollback`` and ``rollout`` (and ``sync --force``)
move a pointer back to a version in its history.

A model URI names one model in a bucket, as the endpoint's ``MODEL_URI`` and the stacks'
``model_uri`` output do: ``{s3,gs,az}://BUCKET[/PREFIX]/models/NAME/(VERSION|CHANNEL)``
(:func:`parse_model_uri`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import urlparse

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.core.contract import ENV_MODEL_URI, MODELS, POINTER, REMOTE_SCHEMES
from orchestrator.core.errors import ArtifactError, ConfigError, NotFound
from orchestrator.core.names import (
    NAME_PATTERN,
    check_channel,
    check_model_name,
    check_version,
    is_channel,
    is_valid_name,
)

if TYPE_CHECKING:  # annotations only: parsing a model URI or a pointer imports no storage layer
    from orchestrator.core.storage import ObjectInfo, Storage

__all__ = [
    "HISTORY_LENGTH",
    "MAX_POINTER_BYTES",
    "MAX_SEQUENCE",
    "MOVERS",
    "ModelLocation",
    "Pointer",
    "fetch_pointer",
    "parse_model_uri",
    "parse_pointer",
    "pointer_key",
    "read_pointer",
    "read_pointer_bytes",
    "version_prefix",
]

# Versions the pointer remembers it pointed at: enough for any realistic rollback window (a later
# issue builds `rollback` on it), small enough that the pointer stays a few kB.
HISTORY_LENGTH: Final = 20
# Ours are under 2 kB; anything far larger is not a pointer, and is refused before it is read whole.
MAX_POINTER_BYTES: Final = 64 * 1024
# The last sequence a pointer may hold: the largest integer every JSON reader keeps exact (a double's
# 53-bit mantissa), so no reader rounds it, and +1 can always be written back. A publication a
# second would take 285 million years to reach it: only a hand-written pointer does.
MAX_SEQUENCE: Final = 2**53 - 1
# Who may move a pointer, as recorded in it: a publication, a promotion, a rollback, a rollout's stage.
MOVERS: Final = ("sync", "promote", "rollback", "rollout")


def version_prefix(name: str, version: str) -> str:
    """``models/<name>/<version>/``; both parts are checked against the grammar (ArtifactError)."""
    return f"{MODELS}/{check_model_name(name)}/{check_version(version)}/"


def pointer_key(name: str, channel: str = POINTER) -> str:
    """``models/<name>/<channel>`` (default ``LATEST``); both are checked against their grammar
    (ArtifactError)."""
    return f"{MODELS}/{check_model_name(name)}/{check_channel(channel)}"


class Pointer(BaseModel):
    """The content of ``models/<name>/LATEST``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str = Field(pattern=NAME_PATTERN)
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str = Field(description="the model's created_at (informative: nothing is ordered by it)")
    published_at: str = Field(description="when the pointer moved: ISO 8601 (the rollout grace starts here)")
    # The version this pointer replaced: during a rollout, endpoints still serving it are expected
    # (they pick up the new pointer at their next reload). None for a first publication.
    previous: str | None = Field(default=None, pattern=NAME_PATTERN)
    # +1 at every move; the order of publications. Pointers of the previous release read as 0.
    sequence: int = Field(default=0, ge=0, le=MAX_SEQUENCE)
    # The versions it pointed at before, newest first, at most HISTORY_LENGTH; never the current one.
    history: tuple[str, ...] = Field(default=(), max_length=HISTORY_LENGTH)
    # Who moved it last (one of MOVERS); pointers written before channels existed read as "sync".
    moved_by: str = Field(default="sync", pattern=r"^(sync|promote|rollback|rollout)$")

    @field_validator("history")
    @classmethod
    def _history(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(is_valid_name(v) for v in value):
            raise ValueError("history holds a value that is not a version")
        return value

    @field_validator("published_at")
    @classmethod
    def _published_at(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 date and time") from None
        return value

    @classmethod
    def new(
        cls,
        version: str,
        manifest_sha256: str,
        created_at: str,
        previous: str | None = None,
        *,
        replacing: Pointer | None = None,
        moved_by: str = "sync",
    ) -> Pointer:
        """The pointer that replaces ``replacing`` (None for a first publication, or for a pointer
        that is replaced whole): its sequence + 1, and its version pushed onto the history when the
        version changes. ArtifactError if ``replacing`` is at :data:`MAX_SEQUENCE`."""
        history: tuple[str, ...] = ()
        if replacing is not None and replacing.sequence >= MAX_SEQUENCE:
            raise ArtifactError(
                f"LATEST is at sequence {replacing.sequence}, the last one (only a hand-written pointer "
                "gets there)"
            )
        if replacing is not None:
            history = replacing.history
            if replacing.version != version:
                # The version it named goes first; the new one leaves the history (a pointer's
                # history never holds its current version: a rollback reads history[0]).
                history = (replacing.version, *(v for v in history if v not in (replacing.version, version)))
        return cls(
            version=version,
            manifest_sha256=manifest_sha256,
            created_at=created_at,
            published_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            previous=previous,
            sequence=(replacing.sequence + 1) if replacing is not None else 1,
            history=history[:HISTORY_LENGTH],
            moved_by=moved_by,
        )

    def order(self) -> tuple[int, str]:
        """How pointers of different buckets compare: the higher sequence, ties by version."""
        return (self.sequence, self.version)

    @property
    def published(self) -> float:
        """``published_at`` in unix seconds (a date without a time zone is read as UTC)."""
        moment = datetime.fromisoformat(self.published_at)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    def to_bytes(self) -> bytes:
        """The pointer as stored in ``LATEST`` (indented JSON)."""
        return orjson.dumps(self.model_dump(), option=orjson.OPT_INDENT_2)


def read_pointer(
    storage: Storage, name: str, channel: str = POINTER
) -> tuple[Pointer | None, ObjectInfo | None]:
    """The channel's pointer (default ``LATEST``) and its version token, or (None, None) when it
    was never written."""
    pointer, info, _ = read_pointer_bytes(storage, name, channel)
    return pointer, info


def read_pointer_bytes(
    storage: Storage, name: str, channel: str = POINTER
) -> tuple[Pointer | None, ObjectInfo | None, bytes]:
    """As :func:`read_pointer`, plus the pointer's raw bytes. Larger than
    :data:`MAX_POINTER_BYTES`, or not a valid pointer: ArtifactError naming the object."""
    raw, info = fetch_pointer(storage, name, channel)
    if info is None:
        return None, None, b""
    return parse_pointer(raw, storage.key_uri(pointer_key(name, channel))), info, raw


def fetch_pointer(storage: Storage, name: str, channel: str = POINTER) -> tuple[bytes, ObjectInfo | None]:
    """The pointer's raw bytes and version token, unparsed ((b"", None) when there is none): what an
    endpoint remembers a refusal by, whatever the bytes are. ArtifactError if larger than
    :data:`MAX_POINTER_BYTES` (checked before it is read whole)."""
    key = pointer_key(name, channel)
    try:
        # Token first, content second: if the pointer moves in between, the token is the older one
        # and a conditional write based on it fails safely, instead of succeeding on stale content.
        info = storage.stat(key)
        if info.size > MAX_POINTER_BYTES:
            raise ArtifactError(
                f"{storage.key_uri(key)}: {info.size} bytes is not a pointer (at most {MAX_POINTER_BYTES})",
                path=key,
            )
        raw = storage.get(key)
    except NotFound:
        return b"", None
    if len(raw) > MAX_POINTER_BYTES:
        raise ArtifactError(f"{storage.key_uri(key)}: {len(raw)} bytes is not a pointer", path=key)
    return raw, info


def parse_pointer(raw: bytes, uri: str) -> Pointer:
    """Validate a pointer's bytes; ArtifactError naming ``uri`` and the field at fault."""
    try:
        return Pointer.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        else:
            detail = str(exc)
        raise ArtifactError(f"{uri}: not a valid pointer ({detail})", path=uri) from exc


# <root>/models/<name>/<ref>, on the URI's bucket and path (the root may be empty: the bucket itself).
_MODEL_PATH = re.compile(r"(?P<root>.*?)/?models/(?P<name>[^/]+)/(?P<ref>[^/]+)/?")


@dataclass(frozen=True)
class ModelLocation:
    """A parsed model URI: the bucket root, the model's name, and a version or a channel."""

    root: str  # the bucket URI the models/ layout lives under
    name: str
    ref: str  # a version (lower case), or a channel such as "LATEST" (upper case)

    @property
    def follows_latest(self) -> bool:
        """Whether the URI names a channel (``LATEST`` or another, followed at every reload) rather
        than a version."""
        return is_channel(self.ref)


def parse_model_uri(uri: str, *, where: str = ENV_MODEL_URI) -> ModelLocation:
    """Parse ``{s3,gs,az}://BUCKET[/PREFIX]/models/NAME/(VERSION|CHANNEL)``; ConfigError naming
    ``where`` (default ``MODEL_URI``) and the URI otherwise (a name or version outside the grammar
    included)."""
    parsed = urlparse(uri)
    match = _MODEL_PATH.fullmatch(f"{parsed.netloc}{parsed.path}")
    if parsed.scheme not in REMOTE_SCHEMES or not match or parsed.query or parsed.fragment:
        raise ConfigError(
            f"{where} {uri!r}: expected {{{','.join(REMOTE_SCHEMES)}}}://BUCKET[/PREFIX]/models/NAME/"
            f"(VERSION|{POINTER}) (or another upper-case channel), or a local artifact directory"
        )
    name = check_model_name(match["name"], where=f"{where} {uri!r}", error=ConfigError)
    ref = match["ref"]
    if not is_channel(ref):
        check_version(ref, where=f"{where} {uri!r}", error=ConfigError)
    return ModelLocation(root=f"{parsed.scheme}://{match['root']}", name=name, ref=ref)
