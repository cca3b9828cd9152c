"""The Google Cloud Storage backend (google-cloud-storage): ``gs://bucket/prefix``.

Endpoint: the ``endpoint_url`` setting, else ``STORAGE_EMULATOR_HOST`` (which the library also
honours itself); with either, the client uses anonymous credentials and the ``project`` setting
(or ``GOOGLE_CLOUD_PROJECT``, or a placeholder: emulators ignore it). Otherwise Application
Default Credentials apply. The client is created on first use, so opening a storage never
probes for credentials.

Integrity: our sha256 is custom metadata (``metadata["sha256"]``); every transfer carries a
crc32c checksum that the library verifies (uploads: the server compares; downloads: we compare).

Listing cost: objects.list returns custom metadata with each item, so ``list()`` yields sha256
and the generation (our version token) at up to 1000 objects per request: a full listing costs
ceil(n/1000) requests and no stat.

Conditional writes use ``ifGenerationMatch`` (0 means "absent"). gcp-storage-emulator ignores
every precondition and page size; real GCS enforces them, so we always send them.

Retries: the library's own retries (``retry=``, on by default with a 120 s deadline) are off on
every call; timeouts are (connect, read) from the common settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.core.errors import (
    ConfigError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorageError,
    TransientError,
)
from orchestrator.core.lazy import LazyClient
from orchestrator.core.storage.base import (
    DEFAULT_CONTENT_TYPE,
    SHA256_METADATA_KEY,
    ObjectInfo,
    Storage,
    error_for_status,
    valid_sha256,
)
from orchestrator.core.storage.retry import RetryPolicy
from orchestrator.core.storage.uri import StorageURI

__all__ = ["GCSStorage", "translate_error"]

# Resumable uploads send chunks in multiples of 256 KiB.
CHUNK_GRANULARITY = 256 * 1024
# Emulators need a project to construct a client but never check it.
EMULATOR_PROJECT = "local-emulator"
PUBLIC_ENDPOINT = "https://storage.googleapis.com"
# https://cloud.google.com/storage/docs/buckets#naming (dotted names may be up to 222 chars)
_BUCKET_RE = re.compile(r"(?!goog)[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


class GCSStorage(Storage):
    """Objects in a GCS bucket under a prefix."""

    scheme = "gs"
    settings_keys = frozenset({"endpoint_url", "project"})

    def __init__(self, location: StorageURI, *, settings: Mapping[str, str], retry: RetryPolicy) -> None:
        super().__init__(location, settings=settings, retry=retry)
        try:
            import google.cloud.storage  # noqa: F401  # fail at open time, with advice
        except ImportError:
            raise ConfigError(
                f"{self.uri} needs google-cloud-storage: pip install 'ml-orchestrator[gcp]'"
            ) from None
        if not _BUCKET_RE.fullmatch(location.bucket):
            raise ConfigError(f"{self.uri}: {location.bucket!r} is not a valid GCS bucket name")
        if self.transfer.part_size % CHUNK_GRANULARITY:
            raise ConfigError(f"{self.uri}: part_size must be a multiple of 256 KiB for GCS chunked uploads")
        self.bucket = location.bucket
        emulator = settings.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST") or None
        if emulator is not None and "://" not in emulator:
            emulator = f"http://{emulator}"  # STORAGE_EMULATOR_HOST is often given as host:port
        self._emulator = emulator
        self.endpoint = emulator or PUBLIC_ENDPOINT
        self._project = settings.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
        self._timeout = (self.transfer.connect_timeout, self.transfer.read_timeout)
        self._clients = LazyClient(self._make_client)

    @property
    def _client(self) -> Any:
        return self._clients.get()

    def _make_client(self) -> Any:
        from google.cloud import storage

        if self._emulator is None:
            client = storage.Client(project=self._project)
        else:
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(
                project=self._project or EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self._emulator},
            )
        # Since 3.x the library GETs each bucket's metadata from a background thread on first
        # use, for tracing attributes: an extra request we never asked for (and which needs
        # storage.buckets.get). Its only switch is a process-wide environment variable
        # (DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA); every call site treats a falsy cache
        # as "disabled", so this turns it off for our client alone.
        if hasattr(client, "_bucket_metadata_cache"):
            client._bucket_metadata_cache = None
        return client

    def close(self) -> None:
        self._clients.close()

    # --- hooks ---------------------------------------------------------------------------

    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        iterator = self._client.list_blobs(
            self.bucket,
            prefix=prefix,
            page_size=self.transfer.page_size,
            page_token=page_token,
            retry=None,
            timeout=self._timeout,
        )
        page = next(iterator.pages, None)  # exactly one objects.list request
        infos = [self._info(blob) for blob in page] if page is not None else []
        return infos, iterator.next_page_token or None

    def _stat(self, name: str) -> ObjectInfo:
        blob = self._client.bucket(self.bucket).get_blob(name, retry=None, timeout=self._timeout)
        if blob is None:  # a missing bucket also answers 404 here
            raise NotFound("no such object (or bucket)", uri=self._uri_of(name))
        return self._info(blob)

    def _get(self, name: str) -> bytes:
        blob = self._client.bucket(self.bucket).blob(name)
        data: bytes = blob.download_as_bytes(checksum="crc32c", retry=None, timeout=self._timeout)
        return data

    def _download(self, name: str, dest: Path) -> None:
        blob = self._client.bucket(self.bucket).blob(name)
        blob.download_to_filename(str(dest), checksum="crc32c", retry=None, timeout=self._timeout)

    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo:
        blob = self._new_blob(name, sha256, chunked=len(data) > self.transfer.part_size)
        blob.upload_from_string(
            data, content_type=content_type, checksum="crc32c", retry=None, timeout=self._timeout
        )
        return self._info(blob)

    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo:
        blob = self._new_blob(name, sha256, chunked=size > self.transfer.part_size)
        blob.upload_from_filename(
            str(path), content_type=content_type, checksum="crc32c", retry=None, timeout=self._timeout
        )
        return self._info(blob)

    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        from google.api_core import exceptions as gx

        try:
            generation = 0 if token is None else int(token)
        except ValueError:
            raise PreconditionFailed(f"{token!r} is not a GCS generation", uri=self._uri_of(name)) from None
        blob = self._new_blob(name, sha256, chunked=False)
        try:
            blob.upload_from_string(
                data,
                content_type=DEFAULT_CONTENT_TYPE,
                checksum="crc32c",
                if_generation_match=generation,
                retry=None,
                timeout=self._timeout,
            )
        except gx.PreconditionFailed as exc:
            expected = "absent" if token is None else f"at generation {token}"
            raise PreconditionFailed(
                f"conditional write refused: object is not {expected}", uri=self._uri_of(name)
            ) from exc
        return self._info(blob)

    def _delete(self, name: str) -> None:
        from google.api_core import exceptions as gx

        try:
            self._client.bucket(self.bucket).blob(name).delete(retry=None, timeout=self._timeout)
        except gx.NotFound:
            # Absent object: deleting is idempotent. GCS answers the same 404 for a missing
            # bucket, which a delete therefore cannot report.
            return

    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        return translate_error(exc, target, self.endpoint)

    # --- helpers -------------------------------------------------------------------------

    def _new_blob(self, name: str, sha256: str, *, chunked: bool) -> Any:
        # A chunk size makes the upload resumable, in part_size requests; without one the
        # library sends a single multipart request.
        blob = self._client.bucket(self.bucket).blob(
            name, chunk_size=self.transfer.part_size if chunked else None
        )
        blob.metadata = {SHA256_METADATA_KEY: sha256}
        return blob

    def _info(self, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key=self._key(blob.name),
            size=int(blob.size or 0),
            sha256=valid_sha256((blob.metadata or {}).get(SHA256_METADATA_KEY)),
            token=None if blob.generation is None else str(blob.generation),
            modified=blob.updated,
        )


def translate_error(  # noqa: PLR0911  # a flat table: one return per family of SDK exceptions
    exc: BaseException, target: str, endpoint: str
) -> StorageError | None:
    """Map a google-cloud-storage / google-auth / requests exception to the project's tree."""
    import requests
    from google.api_core import exceptions as gx
    from google.auth import exceptions as auth_x
    from google.cloud.storage import exceptions as storage_x

    if isinstance(exc, gx.GoogleAPICallError):
        status = int(exc.code or 0)
        if status == 404:
            return NotFound("no such object (or bucket)", uri=target)
        return error_for_status(status)(
            f"GCS error {status}: {getattr(exc, 'message', None) or exc}", uri=target
        )
    if isinstance(exc, storage_x.DataCorruption):
        return TransientError(f"checksum mismatch in transfer with {endpoint}: {exc}", uri=target)
    if isinstance(exc, storage_x.InvalidResponse):
        status = int(getattr(exc.response, "status_code", 0) or 0)
        return error_for_status(status)(f"unexpected response {status} from {endpoint}: {exc}", uri=target)
    if isinstance(exc, auth_x.DefaultCredentialsError | auth_x.RefreshError):
        return PermissionDenied(
            f"no usable Google credentials ({exc}); set GOOGLE_APPLICATION_CREDENTIALS, or "
            "STORAGE_EMULATOR_HOST for an emulator",
            uri=target,
        )
    if isinstance(exc, auth_x.TransportError):
        return TransientError(f"cannot reach the Google auth endpoint: {exc}", uri=target)
    if isinstance(exc, requests.exceptions.SSLError):
        return StorageError(f"TLS error talking to {endpoint}: {exc}", uri=target)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        # requests wraps urllib3's MaxRetryError, whose "Max retries exceeded" wording appears
        # even with retries off; its ``reason`` is what actually happened.
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return TransientError(f"cannot connect to {endpoint}: {reason or exc}", uri=target)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return TransientError(f"transfer with {endpoint} failed: {exc}", uri=target)
    return None
