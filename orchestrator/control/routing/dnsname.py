"""DNS names as Route 53 returns them, so that a configured name and a listed one compare equal.

Route 53's rules ("DNS domain name format" in the Route 53 Developer Guide):

- names are absolute; a trailing dot is optional on input and always present in answers;
- alphabetic characters are stored and returned in lower case, however they were given
  (upper case, lower case, or as escape codes);
- any character other than ``a-z``, ``0-9``, ``-`` and ``_`` is returned as an escape code
  ``\\ddd`` (three octal digits): ``*.example.com`` comes back as ``\\052.example.com.``, a dot
  inside a label as ``\\056``;
- internationalised names are stored in their ASCII form (punycode, ``xn--...``);
- a label holds 1 to 63 octets and the whole name at most 255 octets on the wire.

:func:`route53_name` maps any accepted spelling (upper case, a missing trailing dot, characters
written plainly or escaped as ``\\ddd`` or ``\\X``, Unicode labels) to that one form, and is
idempotent, so both sides of a comparison can be passed through it.
"""

from __future__ import annotations

__all__ = ["route53_name"]

# Returned as themselves; every other octet is escaped.
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
# RFC 1035 section 2.3.4, which Route 53 enforces.
MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 255  # on the wire: one length octet per label, the labels, the root's zero octet


def route53_name(name: str) -> str:
    """``name`` as Route 53 lists it (see the module docstring). ValueError says what is wrong
    with a name Route 53 would refuse: empty, an empty label, a label over 63 octets, a name over
    255 octets, a bad escape, or a Unicode label with no ASCII form."""
    text = name.strip()
    if text in ("", "."):
        raise ValueError("empty name")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"a label has no ASCII (punycode) form: {exc}") from None
    labels = _labels(text)
    for label in labels:
        if not 1 <= len(label) <= MAX_LABEL_OCTETS:
            raise ValueError(f"labels hold 1 to {MAX_LABEL_OCTETS} octets, one has {len(label)}")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_OCTETS:
        raise ValueError(f"the name is longer than {MAX_NAME_OCTETS} octets")
    return "".join(_escaped(label) + "." for label in labels)


def _labels(text: str) -> list[bytes]:
    """The labels of a presentation-format name, escapes decoded (RFC 1035 section 5.1)."""
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            digits = text[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit():
                value = int(digits, 8) if all(d in "01234567" for d in digits) else 256
                if value > 255:
                    raise ValueError(f"escape \\{digits} is not three octal digits of one octet")
                current.append(value)
                i += 4
            elif i + 1 < len(text):
                current.extend(text[i + 1].encode("ascii"))
                i += 2
            else:
                raise ValueError("the name ends in a lone backslash")
        elif char == ".":
            if not current:
                raise ValueError("empty label (two dots in a row, or a leading dot)")
            labels.append(bytes(current))
            current = bytearray()
            i += 1
        elif " " < char < "\x7f":
            current.append(ord(char))
            i += 1
        else:
            raise ValueError(f"unescaped space or control character {char!r} (write it as \\{ord(char):03o})")
    if current:
        labels.append(bytes(current))
    return labels


def _escaped(label: bytes) -> str:
    return "".join(chr(o) if o in _PLAIN else f"\\{o:03o}" for o in label.lower())
