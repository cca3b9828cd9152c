"""The Amazon S3 backend (boto3): ``s3://bucket/prefix``, also moto or any S3-compatible server.

Endpoint and credentials come the standard way: boto3 itself honours ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, the credential chain and ``AWS_REGION``; the ``endpoint_url`` and
``region`` settings override them. A custom endpoint switches to path-style addressing, which
every emulator understands.

Integrity. Our sha256 lives in user metadata (``x-amz-meta-sha256``). As a transfer check S3
verifies a SHA256 checksum: for single-request uploads we send OUR sha256 as ``ChecksumSHA256``,
so S3 refuses the upload unless the bytes it received have exactly the hash we claim; multipart
uploads send a SHA256 checksum per part (S3 offers no full-object SHA256 for multipart, only
composite ones, which is one more reason the ETag-like checksums are not content identity).

Listing cost. ListObjectsV2 returns at most 1000 keys per request and no user metadata, object
tags or checksum values, whichever way they were written, so ``sha256`` is None in listings
(``list_includes_sha256 = False``) and a full listing costs ceil(n/1000) requests. What it does
return is the ETag, our version token: it changes whenever the content does (an identical
rewrite may keep it). A no-change re-sync can therefore stay at one LIST by comparing listed
ETags with the (ETag, sha256) pairs it recorded when it last verified the objects with stat();
only objects whose ETag moved need a stat (a deliberately MD5-colliding rewrite would keep the
ETag: that is what ``verify --deep`` is for). Encoding the hash in the key would break the bucket
layout, and tags cost a request per object to read.

Retries: botocore's own retries are off (one attempt) and s3transfer's download retries too, so
:mod:`orchestrator.core.storage.retry` alone decides; timeouts are the common settings.
"""

from __future__ import annotations

import base64
import os
import re
import threading
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

__all__ = ["S3Storage", "translate_error"]

# S3 refuses multipart parts below 5 MiB (except the last one).
MIN_PART_SIZE = 5 * 1024 * 1024
# Connections per client: the sync uploads several objects at once, each with up to
# max_concurrency parts; botocore's default of 10 would make threads queue for a connection.
POOL_CONNECTIONS = 32
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def boto3_client(service: str, **kwargs: Any) -> Any:
    """A boto3 client from one process-wide session, so botocore parses its service models once
    (~0.1 s of CPU per client otherwise). Building clients is serialised because sessions are not
    safe for concurrent client creation; the clients themselves are thread-safe."""
    import boto3

    global _SESSION  # noqa: PLW0603  # a process-wide cache, created on first use
    with _SESSION_LOCK:
        if _SESSION is None:
            from orchestrator.core.storage.federation import web_identity_session

            # Outside AWS, with federation configured: short-lived credentials, no stored key.
            _SESSION = web_identity_session() or boto3.session.Session()
        return _SESSION.client(service, **kwargs)


# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET_RE = re.compile(r"(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
     "ExpiredToken", "InvalidToken", "AccountProblem"}
)  # fmt: skip
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "RequestTimeTooSkewed", "OperationAborted"}
)  # fmt: skip

# Error codes decide where the HTTP status alone would not (a 400 RequestTimeout is transient).
_CODE_ERRORS: tuple[tuple[frozenset[str], type[StorageError]], ...] = (
    (_DENIED_CODES, PermissionDenied),
    (_PRECONDITION_CODES, PreconditionFailed),
    (_TRANSIENT_CODES, TransientError),
)


