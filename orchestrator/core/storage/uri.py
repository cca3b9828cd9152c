"""Storage URIs: parsing them (pure: this module imports nothing of the storage layer).

Accepted forms (the bucket or container must already exist; the prefix need not)::

    file:///abs/path   or a bare path   local directory (relative paths are made absolute)
    s3://bucket[/prefix]                Amazon S3, or anything speaking its API (moto)
    gs://bucket[/prefix]                Google Cloud Storage (or gcp-storage-emulator)
    az://container[/prefix]             Azure Blob Storage; the account comes from settings

Only this module knows the schemes; :mod:`~orchestrator.core.storage.backends` maps each to its
backend and opens it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import quote, unquote, urlsplit

from orchestrator.core.errors import ConfigError

__all__ = ["Scheme", "StorageURI", "parse_uri"]

# file:// and the three clouds' schemes (orchestrator.core.contract.REMOTE_SCHEMES).
Scheme = Literal["file", "s3", "gs", "az"]

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


def _normal_dir(path: str, uri: str) -> str:
    if not path.startswith("/"):
        raise ConfigError(f"invalid storage URI {uri!r}: a file URI needs an absolute path")
    normal = os.path.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it a special meaning); one is enough here.
    return "/" + normal.lstrip("/")


def _schemes() -> str:
    return ", ".join(f"{s}://" for s in get_args(Scheme))
