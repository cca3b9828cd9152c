"""AWS Secrets Manager: the ``SecretString`` of a secret's current version (``aws-sm://``).

Credentials and region come from the SDK's usual chain (environment, profile, the task role);
an ARN's own region wins. ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (botocore's service-specific
endpoint variable) points it at an emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.secrets import SecretRef

__all__ = ["read"]


def read(ref: SecretRef) -> str:
    """The secret's text; ConfigError if it is binary, or the SDK is not installed; the SDK's
    own errors (not found, access denied, no credentials) propagate."""
    from orchestrator.control.secrets import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError("boto3 is not installed: pip install 'ml-orchestrator[aws]'") from None
    secret_id, region = ref.parts
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    client = boto3.client("secretsmanager", region_name=region, config=config)
    answer = client.get_secret_value(SecretId=secret_id)
    value = answer.get("SecretString")
    if not isinstance(value, str):
        raise ConfigError("the secret holds binary data, not text (SecretString)")
    return value
