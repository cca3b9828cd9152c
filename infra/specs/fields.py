"""Reading one configuration object field by field, and the checks several specs share.

A stack's configuration arrives as plain mappings (``ml-orchestrator:endpoint`` and its
neighbours). :class:`ConfigObject` reads each field once, type-checked, and refuses keys nobody
read, so a typo fails instead of silently falling back to a default. Every failure is a
:class:`ConfigError` naming the full key (``ml-orchestrator:endpoint.cpu``), what is wrong and
what would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeGuard

import pulumi

from infra.specs.secret_shapes import iter_strings, secret_shape
from orchestrator.core.contract import CLOUDS, CloudName

__all__ = [
    "ConfigError",
    "ConfigObject",
    "check_cloud",
    "check_hostname",
    "check_path",
    "check_zone_id",
    "refuse_secret_values",
]

_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,32}")


class ConfigError(pulumi.RunError):
    """A stack configuration value is missing or invalid; ``key`` is the full configuration key.

    A ``RunError``: Pulumi prints its message alone, without a traceback.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"configuration {key}: {message}")
        self.key = key


_REQUIRED: Final = object()


class ConfigObject:
    """A configuration object's fields, read once each, with the full key in every error.

    ``key`` is the object's full key (``ml-orchestrator:endpoint``); ``raw`` its value (None
    reads as empty). Raises ConfigError unless ``raw`` is a mapping, and if any string in it
    (a value or a key, at any depth) looks like a credential
    (:func:`infra.specs.secret_shapes.secret_shape`): the error names the key, never the value.
    """

    def __init__(self, key: str, raw: object) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(key, f"must be an object, not {type(raw).__name__}")
        refuse_secret_values(key, raw)
        self.key = key
        self._raw: Mapping[str, Any] = raw
        self._seen: set[str] = set()

    def sub(self, name: str) -> str:
        """The full key of field ``name``."""
        return f"{self.key}.{name}"

    def _get(self, name: str, default: object) -> Any:
        self._seen.add(name)
        value = self._raw.get(name)
        if value is None or value == "":
            if default is _REQUIRED:
                raise ConfigError(self.sub(name), "is required")
            return default
        return value

    def required(self, name: str) -> str:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, str):
            raise ConfigError(self.sub(name), f"must be a string, not {value!r}")
        return value

    def optional(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.sub(name), f"must be a string, not {value!r}")
        return value

    def string(self, name: str, default: str) -> str:
        value = self.optional(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.sub(name), f"must be true or false, not {value!r}")
        return value

    def integer(self, name: str, default: object = _REQUIRED, *, low: int, high: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.sub(name), f"must be an integer, not {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(self.sub(name), f"must be {bounds}, not {value}")
        return value

    def number(self, name: str, default: object = _REQUIRED) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(self.sub(name), f"must be a positive number, not {value!r}")
        return float(value)

    def strings(self, name: str, default: Sequence[str]) -> tuple[str, ...]:
        value = self._get(name, None)
        if value is None:
            return tuple(default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(self.sub(name), f"must be a list of strings, not {value!r}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise ConfigError(self.sub(name), f"must be a list of strings, not {value!r}")
        return tuple(value)

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self._get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self.sub(name), f"must be an object, not {value!r}")
        return value

    def done(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            raise ConfigError(
                self.sub(unknown[0]), f"is not a known key; known: {', '.join(sorted(self._seen))}"
            )


def refuse_secret_values(key: str, raw: object) -> None:
    """ConfigError naming the first key under ``key`` whose plain value looks like a credential."""
    for path, text in iter_strings(raw):
        kind = secret_shape(text)
        if kind is not None:
            raise ConfigError(
                f"{key}.{path}" if path else key,
                f"looks like {kind}: plain stack configuration is no place for a secret "
                "(use `pulumi config set --secret`, the cloud's secret store, or its identity)",
            )


def _is_cloud(value: object) -> TypeGuard[CloudName]:
    """Whether ``value`` is one of the cloud keys (``aws``, ``gcp``, ``azure``)."""
    return value in CLOUDS


def check_cloud(key: str, value: object) -> CloudName:
    """``value`` if it is a cloud key, else ConfigError naming ``key`` (a key of a per-cloud map)."""
    if not _is_cloud(value):
        raise ConfigError(key, f"is not a cloud; clouds are {', '.join(CLOUDS)}")
    return value


def check_path(key: str, value: str) -> str:
    """``value`` if it is an absolute URL path (``/readyz``), else ConfigError naming ``key``."""
    if not _PATH.fullmatch(value):
        raise ConfigError(key, f"must be an absolute URL path such as /readyz, not {value!r}")
    return value


def check_zone_id(key: str, value: str) -> str:
    """A Route 53 hosted zone id without the ``/hostedzone/`` prefix; ConfigError naming ``key``."""
    zone = value.removeprefix("/hostedzone/")
    if not _ZONE_ID.fullmatch(zone):
        raise ConfigError(
            key, f"{value!r} is not a Route 53 hosted zone id (Z followed by letters and digits)"
        )
    return zone


def check_hostname(key: str, value: str) -> str:
    """A DNS name, lowercase and without the trailing dot (as Route 53 normalizes it)."""
    name = value.strip().lower().rstrip(".")
    if not _HOSTNAME.fullmatch(name):
        raise ConfigError(key, f"{value!r} is not a DNS name such as model.example.com")
    return name
