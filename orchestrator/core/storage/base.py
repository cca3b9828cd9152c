"""The storage interface every backend implements, and the machinery they all share.

Owns :class:`ObjectInfo`, the :class:`Storage` base class and the settings common to all
backends. The public methods live here and do the cloud-neutral work once: key validation,
mapping keys to object names under the URI's prefix, counting requests in ``stats``, retrying
transient failures, naming the object in every error, atomic downloads, and checking that
``put(bytes)`` really has the sha256 it claims. A backend implements only the ``_``-prefixed
hooks (one provider call each) and ``_translate``, which turns its SDK's exceptions into the
project's :class:`~orchestrator.core.errors.StorageError` tree at the boundary.

Content identity is our own sha256, stored in each object's metadata under ``sha256``. ETags,
generations and MD5s are only version tokens and transfer checks, never content hashes.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TypeVar

from orchestrator.core.errors import (
    ConfigError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorageError,
    TransientError,
)
from orchestrator.core.storage.retry import RetryPolicy, call_with_retry
from orchestrator.core.storage.uri import StorageURI

__all__ = [
    "COMMON_SETTINGS",
    "DEFAULT_CONTENT_TYPE",
    "SHA256_METADATA_KEY",
    "ObjectInfo",
    "Storage",
    "TransferSettings",
    "error_for_status",
    "valid_sha256",
]

T = TypeVar("T")

# The metadata key that holds our sha256 (S3 sends it as x-amz-meta-sha256).
SHA256_METADATA_KEY = "sha256"
# What every backend stores when the caller gives no content type: the providers' own defaults
# differ (S3 binary/octet-stream, GCS text/plain for strings), which would make copies differ.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Segments starting with this are reserved for backends' bookkeeping (the local backend's
# sidecars, temp and lock files); refusing them everywhere keeps one key space for all backends.
RESERVED_SEGMENT_PREFIX = ".~"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")

# Settings every backend accepts; backends add their own in ``settings_keys``.
COMMON_SETTINGS = frozenset({"page_size", "part_size", "max_concurrency", "connect_timeout", "read_timeout"})

# 8 MiB parts: boto3's default chunk size, above S3's 5 MiB minimum part, a multiple of GCS's
# 256 KiB chunk granularity, and small enough that a 50 MB model uploads as 7 parallel parts.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# Parts in flight per object. The sync also uploads several objects at once, so this stays small.
DEFAULT_MAX_CONCURRENCY = 4
# Cloud and loopback endpoints connect in milliseconds; 5 s still tolerates a slow network while
# letting a black-holed endpoint fail within the retry budget.
DEFAULT_CONNECT_TIMEOUT = 5.0
# Longest silence tolerated from a server mid-request (not a total): generous for 8 MiB parts.
DEFAULT_READ_TIMEOUT = 60.0


def error_for_status(status: int) -> type[StorageError]:
    """The error class for an HTTP status, the same for every provider (S3, GCS and Azure agree)."""
    if status == 404:
        return NotFound
    if status in (401, 403):
        return PermissionDenied
    if status == 412:
        return PreconditionFailed
    if status in (408, 429) or status >= 500:
        return TransientError
    return StorageError


def valid_sha256(value: object) -> str | None:
    """``value`` if it is a lowercase hex sha256, else None (metadata is not trusted blindly)."""
    return value if isinstance(value, str) and _SHA256_RE.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a backend knows about one stored object.

    ``key`` is relative to the storage root. ``sha256`` is OUR hash from the object's metadata
    (None when the object has none, or when the backend cannot return metadata in a listing:
    see :attr:`Storage.list_includes_sha256`). ``token`` is an opaque version token for
    :meth:`Storage.put_if` (S3 and Azure ETag, GCS generation, local inode+mtime); it changes
    whenever the content changes (S3 may keep it for an identical rewrite; the others change it
    on every write), and a listing, a stat and a put of the same version agree on it.
    """

    key: str
    size: int
    sha256: str | None = None
    token: str | None = None
    modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """Tuning shared by all backends, parsed from the string ``settings`` mapping."""

    page_size: int | None = None  # objects per LIST request; None: the provider's maximum
    part_size: int = DEFAULT_PART_SIZE  # multipart/chunked threshold and part size, in bytes
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], uri: str) -> TransferSettings:
        page_size = _positive(settings, "page_size", int, uri)
        part_size = _positive(settings, "part_size", int, uri)
        concurrency = _positive(settings, "max_concurrency", int, uri)
        connect = _positive(settings, "connect_timeout", float, uri)
        read = _positive(settings, "read_timeout", float, uri)
        return cls(
            page_size=page_size,
            part_size=DEFAULT_PART_SIZE if part_size is None else part_size,
            max_concurrency=DEFAULT_MAX_CONCURRENCY if concurrency is None else concurrency,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT if connect is None else connect,
            read_timeout=DEFAULT_READ_TIMEOUT if read is None else read,
        )


