"""The Azure Blob Storage backend (azure-storage-blob): ``az://container/prefix``.

The account comes from the ``connection_string`` setting or ``AZURE_STORAGE_CONNECTION_STRING``
(Azurite's included), or from ``account_url`` (or ``AZURE_STORAGE_ACCOUNT``) with
DefaultAzureCredential: that is how the endpoint reads its container in Azure, with its
user-assigned managed identity (``AZURE_CLIENT_ID`` names it) and no key anywhere. azure-identity
ships with the ``azure`` extra; without it, asking for an account URL is a ConfigError saying so.

Integrity: our sha256 is blob metadata (``x-ms-meta-sha256``). As transfer checks, single-shot
uploads carry a Content-MD5 we compute (the service refuses a mismatch and stores it), and every
request of a block upload carries its own transactional MD5 (``validate_content``). Block blobs
get no whole-blob MD5 from the service, which is why neither MD5 is content identity.

Listing cost: List Blobs with ``include=metadata`` returns sha256 and the ETag (our version
token) for up to 5000 blobs per request: a full listing costs ceil(n/5000) requests, no stat.

Conditional writes: ``overwrite=False`` for "only if absent" (``etag='*'`` with
``MatchConditions.IfMissing`` raises TypeError in this SDK), ``etag=`` with ``IfNotModified``
for "only if unchanged". Listings return ETags unquoted and everything else quoted; tokens are
normalised to the quoted form so a listed token equals a stat()ed one.

Retries: the SDK's retry policy is off (``retry_total=0``); timeouts are the common settings.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.core.contract import ENV_AZURE_STORAGE_ACCOUNT
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

__all__ = ["AzureStorage", "translate_error"]

# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_CONTAINER_RE = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# 1 MiB reads to compute a file's Content-MD5 without holding it in memory.
_CHUNK = 1 << 20
_NO_ACCOUNT = (
    "no Azure storage account configured: set AZURE_STORAGE_CONNECTION_STRING (or the "
    "connection_string setting; for Azurite, its development-account connection string with "
    "BlobEndpoint=http://127.0.0.1:PORT/devstoreaccount1)"
)


class AzureStorage(Storage):
    """Blobs in an Azure container under a prefix."""

    scheme = "az"
    settings_keys = frozenset({"connection_string", "account_url"})

    def __init__(self, location: StorageURI, *, settings: Mapping[str, str], retry: RetryPolicy) -> None:
        super().__init__(location, settings=settings, retry=retry)
        try:
            import azure.storage.blob  # fail at open time, with advice
        except ImportError:
            raise ConfigError(
                f"{self.uri} needs azure-storage-blob: pip install 'ml-orchestrator[azure]'"
            ) from None
        if not _CONTAINER_RE.fullmatch(location.bucket):
            raise ConfigError(f"{self.uri}: {location.bucket!r} is not a valid Azure container name")
        self.container = location.bucket
        self._connection_string = (
            settings.get("connection_string") or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or None
        )
        account = os.environ.get(ENV_AZURE_STORAGE_ACCOUNT)
        self._account_url = settings.get("account_url") or (
            f"https://{account}.blob.core.windows.net" if account else None
        )
        if self._connection_string is not None:
            self.endpoint = _blob_endpoint(self._connection_string)
        elif self._account_url is not None:
            try:
                import azure.identity  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"{self.uri}: account_url {self._account_url} needs azure-identity for "
                    "DefaultAzureCredential, which is not installed (pip install 'ml-orchestrator[azure]'); "
                    + _NO_ACCOUNT.removeprefix("no Azure storage account configured: ")
                ) from None
            self.endpoint = self._account_url
        else:
            raise ConfigError(f"{self.uri}: {_NO_ACCOUNT}")
        self._clients = LazyClient(self._make_client)

    @property
    def _client(self) -> Any:
        """The ContainerClient; blob clients made from it share its connection pool."""
        return self._clients.get()

    def _make_client(self) -> Any:
        from azure.storage.blob import ContainerClient

        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": self.transfer.connect_timeout,
            "read_timeout": self.transfer.read_timeout,
            # Above part_size, uploads go as blocks of part_size and downloads as ranges of it.
            "max_single_put_size": self.transfer.part_size,
            "max_block_size": self.transfer.part_size,
            "max_single_get_size": self.transfer.part_size,
            "max_chunk_get_size": self.transfer.part_size,
        }
        if self._connection_string is not None:
            return ContainerClient.from_connection_string(
                self._connection_string, container_name=self.container, **options
            )
        from azure.identity import DefaultAzureCredential

        assert self._account_url is not None  # __init__ refuses a storage with neither
        return ContainerClient(
            self._account_url, container_name=self.container, credential=DefaultAzureCredential(), **options
        )

    def close(self) -> None:
        self._clients.close()

    # --- hooks ---------------------------------------------------------------------------

    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        pages = self._client.list_blobs(
            name_starts_with=prefix, include=["metadata"], results_per_page=self.transfer.page_size
        ).by_page(continuation_token=page_token)
        page = next(pages, None)  # exactly one List Blobs request
        infos = [self._info(blob) for blob in page] if page is not None else []
        return infos, pages.continuation_token or None

    def _stat(self, name: str) -> ObjectInfo:
        return self._info(self._client.get_blob_client(name).get_blob_properties())

    def _get(self, name: str) -> bytes:
        stream = self._client.get_blob_client(name).download_blob(
            max_concurrency=self.transfer.max_concurrency
        )
        data: bytes = stream.readall()
        return data

    def _download(self, name: str, dest: Path) -> None:
        stream = self._client.get_blob_client(name).download_blob(
            max_concurrency=self.transfer.max_concurrency
        )
        with dest.open("wb") as out:
            stream.readinto(out)

    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo:
        md5 = _md5(data) if len(data) <= self.transfer.part_size else None
        response = self._client.get_blob_client(name).upload_blob(
            data, length=len(data), overwrite=True, **self._upload_args(sha256, content_type, md5)
        )
        return self._put_info(name, len(data), sha256, response)

    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo:
        md5 = _file_md5(path) if size <= self.transfer.part_size else None
        with path.open("rb") as body:
            response = self._client.get_blob_client(name).upload_blob(
                body, length=size, overwrite=True, **self._upload_args(sha256, content_type, md5)
            )
        return self._put_info(name, size, sha256, response)

    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        args = self._upload_args(sha256, DEFAULT_CONTENT_TYPE, _md5(data))
        condition: dict[str, Any] = (
            {"overwrite": False}
            if token is None
            else {"overwrite": True, "etag": _quoted(token), "match_condition": MatchConditions.IfNotModified}
        )
        try:
            response = self._client.get_blob_client(name).upload_blob(
                data, length=len(data), **args, **condition
            )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            expected = "absent" if token is None else f"at version {token}"
            raise PreconditionFailed(
                f"conditional write refused: blob is not {expected}", uri=self._uri_of(name)
            ) from exc
        return self._put_info(name, len(data), sha256, response)

    def _delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._client.get_blob_client(name).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            # BlobNotFound: deleting is idempotent.

    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        return translate_error(exc, target, self.endpoint)

    # --- helpers -------------------------------------------------------------------------

    def _upload_args(self, sha256: str, content_type: str, md5: bytes | None) -> dict[str, Any]:
        from azure.storage.blob import ContentSettings

        return {
            "metadata": {SHA256_METADATA_KEY: sha256},
            # A Content-MD5 on a single Put Blob is checked by the service and stored; block
            # uploads (md5 None) are checked per request by validate_content instead.
            "content_settings": ContentSettings(
                content_type=content_type, content_md5=bytearray(md5) if md5 is not None else None
            ),
            "validate_content": True,
            "max_concurrency": self.transfer.max_concurrency,
        }

    def _put_info(self, name: str, size: int, sha256: str, response: Mapping[str, Any]) -> ObjectInfo:
        etag = response.get("etag")
        return ObjectInfo(
            key=self._key(name),
            size=size,
            sha256=sha256,
            token=_quoted(etag) if etag else None,
            modified=response.get("last_modified"),
        )

    def _info(self, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            key=self._key(blob.name),
            size=int(blob.size or 0),
            sha256=valid_sha256((blob.metadata or {}).get(SHA256_METADATA_KEY)),
            token=_quoted(blob.etag) if blob.etag else None,
            modified=blob.last_modified,
        )


def translate_error(  # noqa: PLR0911  # a flat table: one return per family of SDK exceptions
    exc: BaseException, target: str, endpoint: str
) -> StorageError | None:
    """Map an azure-core / azure-storage-blob exception to the project's tree."""
    from azure.core import exceptions as ax

    if isinstance(exc, ax.ResourceNotFoundError):
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            return NotFound("container does not exist", uri=target)
        return NotFound("no such blob", uri=target)
    if isinstance(exc, ax.ClientAuthenticationError):
        return PermissionDenied(f"authentication failed: {_reason(exc)}", uri=target)
    if isinstance(exc, ax.ResourceModifiedError):
        return PreconditionFailed(f"precondition failed: {_reason(exc)}", uri=target)
    if isinstance(exc, ax.ServiceRequestError):
        return TransientError(f"cannot connect to {endpoint}: {exc}", uri=target)
    if isinstance(exc, ax.ServiceResponseError | ax.IncompleteReadError):
        return TransientError(f"transfer with {endpoint} failed: {exc}", uri=target)
    if isinstance(exc, ax.HttpResponseError):
        status = int(exc.status_code or 0)
        return error_for_status(status)(f"Azure error {status}: {_reason(exc)}", uri=target)
    if isinstance(exc, ax.AzureError):
        return StorageError(f"Azure error: {exc}", uri=target)
    return None


def _reason(exc: Any) -> str:
    code = getattr(exc, "error_code", None)
    first_line = str(getattr(exc, "reason", None) or exc).splitlines()[0]
    return f"{code} ({first_line})" if code else first_line


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _file_md5(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _blob_endpoint(connection_string: str) -> str:
    """The blob endpoint a connection string names, for messages (it never includes the key)."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    if "BlobEndpoint" in fields:
        return fields["BlobEndpoint"]
    protocol = fields.get("DefaultEndpointsProtocol", "https")
    suffix = fields.get("EndpointSuffix", "core.windows.net")
    return f"{protocol}://{fields.get('AccountName', '?')}.blob.{suffix}"
