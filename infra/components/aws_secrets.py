"""The API tokens on AWS: one Secrets Manager secret per configured token, and the reference a
task definition gives the container (``secrets[].valueFrom``), never the value.

The reference pins the secret's version (``<secret ARN>:::<version id>``, the ECS form
``arn:...:secret:<name>:<json-key>:<version-stage>:<version-id>``), so a new token is a new task
definition revision and the service rolls its tasks (ECS reads a secret only when a task starts).
The task *execution* role fetches it (``secretsmanager:GetSecretValue`` on exactly these
secrets); the container's own task role cannot read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.specs.auth import ApiTokens

__all__ = ["SECRET_RECOVERY_DAYS", "TokenReference", "api_token_secrets", "read_statement"]

# A deleted token secret stays recoverable for a week (Secrets Manager accepts 7 to 30 days).
SECRET_RECOVERY_DAYS = 7


@dataclass(frozen=True)
class TokenReference:
    """One token as a container sees it: the environment variable, and where ECS reads it from."""

    slot: str  # current, previous
    env: str  # API_TOKEN, API_TOKEN_PREVIOUS
    arn: pulumi.Output[str]  # the secret (what the execution role may read)
    value_from: pulumi.Output[str]  # <arn>:::<version id>

    def container_secret(self) -> dict[str, Any]:
        """The task definition's ``secrets`` entry."""
        return {"name": self.env, "valueFrom": self.value_from}


def api_token_secrets(name: str, parent: pulumi.Resource, tokens: ApiTokens) -> list[TokenReference]:
    """A secret and its current version per configured token; the value passes only as a Pulumi
    secret into the version (encrypted in state), nowhere else."""
    child = pulumi.ResourceOptions(parent=parent)
    references = []
    for token in tokens.slots:
        secret = aws.secretsmanager.Secret(
            f"{name}-api-token-{token.slot}",
            description=f"The endpoint's API token ({token.slot}), given to containers as {token.env}",
            recovery_window_in_days=SECRET_RECOVERY_DAYS,
            opts=child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{name}-api-token-{token.slot}",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(token.value),
            opts=child,
        )
        references.append(
            TokenReference(
                slot=token.slot,
                env=token.env,
                arn=secret.arn,
                value_from=pulumi.Output.concat(secret.arn, ":::", version.version_id),
            )
        )
    return references


def read_statement(references: list[TokenReference]) -> list[dict[str, Any]]:
    """The execution role's statement: read exactly these secrets (none if there are none)."""
    if not references:
        return []
    return [
        {
            "Sid": "ReadTheApiTokens",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": [reference.arn for reference in references],
        }
    ]
