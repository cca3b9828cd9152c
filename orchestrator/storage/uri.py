"""Storage URIs: parsing them, and opening the backend a URI names.

Accepted forms (the bucket or container must already exist; the prefix need not)::

    file:///abs/path   or a bare path   local directory (relative paths are made absolute)
    s3://bucket[/prefix]                Amazon S3, or anything speaking its API (moto)
    gs://bucket[/prefix]                Google Cloud Storage (or gcp-storage-emulator)
    az://container[/prefix]             Azure Blob Storage; the account comes from settings

Only this module knows the schemes. Each backend module is imported when its scheme is first
opened, so importing :mod:`orchestrator.storage` never imports a cloud SDK.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import quote, unquote, urlsplit

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.storage.base import Storage
    from orchestrator.storage.retry import RetryPolicy

__all__ = ["Scheme", "StorageURI", "allowed_settings", "open_storage", "parse_uri"]

Scheme = Literal["file", "s3", "gs", "az"]

# scheme -> "module:Class", imported on first use (the lazy-import rule for cloud SDKs).
_BACKENDS: dict[str, str] = {
    "file": "orchestrator.storage.local:LocalStorage",
    "s3": "orchestrator.storage.aws:S3Storage",
    "gs": "orchestrator.storage.gcp:GCSStorage",
    "az": "orchestrator.storage.azure:AzureStorage",
}

# Loose on purpose: each backend checks its provider's exact naming rules and says which rule
# failed; this only keeps obviously broken URIs (spaces, ports, credentials) out.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")


@dataclass(frozen=True, slots=True)
class StorageURI:
    """A parsed storage URI.

    ``bucket`` is the bucket or container (``""`` for ``file``). ``prefix`` has no leading or
    trailing ``/``; for ``file`` it is the absolute directory path instead.
    """

    scheme: Scheme
    bucket: str
    prefix: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{quote(self.prefix)}"  # quoted, so that parse_uri(str(u)) == u
        return (
            f"{self.scheme}://{self.bucket}/{self.prefix}"
            if self.prefix
            else f"{self.scheme}://{self.bucket}"
        )


def parse_uri(uri: str) -> StorageURI:
    """Parse ``uri``; raises :class:`ConfigError` naming the URI and what is wrong with it."""
    if not uri or uri != uri.strip():
        raise ConfigError(f"invalid storage URI {uri!r}: empty or surrounded by whitespace")
    if "://" not in uri:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri):
            raise ConfigError(f"invalid storage URI {uri!r}: expected SCHEME://..., one of {_schemes()}")
        return StorageURI("file", "", _normal_dir(str(Path(uri).absolute()), uri))
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in get_args(Scheme):
        raise ConfigError(
            f"unsupported storage URI {uri!r}: scheme {parts.scheme!r} is not one of {_schemes()}"
        )
    if parts.query or parts.fragment or uri.endswith(("?", "#")):
        raise ConfigError(f"invalid storage URI {uri!r}: '?' and '#' are not allowed")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"invalid storage URI {uri!r}: file URIs take no host (use file:///abs/path)")
        return StorageURI("file", "", _normal_dir(unquote(parts.path), uri))
    bucket = parts.netloc
    if not bucket:
        raise ConfigError(f"invalid storage URI {uri!r}: no bucket or container after {scheme}://")
    if not _BUCKET_RE.fullmatch(bucket):
        raise ConfigError(
            f"invalid storage URI {uri!r}: {bucket!r} is not a bucket or container name "
            "(lowercase letters, digits, '.', '-', '_')"
        )
    prefix = parts.path.strip("/")
    if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
        raise ConfigError(f"invalid storage URI {uri!r}: the prefix has an empty, '.' or '..' segment")
    return StorageURI(scheme, bucket, prefix)  # type: ignore[arg-type]  # checked against Scheme above


def open_storage(
    uri: str,
    *,
    settings: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
) -> Storage:
    """Open the backend ``uri`` names. No request is sent until the first operation.

    ``settings`` are strings, as a configuration file supplies them: ``endpoint_url`` and
    ``region`` (s3), ``endpoint_url`` and ``project`` (gs), ``connection_string`` and
    ``account_url`` (az), and for every backend ``page_size``, ``part_size``,
    ``max_concurrency``, ``connect_timeout`` and ``read_timeout``. Without them the standard
    environment variables apply (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``,
    ``AZURE_STORAGE_CONNECTION_STRING``...). An unknown setting is a :class:`ConfigError`.
    ``retry`` defaults to :data:`~orchestrator.storage.retry.DEFAULT_RETRY`.
    """
    from orchestrator.storage.retry import DEFAULT_RETRY

    location = parse_uri(uri)
    cls = _backend_class(location.scheme)
    given = dict(settings or {})
    allowed = allowed_settings(uri)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(
            f"storage {uri}: unknown setting(s) {', '.join(unknown)}; "
            f"{location.scheme}:// accepts {', '.join(sorted(allowed))}"
        )
    return cls(location, settings=given, retry=retry or DEFAULT_RETRY)


def allowed_settings(uri: str) -> frozenset[str]:
    """The setting keys :func:`open_storage` accepts for ``uri`` (ConfigError for a bad URI).
    Imports the backend's module, never its SDK."""
    from orchestrator.storage.base import COMMON_SETTINGS

    return COMMON_SETTINGS | _backend_class(parse_uri(uri).scheme).settings_keys


def _backend_class(scheme: str) -> type[Storage]:
    module_name, _, class_name = _BACKENDS[scheme].partition(":")
    cls: type[Storage] = getattr(importlib.import_module(module_name), class_name)
    return cls


def _normal_dir(path: str, uri: str) -> str:
    if not path.startswith("/"):
        raise ConfigError(f"invalid storage URI {uri!r}: a file URI needs an absolute path")
    normal = os.path.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it a special meaning); one is enough here.
    return "/" + normal.lstrip("/")


def _schemes() -> str:
    return ", ".join(f"{s}://" for s in get_args(Scheme))
