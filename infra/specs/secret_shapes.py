"""Secret detection in plain stack configuration, by the value's shape.

A key name says little (``note: AKIA...`` is still an AWS key), so every plain string a stack
reads is also checked for what credentials look like: cloud access keys, private keys,
connection strings and signed URLs, tokens with a known prefix, and long random-looking strings.
:func:`secret_shape` names the kind found, or None; :func:`refuse_secret_values` walks a
configuration object and raises :class:`~infra.specs.fields.ConfigError` naming the key, never
the value. A PEM *public* key (``signing_public_key``) is not a secret and passes.

Patterns: AWS access key ids (IAM user guide, "Understanding unique ID prefixes"); PEM
(RFC 7468); Azure Storage connection strings and SAS (``AccountKey=``, ``sig=``); Google service
account key files (``"private_key"``); GitHub (``ghp_``...) and Slack (``xox?-``) token prefixes;
JSON Web Tokens (RFC 7519: base64url header ``eyJ``); credentials in a URL's userinfo (RFC 3986).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = ["MIN_RANDOM_ENTROPY_BITS", "MIN_RANDOM_LENGTH", "iter_strings", "secret_shape"]

_SHAPES: Final = (
    (re.compile(r"(?<![A-Z0-9])(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Z0-9])"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a PEM private key"),
    (
        re.compile(r"(AccountKey|SharedAccessKey|SharedAccessSignature)=", re.IGNORECASE),
        "an Azure connection string with a key",
    ),
    (re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{8,}"), "a signed URL (SAS signature)"),
    (re.compile(r"\"private_key(_id)?\"\s*:"), "a Google service account key file"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "a JSON Web Token"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE), "a URL with a password"),
)
_PUBLIC_KEY: Final = re.compile(
    r"\s*-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]{40,4096}-----END PUBLIC KEY-----\s*"
)
# A random token: at least 32 characters of base64 or base64url with upper case, lower case and
# digits, or 40 hexadecimal digits (an image digest's hex follows "sha256:" and is exempt).
# 32 characters: the shortest common API token (128 bits in base64 is 22; most issuers use 32 or
# more), while the configuration's own long words (ids, names) are short or lack one class.
MIN_RANDOM_LENGTH: Final = 32
_BASE64_RUN: Final = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_RANDOM_LENGTH},}}={{0,2}}")
_HEX_RUN: Final = re.compile(r"(?<![0-9a-fA-F:])(?<!sha256:)[0-9a-fA-F]{40,}(?![0-9a-fA-F])")
# Shannon entropy per character above which a run counts as random: English words and
# identifiers stay below about 3.5 bits; 32 random base64 characters measure about 4.5-5.
MIN_RANDOM_ENTROPY_BITS: Final = 4.0
# Identifiers are made of words (resourceGroups, MyResourceGroup): a run more than this share of
# which is words of four letters or more is a name, not a token. In 32 random base64 characters,
# such words cover about a twentieth.
MAX_WORD_SHARE: Final = 0.5
_WORD: Final = re.compile(r"[A-Z]?[a-z]{4,}")
# UUIDs (subscription, tenant and object ids) are identifiers, random but public.
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _random_run(value: str) -> bool:
    value = _UUID.sub(" ", value)
    for match in _BASE64_RUN.finditer(value):
        run = match.group().rstrip("=")
        classes = (
            any(c.isupper() for c in run),
            any(c.islower() for c in run),
            any(c.isdigit() for c in run),
        )
        words = sum(len(word) for word in _WORD.findall(run))
        if all(classes) and words <= MAX_WORD_SHARE * len(run) and _entropy(run) >= MIN_RANDOM_ENTROPY_BITS:
            return True
    return _HEX_RUN.search(value) is not None


def secret_shape(value: str) -> str | None:
    """What kind of credential ``value`` looks like ("an AWS access key id"...), or None.

    A PEM public key is not a secret (None). Never returns any part of the value.
    """
    if _PUBLIC_KEY.fullmatch(value):
        return None
    for pattern, kind in _SHAPES:
        if pattern.search(value):
            return kind
    if _random_run(value):
        return "a random token (a long high-entropy string)"
    return None


def iter_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string leaf of a configuration value with its dotted path (``environment.X``,
    ``invokers[0]``); a key is a leaf too, since a mapping's keys are configuration text."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield sub, key
            yield from iter_strings(value, sub)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from iter_strings(value, f"{path}[{i}]")
