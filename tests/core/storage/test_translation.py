"""Each backend's translation of its SDK's exceptions, checked on constructed exceptions: the
cases emulators cannot produce (403, 429, 5xx, credentials) get the right project error too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.core.errors import (
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorageError,
    TransientError,
)
from orchestrator.core.storage import aws, azure, gcp

TARGET = "x://bucket/prefix/key"
ENDPOINT = "http://127.0.0.1:9"


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")  # fmt: skip
    return error


def _upload_failed() -> Exception:
    from boto3.exceptions import S3UploadFailedError

    error: Exception = S3UploadFailedError("Failed to upload x to y: ...")
    # boto3 raises it inside `except ClientError:` without `from`: only __context__ is set.
    error.__context__ = _client_error(404, "NoSuchBucket")
    return error


def _botocore(name: str, **kwargs: str) -> Callable[[], Exception]:
    def make() -> Exception:
        from botocore import exceptions

        error: Exception = getattr(exceptions, name)(**kwargs)
        return error

    return make


S3_CASES: list[tuple[Callable[[], Exception], type[StorageError], str]] = [
    (lambda: _client_error(404, "NoSuchKey"), NotFound, "no such object"),
    (lambda: _client_error(404, "NoSuchBucket"), NotFound, "bucket does not exist"),
    (lambda: _client_error(404, "404"), NotFound, "no such object"),  # HEAD has no body
    (lambda: _client_error(403, "AccessDenied"), PermissionDenied, "AccessDenied"),
    (lambda: _client_error(403, "SignatureDoesNotMatch"), PermissionDenied, "SignatureDoesNotMatch"),
    (lambda: _client_error(412, "PreconditionFailed"), PreconditionFailed, "412 PreconditionFailed"),
    (lambda: _client_error(409, "ConditionalRequestConflict"), PreconditionFailed, "Conflict"),
    (lambda: _client_error(503, "SlowDown"), TransientError, "SlowDown"),
    (lambda: _client_error(500, "InternalError"), TransientError, "InternalError"),
    (lambda: _client_error(400, "RequestTimeout"), TransientError, "RequestTimeout"),
    (lambda: _client_error(400, "InvalidArgument"), StorageError, "InvalidArgument"),
    (_upload_failed, NotFound, "bucket does not exist"),
    (
        _botocore("EndpointConnectionError", endpoint_url=ENDPOINT),
        TransientError,
        f"cannot connect to {ENDPOINT}",
    ),
    (_botocore("ConnectTimeoutError", endpoint_url=ENDPOINT), TransientError, "cannot connect"),
    (_botocore("ReadTimeoutError", endpoint_url=ENDPOINT), TransientError, "transfer with"),
    (_botocore("NoCredentialsError"), PermissionDenied, "AWS_ACCESS_KEY_ID"),
    (_botocore("SSLError", endpoint_url=ENDPOINT, error="bad cert"), StorageError, "TLS"),
]


def _google(name: str) -> Callable[[], Exception]:
    def make() -> Exception:
        from google.api_core import exceptions

        error: Exception = getattr(exceptions, name)("it happened")
        return error

    return make


def _requests(name: str) -> Callable[[], Exception]:
    def make() -> Exception:
        import requests

        error: Exception = getattr(requests.exceptions, name)("refused")
        return error

    return make


def _data_corruption() -> Exception:
    from google.cloud.storage.exceptions import DataCorruption

    error: Exception = DataCorruption(None, "crc32c mismatch")
    return error


def _no_google_credentials() -> Exception:
    from google.auth.exceptions import DefaultCredentialsError

    return DefaultCredentialsError("none found")  # type: ignore[no-untyped-call]


GCS_CASES: list[tuple[Callable[[], Exception], type[StorageError], str]] = [
    (_google("NotFound"), NotFound, "no such object"),
    (_google("Forbidden"), PermissionDenied, "403"),
    (_google("Unauthorized"), PermissionDenied, "401"),
    (_google("PreconditionFailed"), PreconditionFailed, "412"),
    (_google("TooManyRequests"), TransientError, "429"),
    (_google("ServiceUnavailable"), TransientError, "503"),
    (_google("BadRequest"), StorageError, "400"),
    (_requests("ConnectionError"), TransientError, f"cannot connect to {ENDPOINT}"),
    (_requests("ReadTimeout"), TransientError, "cannot connect"),
    (_requests("SSLError"), StorageError, "TLS"),
    (_data_corruption, TransientError, "checksum mismatch"),
    (_no_google_credentials, PermissionDenied, "GOOGLE_APPLICATION_CREDENTIALS"),
]


def _azure(name: str, *, status: int | None = None, code: str | None = None) -> Callable[[], Exception]:
    def make() -> Exception:
        from azure.core import exceptions

        error = getattr(exceptions, name)("it happened")
        if status is not None:
            error.status_code = status
        if code is not None:
            error.error_code = code
        result: Exception = error
        return result

    return make


AZURE_CASES: list[tuple[Callable[[], Exception], type[StorageError], str]] = [
    (_azure("ResourceNotFoundError", status=404, code="BlobNotFound"), NotFound, "no such blob"),
    (
        _azure("ResourceNotFoundError", status=404, code="ContainerNotFound"),
        NotFound,
        "container does not exist",
    ),
    (_azure("ClientAuthenticationError", status=403), PermissionDenied, "authentication"),
    (
        _azure("HttpResponseError", status=403, code="AuthorizationFailure"),
        PermissionDenied,
        "AuthorizationFailure",
    ),
    (
        _azure("ResourceModifiedError", status=412, code="ConditionNotMet"),
        PreconditionFailed,
        "ConditionNotMet",
    ),
    (_azure("HttpResponseError", status=503, code="ServerBusy"), TransientError, "ServerBusy"),
    (_azure("HttpResponseError", status=429), TransientError, "429"),
    (_azure("HttpResponseError", status=400, code="InvalidHeaderValue"), StorageError, "InvalidHeaderValue"),
    (_azure("ServiceRequestError"), TransientError, f"cannot connect to {ENDPOINT}"),
    (_azure("ServiceResponseError"), TransientError, "transfer with"),
]


@pytest.mark.parametrize(
    ("translate", "make", "expected", "text"),
    [pytest.param(aws.translate_error, *case, id=f"s3-{i}") for i, case in enumerate(S3_CASES)]
    + [pytest.param(gcp.translate_error, *case, id=f"gcs-{i}") for i, case in enumerate(GCS_CASES)]
    + [pytest.param(azure.translate_error, *case, id=f"azure-{i}") for i, case in enumerate(AZURE_CASES)],
)
def test_translation(
    translate: Callable[[BaseException, str, str], StorageError | None],
    make: Callable[[], Exception],
    expected: type[StorageError],
    text: str,
) -> None:
    error = translate(make(), TARGET, ENDPOINT)

    assert type(error) is expected
    assert error.uri == TARGET
    assert str(error).startswith(f"{TARGET}: ")
    assert text in str(error)


@pytest.mark.parametrize("translate", [aws.translate_error, gcp.translate_error, azure.translate_error])
def test_non_sdk_exceptions_are_not_translated(
    translate: Callable[[BaseException, str, str], StorageError | None],
) -> None:
    assert translate(ValueError("a bug"), TARGET, ENDPOINT) is None
