"""Checks of configuration values that several keys share, and of keys that only make sense together.

:mod:`orchestrator.control.config` validates each key with pydantic and calls these for what a type cannot
say: a URL is an http(s) base URL with a host and no credentials (:func:`check_url`), storage
settings hold no secret and only printable values (:func:`check_settings`), a state location is a
form :func:`orchestrator.control.store.open_state` takes (:func:`check_state_location`), and settings fit
their bucket URI, the state's settings fit its store, the price overrides parse
(:func:`check_together`), the public name and the token fit the endpoints
(:func:`~orchestrator.control.config_access.check_access`). Each raises ValueError (inside a
model) or ConfigError (across keys), and no message quotes a value that could be a secret.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.config import Config

__all__ = ["MAX_URL_LENGTH", "check_settings", "check_state_location", "check_together", "check_url"]

# Keys that would put a secret into a file that gets committed; refused with a pointer instead.
_SECRET_SETTINGS = frozenset(
    {"connection_string", "account_key", "secret_access_key", "sas_token", "credentials"}
)
# Storage settings that are numbers (orchestrator.core.storage.base.TransferSettings), checked finite here.
_NUMERIC_SETTINGS = frozenset(
    {"page_size", "part_size", "max_concurrency", "connect_timeout", "read_timeout"}
)
# Storage settings that are URLs: checked like endpoints (http(s), a host, no credentials or
# tokens, which would be secrets written in the file).
_URL_SETTINGS = frozenset({"endpoint_url", "account_url"})
# A URL longer than this is not a base URL anyone types or a stack exports.
MAX_URL_LENGTH = 2048


def check_settings(settings: dict[str, str]) -> dict[str, str]:
    """``settings`` (storage settings of a bucket or of the state) unless one would put a secret in
    the file (a credential key, a URL with credentials or a token) or is not a value at all (a
    number setting that is not a finite positive number, text with line breaks or control
    characters); ValueError naming the key, never quoting a value."""
    if secret := _SECRET_SETTINGS & settings.keys():
        raise ValueError(
            f"{sorted(secret)} must not be written in the configuration file; use the cloud's "
            "usual credential source (AZURE_STORAGE_CONNECTION_STRING, AWS profiles, ADC)"
        )
    for key in sorted(settings):
        text = settings[key]
        if not text.isprintable() or len(text) > MAX_URL_LENGTH:
            raise ValueError(f"{key} holds control characters or is over {MAX_URL_LENGTH} characters")
        if key in _URL_SETTINGS:
            try:
                check_url(text, what=key)
            except ValueError as exc:
                raise ValueError(str(exc).replace(repr(text), key)) from None
    for key in sorted(_NUMERIC_SETTINGS & settings.keys()):
        try:
            number = float(settings[key])
        except ValueError:
            raise ValueError(f"{key} must be a number") from None
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"{key} must be a finite positive number")
    return settings


def check_url(value: str, *, what: str) -> None:
    """ValueError unless ``value`` is an http(s) URL with a host, a valid port, and no credentials,
    query or fragment. The message never quotes a URL that carries credentials."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if not value.isprintable() or " " in value:
        raise ValueError(f"{what} holds spaces or control characters")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} carries credentials (user:password@); remove them from the file")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{what} is a base URL: it takes no query or fragment (nor tokens in one)")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} is not an http(s) URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    if not parts.hostname or port == 0:
        raise ValueError(f"{value!r} has no host (or port 0)")


def check_state_location(location: str) -> None:
    """ValueError unless ``location`` is a path, a ``file://`` URI, or an ``s3://``/``gs://``/``az://``
    object store URI (the forms :func:`orchestrator.control.store.open_state` takes)."""
    if not location or location != location.strip() or "\x00" in location:
        raise ValueError("empty, padded with whitespace, or holding a NUL byte")
    if "://" not in location:
        return
    scheme = location.partition("://")[0].lower()
    if scheme not in ("file", "s3", "gs", "az"):
        raise ValueError(
            f"scheme {scheme}:// is neither a SQLite file (a path, file://) nor s3://, gs://, az://"
        )
    from orchestrator.core.storage import parse_uri

    try:
        parse_uri(location)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def check_together(config: Config, source: str) -> None:
    """What no single key can check: settings against their URI, prices, the state's settings."""
    from orchestrator.core.storage import allowed_settings

    for name, cloud in config.clouds.items():
        if cloud.storage_settings and cloud.storage is None:
            raise ConfigError(
                f"{source}: clouds.{name}.storage_settings: given without clouds.{name}.storage"
            )
        if cloud.storage is not None:
            unknown = sorted(cloud.storage_settings.keys() - allowed_settings(cloud.storage))
            if unknown:
                raise ConfigError(
                    f"{source}: clouds.{name}.storage_settings: unknown setting(s) {', '.join(unknown)} "
                    f"for {cloud.storage.partition('://')[0]}:// (allowed: "
                    f"{', '.join(sorted(allowed_settings(cloud.storage)))})"
                )
    state = config.state
    if state.settings:
        if "://" not in state.path or state.path.startswith("file://"):
            raise ConfigError(
                f"{source}: state.settings: apply only to object-storage state (s3://, gs://, az://), "
                "not to a SQLite file"
            )
        unknown = sorted(state.settings.keys() - allowed_settings(state.path))
        if unknown:
            raise ConfigError(f"{source}: state.settings: unknown setting(s) {', '.join(unknown)}")
    from orchestrator.control.config_access import check_access

    check_access(config, source)
    from orchestrator.control.routing.pricing import load_prices

    try:
        load_prices({name: cloud.price for name, cloud in config.clouds.items() if cloud.price})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
