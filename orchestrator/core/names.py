"""One grammar for model names and versions, checked wherever one enters.

A name or a version becomes a path segment of every bucket (``models/<name>/<version>/``), of the
endpoint's cache directory and of URLs, so both follow the same small grammar: 1 to 63 characters
from ``a-z``, ``0-9``, ``.``, ``_`` and ``-``, starting with a letter or a digit (the Manifest's
rule since the first release; 63 is a DNS label's length, so a name also fits a hostname or a
bucket name). That excludes ``.`` and ``..``, ``/``, NUL, upper case (so ``LATEST`` can never be a
version), whitespace and every non-ASCII character (no look-alikes). The check is a full match:
a trailing newline does not pass.

``train`` (``--name`` and derived names), ``sync``, the ``LATEST`` pointer (``version``,
``previous``, ``history``), the manifest, ``MODEL_URI`` and the endpoint's loader all call
:func:`check_model_name` / :func:`check_version`.
"""

from __future__ import annotations

import re
from typing import Final

from orchestrator.core.errors import ArtifactError

__all__ = [
    "CHANNEL_PATTERN",
    "CHANNEL_RULE",
    "NAME_PATTERN",
    "NAME_RULE",
    "check_channel",
    "check_model_name",
    "check_version",
    "is_channel",
    "is_valid_name",
]

# The pattern as a string for pydantic's Field(pattern=...), which matches the whole value.
NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,62}$"
NAME_RULE: Final = "1-63 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit"
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# A channel (the pointer file an endpoint follows: ``LATEST``, ``STABLE``...) is upper case, so it
# can never be read as a version (lower case) in ``models/<name>/<ref>``: the model URI stays
# decidable from its text alone, without asking the bucket which one it is.
CHANNEL_PATTERN: Final = r"^[A-Z][A-Z0-9_-]{0,62}$"
CHANNEL_RULE: Final = "1-63 characters from A-Z, 0-9, '_', '-', starting with a letter (e.g. LATEST, STABLE)"
_CHANNEL: Final = re.compile(r"[A-Z][A-Z0-9_-]{0,62}")


def is_valid_name(value: object) -> bool:
    """Whether ``value`` is a string in the grammar (full match, ASCII only)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_channel(value: object) -> bool:
    """Whether ``value`` is a channel name (full match, ASCII upper case; ``LATEST`` is one)."""
    return isinstance(value, str) and _CHANNEL.fullmatch(value) is not None


def check_channel(value: object, *, where: str | None = None, error: type[Exception] = ArtifactError) -> str:
    """``value`` if it is a valid channel name, else ``error`` naming ``where`` and the rule."""
    if not is_channel(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "…"
        prefix = f"{where}: " if where else ""
        raise error(f"{prefix}channel {shown} is not valid: use {CHANNEL_RULE}")
    assert isinstance(value, str)
    return value


def _check(value: object, what: str, where: str | None, error: type[Exception]) -> str:
    if not is_valid_name(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "…"
        prefix = f"{where}: " if where else ""
        raise error(f"{prefix}{what} {shown} is not valid: use {NAME_RULE}")
    assert isinstance(value, str)
    return value


def check_model_name(
    value: object, *, where: str | None = None, error: type[Exception] = ArtifactError
) -> str:
    """``value`` if it is a valid model name, else ``error`` (ArtifactError by default) naming
    ``where`` (a file, key or option) and the rule."""
    return _check(value, "model name", where, error)


def check_version(value: object, *, where: str | None = None, error: type[Exception] = ArtifactError) -> str:
    """``value`` if it is a valid version, else ``error`` naming ``where`` and the rule."""
    return _check(value, "version", where, error)
