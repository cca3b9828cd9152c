"""Compressed request bodies (``Content-Encoding``, RFC 9110 section 8.4): what
``tritonclient.http`` sends with ``request_compression_algorithm="gzip"`` or ``"deflate"`` (its
synchronous and asyncio clients alike), and what Triton and KServe's servers accept.

:class:`serving.protocol.BodyLimitMiddleware` refuses a coding this endpoint cannot decode (415)
and reads the compressed body under its limit and deadline; it marks the request's scope
(:data:`CODING_SCOPE_KEY`), and the route inflates the body when it reads it
(:func:`serving.runtime.read_body`): after the API token was checked, so a client without one
makes the endpoint inflate nothing. The same limit applies to the inflated bytes, inflated in
bounded steps (an 8 KiB gzip of 8 MiB of zeros is refused at the limit, never inflated whole).
``Inference-Header-Content-Length`` counts the inflated JSON header, as Triton reads it.

Pure functions of bytes: no framework types.
"""

from __future__ import annotations

import zlib

from serving.inputs import InputError, shown

__all__ = ["CODING_SCOPE_KEY", "inflate", "supported", "unsupported_message"]

# The ASGI scope key of a request whose body is compressed: (coding, limit in bytes).
CODING_SCOPE_KEY = "mlorch.content_coding"

# zlib's window-bits values: 16 + 15 is the gzip wrapper (RFC 1952), 15 the zlib wrapper (RFC 1950,
# HTTP's "deflate"), -15 raw deflate (RFC 1951, which some clients send as "deflate" too).
_WBITS = {"gzip": (31,), "x-gzip": (31,), "deflate": (15, -15)}
# Inflated in steps of this many bytes, so a bomb stops at the limit plus one step at most.
_STEP = 256 * 1024


def supported(encoding: bytes) -> str | None:
    """The normalised coding of a ``Content-Encoding`` value (``gzip``, ``deflate``, ``identity``),
    or None for one this endpoint cannot decode (a list of codings, ``br``, ``zstd``...)."""
    name = encoding.decode("latin-1").strip().lower()
    if name in _WBITS or name == "identity":
        return "gzip" if name == "x-gzip" else name
    return None


def unsupported_message(encoding: bytes) -> str:
    """The 415 message for a ``Content-Encoding`` this endpoint cannot decode."""
    return (
        f"Content-Encoding {shown(encoding.decode('latin-1'))} is not supported; send the body as is, "
        "or compressed with one of gzip, deflate"
    )


def inflate(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` decoded from ``coding`` (``gzip`` or ``deflate``; ``identity`` returns it as is).

    InputError 400 when it is not valid (or is truncated) in that coding, 413 when it inflates to
    more than ``limit`` bytes.
    """
    if coding == "identity":
        return body
    failure: zlib.error | None = None
    for wbits in _WBITS[coding]:
        inflater = zlib.decompressobj(wbits)
        out: list[bytes] = []
        size = 0
        try:
            pending = body
            while True:
                chunk = inflater.decompress(pending, _STEP)
                size += len(chunk)
                if size > limit:
                    raise InputError(
                        f"request body inflates ({coding}) to more than {limit} bytes: it exceeds the limit",
                        413,
                    )
                out.append(chunk)
                pending = inflater.unconsumed_tail
                if not pending:
                    break
            out.append(tail := inflater.flush())
            if size + len(tail) > limit:
                raise InputError(
                    f"request body inflates ({coding}) to more than {limit} bytes: it exceeds the limit", 413
                )
        except zlib.error as exc:
            failure = exc
            continue
        if not inflater.eof:
            failure = zlib.error("the stream is truncated")
            continue
        return b"".join(out)
    raise InputError(f"request body is not valid {coding} (Content-Encoding): {failure}", 400)
