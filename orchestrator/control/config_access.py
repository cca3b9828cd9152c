"""``endpoint`` and ``auth`` in ``orchestrator.yaml``: how the control plane reaches the endpoints
the way clients do.

- ``endpoint.public_name``: the one name clients use (the stacks' ``endpoint.public_name``). Each
  probe then connects to the cloud's own entry (``clouds.<cloud>.endpoint``) but sends the public
  name as ``Host`` and as the TLS server name (SNI), and verifies the certificate for the public
  name: a cloud whose entry does not serve the public name fails its probes, whatever its own
  host name would answer. Needs ``https://`` endpoints.
- ``auth.token``: a reference to the API token (:mod:`orchestrator.control.secrets`:
  ``aws-sm://``, ``gcp-sm://``, ``azure-kv://``, ``env://``), sent as ``Authorization: Bearer``
  with every probe. Never the token itself, and never sent over plain HTTP to anything but this
  machine (loopback).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.config import Config

__all__ = ["AuthConfig", "PublicEndpointConfig", "check_access"]

# A host name as certificates and SNI carry it (RFC 1123 labels, RFC 6066: no trailing dot, not
# an address): at least two labels of a-z, 0-9 and '-', 253 characters at most.
_LABEL: Final = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublicEndpointConfig(_Strict):
    """``endpoint``: the public name the probes send as Host and SNI (None: each entry's own name)."""

    public_name: str | None = Field(default=None, description="the one name clients use")

    @field_validator("public_name")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower().removesuffix(".")
        if not _HOST_NAME.fullmatch(name) or _is_address(name):
            raise ValueError(
                "is not a DNS host name (labels of a-z, 0-9 and '-', at least two, no address): "
                "the name the stacks' endpoint.public_name gives"
            )
        return name


class AuthConfig(_Strict):
    """``auth``: where the API token the probes send is read from (a secret reference)."""

    token: str | None = Field(
        default=None, description="aws-sm://, gcp-sm://, azure-kv:// or env:// reference"
    )

    @field_validator("token")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from orchestrator.control.secrets import parse_secret_ref

        parse_secret_ref(value)  # ValueError says which forms are accepted, never quotes the value
        return value


def check_access(config: Config, source: str) -> None:
    """ConfigError naming the cloud when a public name is given with an endpoint that is not
    ``https://``, or a token would travel over plain HTTP to another machine."""
    for name, cloud in config.clouds.items():
        if cloud.endpoint is None:
            continue
        parts = urlsplit(cloud.endpoint)
        if parts.scheme == "https":
            continue
        if config.endpoint.public_name is not None:
            raise ConfigError(
                f"{source}: clouds.{name}.endpoint: endpoint.public_name is checked over TLS (Host "
                "and SNI): the endpoint must be https://"
            )
        if config.auth.token is not None and not _loopback(parts.hostname or ""):
            raise ConfigError(
                f"{source}: clouds.{name}.endpoint: auth.token is never sent over plain HTTP to "
                "another machine: use https://"
            )


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
