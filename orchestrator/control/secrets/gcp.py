"""Google Secret Manager: one version of a secret (``gcp-sm://``), by default ``latest``.

Credentials come from Application Default Credentials (the job's service account on Cloud Run,
``gcloud auth application-default login`` on a laptop). The client library is imported only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.secrets import SecretRef

__all__ = ["read"]


def read(ref: SecretRef) -> str:
    """The version's payload as UTF-8 text; ConfigError if it is not text, or the client library
    is not installed; the library's own errors (not found, permission denied) propagate."""
    from orchestrator.control.secrets import READ_TIMEOUT_S

    try:
        from google.cloud import secretmanager
    except ImportError:
        raise ConfigError(
            "google-cloud-secret-manager is not installed: pip install 'ml-orchestrator[secrets]'"
        ) from None
    (name,) = ref.parts
    with secretmanager.SecretManagerServiceClient() as client:
        answer = client.access_secret_version(request={"name": name}, timeout=READ_TIMEOUT_S)
    try:
        return bytes(answer.payload.data).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the secret's payload is not UTF-8 text") from None