N = TypeVar("N", int, float)


def _positive(settings: Mapping[str, str], key: str, kind: Callable[[str], N], uri: str) -> N | None:
    raw = settings.get(key)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"storage {uri}: setting {key}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"storage {uri}: setting {key}={raw!r} must be positive")
    return value


class Storage(abc.ABC):
    """One bucket (or directory) and prefix. Keys are relative to the prefix, '/'-separated.

    Every request actually sent is counted in ``stats`` by operation: ``list`` (one per page),
    ``stat``, ``get`` (also ``download``), ``put`` (also ``put_if``) and ``delete``; a retried
    request counts once per attempt. A multipart or chunked transfer counts as one request
    (S3 adds the ``stat`` that reads a multipart upload's result back). Instances are safe to share
    between threads. Use as a context manager, or call :meth:`close`.
    """

    scheme: ClassVar[str]
    # Whether list() returns sha256 from metadata. Where it does not (S3: ListObjectsV2 returns
    # no user metadata), sha256 is None in listings and stat() supplies it.
    list_includes_sha256: ClassVar[bool] = True
    # Backend-specific settings accepted on top of COMMON_SETTINGS.
    settings_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        location: StorageURI,
        *,
        settings: Mapping[str, str],
        retry: RetryPolicy,
        name_prefix: str | None = None,
    ) -> None:
        self.location = location
        self.uri = str(location)
        self.retry = retry
        self.transfer = TransferSettings.from_settings(settings, self.uri)
        self.stats: Counter[str] = Counter()
        # Object names are "<uri prefix>/<key>"; the local backend maps keys to paths instead.
        self._name_prefix = (
            (f"{location.prefix}/" if location.prefix else "") if name_prefix is None else name_prefix
        )
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027  # optional hook: only backends holding connections override it
        """Release connections. The instance must not be used afterwards."""

    def key_uri(self, key: str) -> str:
        """The full URI of ``key``, as error messages name it."""
        return f"{self.uri}/{key}" if key else self.uri

    # --- the interface -------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, not only a
        directory), recursively, sorted by key. Lazy: one LIST request per page, sent as the
        iteration reaches it. A missing bucket raises NotFound; a missing prefix yields nothing."""
        _check_prefix(prefix)
        name_prefix = self._name_prefix + prefix
        target = self.key_uri(prefix)
        page_token: str | None = None
        while True:
            page, page_token = self._call("list", target, partial(self._list_page, name_prefix, page_token))
            yield from page
            if page_token is None:
                return

    def stat(self, key: str) -> ObjectInfo:
        """The object's info, with sha256 from its metadata. NotFound if it does not exist."""
        return self._call("stat", self.key_uri(key), partial(self._stat, self._name(key)))

    def get(self, key: str) -> bytes:
        """The object's whole content; for large objects use :meth:`download`."""
        return self._call("get", self.key_uri(key), partial(self._get, self._name(key)))

    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        """Stream the object into ``path`` (parents created). The file appears complete or not
        at all: data goes to a temporary file beside it, renamed into place at the end."""
        name = self._name(key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._call("get", self.key_uri(key), partial(self._download, name, tmp))
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put(
        self, key: str, data: bytes | Path, *, sha256: str, content_type: str | None = None
    ) -> ObjectInfo:
        """Store ``data`` (bytes, or a file streamed from disk: multipart/chunked above
        ``part_size``) with ``sha256`` in its metadata, replacing any existing object.

        For bytes the sha256 is checked here (ValueError if wrong). A file is not re-read to
        check it: the caller hashed it when it verified the artifact, and ``verify --deep``
        re-hashes what landed. Returns the stored object's info."""
        name = self._name(key)
        if valid_sha256(sha256) is None:
            raise ValueError(f"sha256 must be 64 lowercase hex digits, not {sha256!r}")
        content_type = content_type or DEFAULT_CONTENT_TYPE
        target = self.key_uri(key)
        if isinstance(data, bytes):
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ValueError(f"{target}: the data given to put() does not have sha256 {sha256}")
            return self._call("put", target, partial(self._put_bytes, name, data, sha256, content_type))
        size = data.stat().st_size  # a missing source file is the caller's error, not storage's
        return self._call("put", target, partial(self._put_file, name, data, size, sha256, content_type))

    def put_if(self, key: str, data: bytes, *, token: str | None) -> ObjectInfo:
        """Write ``data`` only if the object is absent (``token=None``) or its current token is
        ``token``; otherwise raise PreconditionFailed. For small objects such as pointers.

        If a retried attempt meets a precondition failure, an earlier attempt may have landed
        with its response lost; when the object now holds exactly ``data``, that write was ours
        (or indistinguishable from it) and its info is returned instead of an error."""
        name = self._name(key)
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.key_uri(key)
        attempts = 0

        def attempt() -> ObjectInfo:
            nonlocal attempts
            attempts += 1
            return self._put_if(name, data, sha256, token)

        try:
            return self._call("put", target, attempt)
        except PreconditionFailed as conflict:
            if attempts == 1:
                raise
            try:
                current = self.stat(key)
            except NotFound:
                raise conflict from conflict.__cause__
            if current.sha256 != sha256:
                raise
            return current

    def delete(self, key: str) -> None:
        """Delete the object; deleting an absent object is not an error (a missing bucket is)."""
        self._call("delete", self.key_uri(key), partial(self._delete, self._name(key)))

    # --- backend hooks: one provider call each, object names are full (prefix included) ---

    @abc.abstractmethod
    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        """One LIST request; returns infos (keys relative, via ``_key``) and the next page token."""

    @abc.abstractmethod
    def _stat(self, name: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def _get(self, name: str) -> bytes: ...

    @abc.abstractmethod
    def _download(self, name: str, dest: Path) -> None:
        """Write the object into ``dest``, which exists; truncate it first (retries reuse it)."""

    @abc.abstractmethod
    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        """The conditional write; raise PreconditionFailed (naming ``_uri_of(name)``) on conflict,
        including when ``token`` is given but the object is absent."""

    @abc.abstractmethod
    def _delete(self, name: str) -> None: ...

    @abc.abstractmethod
    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        """The project error for an SDK exception, or None to let it propagate (a bug)."""

    # --- shared helpers -----------------------------------------------------------------

    def _name(self, key: str) -> str:
        _check_key(key)
        return self._name_prefix + key

    def _key(self, name: str) -> str:
        return name.removeprefix(self._name_prefix)

    def _uri_of(self, name: str) -> str:
        return self.key_uri(self._key(name))

    def _count(self, op: str) -> None:
        with self._stats_lock:
            self.stats[op] += 1

    def _call(self, op: str, target: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            self._count(op)
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:
                translated = self._translate(exc, target)
                if translated is None:
                    raise
                raise translated from exc

        return call_with_retry(self.retry, attempt, target=target)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a storage key must be a non-empty string, not {key!r}")
    segments = key.split("/")
    if any(seg in ("", ".", "..") for seg in segments) or "\x00" in key:
        raise ValueError(f"invalid storage key {key!r}: empty, '.' or '..' segment, or NUL")
    if any(seg.startswith(RESERVED_SEGMENT_PREFIX) for seg in segments):
        raise ValueError(
            f"invalid storage key {key!r}: segments starting {RESERVED_SEGMENT_PREFIX!r} are reserved"
        )


def _check_prefix(prefix: str) -> None:
    if prefix.startswith("/") or "\x00" in prefix or ".." in prefix.split("/"):
        raise ValueError(f"invalid list prefix {prefix!r}")
