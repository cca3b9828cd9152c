"""What an API token must look like: one rule for the stacks that store it, the endpoint that
checks it and the control plane that sends it.

A token travels as ``Authorization: Bearer <token>`` (RFC 6750). It must be at least
:data:`MIN_TOKEN_LENGTH` printable ASCII characters without spaces: RFC 6750's ``b64token``
allows fewer characters, but anything visible is accepted and compared as bytes by the endpoint.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MIN_TOKEN_LENGTH", "token_problem"]

# 32 characters: the 44 of `openssl rand -base64 32` (256 random bits) comfortably pass; a
# short, guessable token would make the check decorative.
MIN_TOKEN_LENGTH: Final = 32
# Printable ASCII without spaces (0x21-0x7e, RFC 7230's VCHAR): what one header token can hold.
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")


def token_problem(value: str) -> str | None:
    """Why ``value`` cannot be an API token (a phrase to follow the key or variable's name), or
    None when it can. The phrase never quotes the value."""
    if len(value) < MIN_TOKEN_LENGTH or not _TOKEN.fullmatch(value):
        return (
            f"must be at least {MIN_TOKEN_LENGTH} printable characters without spaces "
            "(for example the output of `openssl rand -base64 32`)"
        )
    return None
