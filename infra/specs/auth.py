"""The API tokens predictions need: ``ml-orchestrator:api_token`` and, during a rotation,
``ml-orchestrator:api_token_previous``, both Pulumi secrets.

Each stack stores every configured token in its cloud's secret store (Secrets Manager, Secret
Manager, Key Vault) and gives it to the endpoint and the health job by reference only, as
``API_TOKEN`` and ``API_TOKEN_PREVIOUS`` (:data:`orchestrator.core.contract.ENV_API_TOKENS`):
never in a container's plain environment, a plain configuration value or unencrypted state.

Rotation without downtime: set the old token as ``api_token_previous`` and the new one as
``api_token``, ``pulumi up`` (every instance accepts both), move the clients to the new token,
then remove ``api_token_previous`` and ``pulumi up`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from infra.specs.fields import ConfigError
from orchestrator.core.contract import ENV_API_TOKEN, ENV_API_TOKEN_PREVIOUS
from orchestrator.core.tokens import MIN_TOKEN_LENGTH, token_problem

__all__ = ["MIN_TOKEN_LENGTH", "TOKEN_SLOTS", "ApiTokens", "TokenSlot", "parse_api_tokens"]


@dataclass(frozen=True)
class TokenSlot:
    """One configured token: its slot (``current``, ``previous``), the configuration key it
    came from, and the environment variable the containers get it in."""

    slot: str
    key: str
    env: str
    value: str = field(repr=False)


# (slot, configuration key without the namespace, environment variable)
TOKEN_SLOTS: Final = (
    ("current", "api_token", ENV_API_TOKEN),
    ("previous", "api_token_previous", ENV_API_TOKEN_PREVIOUS),
)


@dataclass(frozen=True)
class ApiTokens:
    """The configured tokens, current first; empty when predictions stay anonymous."""

    slots: tuple[TokenSlot, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.slots)


def parse_api_tokens(values: dict[str, str | None], secret: dict[str, bool], *, namespace: str) -> ApiTokens:
    """The tokens from ``values`` (configuration key without namespace -> plain text or None) and
    ``secret`` (key -> whether Pulumi holds it as a secret). Pure; raises ConfigError naming the
    key, never quoting the value."""
    slots = []
    for slot, name, env in TOKEN_SLOTS:
        value = values.get(name)
        key = f"{namespace}:{name}"
        if not value:
            continue
        if not secret.get(name, False):
            raise ConfigError(
                key,
                f"is stored in plain text: set it with `pulumi config set --secret {name}` "
                "(and remove the plain value from the stack file)",
            )
        if problem := token_problem(value):
            raise ConfigError(key, problem)
        slots.append(TokenSlot(slot, key, env, value))
    if len(slots) == 1 and slots[0].slot == "previous":
        raise ConfigError(
            f"{namespace}:api_token", "is required with api_token_previous (the token clients move to)"
        )
    if len(slots) == 2 and slots[0].value == slots[1].value:
        raise ConfigError(f"{namespace}:api_token_previous", "must differ from api_token")
    return ApiTokens(tuple(slots))
