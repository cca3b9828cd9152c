"""Route 53's API errors, as the project's exception tree (see :mod:`.route53`).

Codes come from the Route 53 API reference ("Common Errors" and each action's errors). Access
problems are PermissionDenied, never retried; throttling, 5xx and timeouts TransientError, retried
briefly; a change Route 53 refuses is a ConfigError, since every value in it comes from the
configuration; connection, credential, TLS and region problems are translated as for S3.
"""

from __future__ import annotations

from orchestrator.core.errors import (
    ConfigError,
    NotFound,
    OrchestratorError,
    PermissionDenied,
    StorageError,
    TransientError,
)

__all__ = ["translate_error"]

_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
     "ExpiredToken", "UnrecognizedClientException", "InvalidSignatureException"}
)  # fmt: skip
_TRANSIENT_CODES = frozenset(
    {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded",
     "ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout"}
)  # fmt: skip
# Route 53 refuses the change itself: every value in it comes from the configuration.
_REFUSED_CODES = frozenset({"InvalidChangeBatch", "InvalidInput", "InvalidDomainName", "NoSuchHealthCheck"})


def translate_error(  # noqa: PLR0911  # a flat table: one return per family of errors
    exc: BaseException, *, zone_id: str, target: str, endpoint: str
) -> OrchestratorError | None:
    """Map a botocore exception from a Route 53 call to the project's tree (None: not an SDK error)."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = error.get("Message") or code
        if code == "NoSuchHostedZone":
            return NotFound(
                f"hosted zone {zone_id} does not exist at {endpoint}; check the routing setting "
                "hosted_zone_id (the DNS stack outputs it)",
                uri=target,
            )
        if code in _DENIED_CODES or status in (401, 403):
            return PermissionDenied(f"Route 53 refused access ({code}): {message}", uri=target)
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return TransientError(f"Route 53 error {status} {code}: {message}", uri=target)
        if code in _REFUSED_CODES:
            return ConfigError(f"{target}: Route 53 refused the change ({code}): {message}")
        if status == 404:
            return NotFound(f"Route 53 error {code}: {message}", uri=target)
        return StorageError(f"Route 53 error {status} {code}: {message}", uri=target)
    # Connections, timeouts, credentials, TLS and region problems are the same for every AWS
    # service: the storage layer's S3 translation already says them well.
    from orchestrator.core.storage.aws import translate_error as translate_aws_error

    return translate_aws_error(exc, target, endpoint)