class S3Storage(Storage):
    """Objects in an S3 bucket under a prefix."""

    scheme = "s3"
    list_includes_sha256 = False
    settings_keys = frozenset({"endpoint_url", "region"})

    def __init__(self, location: StorageURI, *, settings: Mapping[str, str], retry: RetryPolicy) -> None:
        super().__init__(location, settings=settings, retry=retry)
        try:
            import boto3  # noqa: F401  # fail at open time, with advice, if the extra is missing
        except ImportError:
            raise ConfigError(f"{self.uri} needs boto3: pip install 'ml-orchestrator[aws]'") from None
        if not _BUCKET_RE.fullmatch(location.bucket):
            raise ConfigError(f"{self.uri}: {location.bucket!r} is not a valid S3 bucket name")
        if self.transfer.part_size < MIN_PART_SIZE:
            raise ConfigError(f"{self.uri}: part_size must be at least 5 MiB for S3 multipart uploads")
        self.bucket = location.bucket
        self._endpoint_url = settings.get("endpoint_url") or None
        if self._endpoint_url is not None and not self._endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.uri}: endpoint_url must start with http:// or https://")
        self._region = settings.get("region") or None
        # boto3 reads these variables itself; we look only to pick the addressing style, and to
        # name the endpoint in messages until the client exists and knows it exactly.
        self._custom_endpoint = (
            self._endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.endpoint = self._custom_endpoint or "the AWS S3 endpoint"
        self._clients = LazyClient(self._make_client)

    @property
    def _client(self) -> Any:
        return self._clients.get()

    def _make_client(self) -> Any:
        from botocore.config import Config

        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.transfer.connect_timeout,
            read_timeout=self.transfer.read_timeout,
            max_pool_connections=POOL_CONNECTIONS,
            # Emulators and most S3-compatible servers only do path-style.
            s3={"addressing_style": "path" if self._custom_endpoint else "auto"},
        )
        client = boto3_client("s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config)
        self.endpoint = client.meta.endpoint_url
        return client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.transfer.part_size,
            multipart_chunksize=self.transfer.part_size,
            max_concurrency=self.transfer.max_concurrency,
            num_download_attempts=1,  # our retry policy decides
        )

    def close(self) -> None:
        self._clients.close()

    # --- hooks ---------------------------------------------------------------------------

    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if self.transfer.page_size is not None:
            kwargs["MaxKeys"] = self.transfer.page_size
        if page_token is not None:
            kwargs["ContinuationToken"] = page_token
        response = self._client.list_objects_v2(**kwargs)
        infos = [
            ObjectInfo(
                key=self._key(item["Key"]),
                size=item["Size"],
                sha256=None,  # ListObjectsV2 cannot return metadata: see the module docstring
                token=item["ETag"],
                modified=item["LastModified"],
            )
            for item in response.get("Contents", [])
        ]
        return infos, response.get("NextContinuationToken") if response.get("IsTruncated") else None

    def _stat(self, name: str) -> ObjectInfo:
        head = self._client.head_object(Bucket=self.bucket, Key=name)
        return ObjectInfo(
            key=self._key(name),
            size=head["ContentLength"],
            sha256=valid_sha256(head.get("Metadata", {}).get(SHA256_METADATA_KEY)),
            token=head["ETag"],
            modified=head["LastModified"],
        )

    def _get(self, name: str) -> bytes:
        body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _download(self, name: str, dest: Path) -> None:
        # Ranged GETs in parallel above part_size; botocore validates response checksums.
        self._client.download_file(self.bucket, name, str(dest), Config=self._transfer_config())

    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo:
        response = self._client.put_object(Body=data, **self._single_put_args(name, sha256, content_type))
        return ObjectInfo(key=self._key(name), size=len(data), sha256=sha256, token=response["ETag"])

    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo:
        if size <= self.transfer.part_size:
            with path.open("rb") as body:
                response = self._client.put_object(
                    Body=body, **self._single_put_args(name, sha256, content_type)
                )
            return ObjectInfo(key=self._key(name), size=size, sha256=sha256, token=response["ETag"])
        self._client.upload_file(
            str(path),
            self.bucket,
            name,
            ExtraArgs={
                "Metadata": {SHA256_METADATA_KEY: sha256},
                "ContentType": content_type,
                "ChecksumAlgorithm": "SHA256",
            },
            Config=self._transfer_config(),
        )
        # upload_file returns nothing: read back what landed (this also checks our metadata).
        self._count("stat")
        return self._stat(name)

    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            response = self._client.put_object(
                Body=data, **self._single_put_args(name, sha256, DEFAULT_CONTENT_TYPE), **condition
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            # IfMatch on an absent object answers 404; a concurrent conditional write, 409
            # ConditionalRequestConflict (one of _PRECONDITION_CODES).
            if (
                code in _PRECONDITION_CODES
                or status == 412
                or (token is not None and status == 404 and code != "NoSuchBucket")
            ):
                expected = "absent" if token is None else f"at version {token}"
                raise PreconditionFailed(
                    f"conditional write refused: object is not {expected}", uri=self._uri_of(name)
                ) from exc
            raise
        return ObjectInfo(key=self._key(name), size=len(data), sha256=sha256, token=response["ETag"])

    def _delete(self, name: str) -> None:
        # S3 answers 204 for an absent key; NoSuchBucket still raises.
        self._client.delete_object(Bucket=self.bucket, Key=name)

    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        return translate_error(exc, target, self.endpoint)

    def _single_put_args(self, name: str, sha256: str, content_type: str) -> dict[str, Any]:
        return {
            "Bucket": self.bucket,
            "Key": name,
            "Metadata": {SHA256_METADATA_KEY: sha256},
            "ContentType": content_type,
            # S3 rejects the upload unless the bytes it got hash to OUR sha256.
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
        }


def translate_error(  # noqa: PLR0911  # a flat table: one return per family of SDK exceptions
    exc: BaseException, target: str, endpoint: str
) -> StorageError | None:
    """Map a boto3/botocore/s3transfer exception to the project's tree (None: not an SDK error)."""
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from botocore import exceptions as bx

    if isinstance(exc, S3UploadFailedError):
        # boto3 re-raises the ClientError of a failed transfer as this, without ``from``.
        inner = exc.__cause__ or exc.__context__
        return translate_error(inner, target, endpoint) if inner else StorageError(str(exc), uri=target)
    if isinstance(exc, RetriesExceededError):
        inner = exc.last_exception
        return translate_error(inner, target, endpoint) if inner else TransientError(str(exc), uri=target)
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or code
        if code == "NoSuchBucket":
            return NotFound("bucket does not exist", uri=target)
        if code in _NOT_FOUND_CODES or status == 404:
            return NotFound("no such object (or bucket)", uri=target)
        kind = error_for_status(status)
        for codes, by_code in _CODE_ERRORS:
            if code in codes:
                kind = by_code
        return kind(f"S3 error {status} {code}: {message}", uri=target)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return PermissionDenied(
            f"no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
            uri=target,
        )
    if isinstance(exc, bx.SSLError):
        # Certificate problems do not heal on retry.
        return StorageError(f"TLS error talking to {endpoint}: {exc}", uri=target)
    if isinstance(exc, bx.ConnectionError):
        return TransientError(f"cannot connect to {endpoint}: {exc}", uri=target)
    if isinstance(exc, bx.HTTPClientError | bx.IncompleteReadError | bx.FlexibleChecksumError):
        return TransientError(f"transfer with {endpoint} failed: {exc}", uri=target)
    if isinstance(exc, bx.NoRegionError):
        return StorageError(
            f"no AWS region configured ({exc}); set AWS_REGION or the region setting", uri=target
        )
    return None
