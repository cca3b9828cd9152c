"""HTTP-level limits: how long and how large a request may be, before any route sees it.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not a request whose headers
never finish: a client sending one header byte at a time (slowloris) holds its connection, and its
place in the platform's concurrency limit, for as long as it likes. :class:`HeaderTimeoutProtocol`
starts a timer when a connection opens and when each new request on it begins, and cancels it when
the headers are complete; if it fires first, the client gets ``408 Request Timeout`` and the
connection is closed. httptools sets no limit on the size of headers either (a 40 MB header was
accepted, and held in memory): past :data:`DEFAULT_MAX_HEADER_BYTES` the client gets ``431`` and
the connection is closed.

:class:`BodyLimitMiddleware` (ASGI) bounds the body: its size (413) and the time it takes to arrive
(408). A response sent before the body was read whole (a route that does not read it, a 413) closes
the connection, so a client cannot keep it open by trickling a body nobody reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.encoding import CODING_SCOPE_KEY, supported, unsupported_message
from serving.settings import DEFAULT_BODY_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "BodyLimitMiddleware",
    "HeaderTimeoutProtocol",
    "protocol_with_header_timeout",
    "send_error",
]

# Request line plus headers, in bytes. Clients send a few hundred; uvicorn's other parser (h11)
# refuses more than 16 KiB and nginx's defaults allow 4 x 8 KiB, so 64 KiB refuses no real client.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _HeaderLimit(Exception):
    """Raised from a parser callback to stop parsing a request that was refused."""


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that answers 408 and closes when headers take longer than ``header_timeout_s``,
    and 431 when they are larger than ``max_header_bytes``.

    The hot path only sets and clears a deadline (a float) per request; one timer per connection
    checks it, so a kept-alive connection serving thousands of requests schedules no timer per
    request. Header bytes are counted twice over, and either count refuses: exactly, as httptools
    hands over the URL and each complete header; and by the bytes received while headers are in
    progress (a single header of megabytes is never handed over until it ends).
    """

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._parsed_bytes = 0  # URL and complete headers of the request in progress
        self._received_bytes = 0  # bytes received while its headers were in progress
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        super().connection_made(transport)
        self._header_deadline = self.loop.time() + self.header_timeout_s
        self._header_timer = self.loop.call_at(self._header_deadline, self._check_headers)

    def data_received(self, data: bytes) -> None:
        """Parse ``data`` (uvicorn), and count it against the header limit while headers arrive."""
        counting = self._in_headers  # a chunk that begins a request may end the previous one
        super().data_received(data)
        if counting and self._in_headers and not self._refused:
            self._received_bytes += len(data)
            if self._received_bytes > self.max_header_bytes:
                self._refuse(431, b"request headers exceed the limit of %d bytes" % self.max_header_bytes)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._parsed_bytes = self._received_bytes = 0
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._header_deadline = self.loop.time() + self.header_timeout_s

    def on_url(self, url: bytes) -> None:
        """Count the URL (or a piece of it) against the header limit; 431 past it."""
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count one complete header against the header limit; 431 past it."""
        self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._header_deadline = None
        self._in_headers = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, unless the request was already refused (408, 431)."""
        if not self._refused:  # a refusal already answered; the parser error is its echo
            super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _count_parsed(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes:
            self._refuse(431, b"request headers exceed the limit of %d bytes" % self.max_header_bytes)
            raise _HeaderLimit  # stops the parser: nothing of this request reaches the app

    def _refuse(self, status: int, message: bytes) -> None:
        """Answer ``status`` with ``{"error": message}`` and close the connection."""
        self._refused = True
        if self.transport.is_closing():
            return
        body = b'{"error":"%s"}' % message
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()

    def _check_headers(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        deadline = self._header_deadline
        if deadline is not None and now >= deadline:
            self._refuse(408, b"request headers did not arrive within %g s" % self.header_timeout_s)
            return
        # Headers complete (or idle between requests: uvicorn's keep-alive timeout closes it):
        # look again when the current deadline, or one a full timeout from now, would pass.
        self._header_timer = self.loop.call_at(
            deadline if deadline is not None else now + self.header_timeout_s, self._check_headers
        )


def protocol_with_header_timeout(
    seconds: float, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> type[HeaderTimeoutProtocol]:
    """A protocol class for ``uvicorn.run(http=...)`` with this header timeout and size limit."""
    return type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": seconds, "max_header_bytes": max_header_bytes},
    )


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before reading them (by header) or while reading them,
    and bodies that do not arrive within ``timeout_s`` of the request's start with 408 (the
    connection is then closed).

    The deadline is one timer per request with a body, cancelled once the body is complete; if it
    fires first it cancels the request's task, which this middleware turns into the 408. (A
    ``wait_for`` around every ``receive()`` would cost a task per body message on the hot path.)
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = DEFAULT_BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body, declared, encoding = _declared_body(scope["headers"])
        if declared is not None and declared > self.max_bytes:
            message = f"request body of {declared} bytes exceeds the limit of {self.max_bytes}"
            await send_error(send, message, 413, close=True)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        # Rare: a compressed body (this limit bounds its compressed bytes; the route inflates it).
        if (
            encoding is not None
            and (scope := await _with_coding(scope, send, encoding, self.max_bytes)) is None
        ):
            return
        seen = 0
        complete = timed_out = False
        task = asyncio.current_task()

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            if task is not None:
                task.cancel()

        timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(self.timeout_s, expire)

        async def limited() -> Any:
            nonlocal seen, timer, complete
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            if message["type"] != "http.request" or not message.get("more_body"):
                complete = True
                if timer is not None:
                    timer.cancel()  # the body is complete
                    timer = None
            return message

        async def closing(message: Any) -> None:
            # Answered before the body was read whole: close, or the client could keep the
            # connection open by trickling a body that no route reads.
            if message["type"] == "http.response.start" and not complete:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited, closing)
        except _TooLarge:
            await send_error(
                send, f"request body exceeds the limit of {self.max_bytes} bytes", 413, close=True
            )
        except asyncio.CancelledError:
            if not timed_out:
                raise
            if task is not None:
                task.uncancel()
            message = f"request body did not arrive within {self.timeout_s:g} s"
            await send_error(send, message, 408, close=True)
        finally:
            if timer is not None:
                timer.cancel()


async def _with_coding(scope: Any, send: Any, encoding: bytes, max_bytes: int) -> Any:
    """``scope`` marked with the body's coding for :func:`serving.runtime.read_body` to inflate it
    under ``max_bytes`` (:mod:`serving.encoding`); None after answering 415 for a coding this
    endpoint cannot decode."""
    coding = supported(encoding)
    if coding is None:
        await send_error(send, unsupported_message(encoding), 415, close=True)
        return None
    return scope if coding == "identity" else {**scope, CODING_SCOPE_KEY: (coding, max_bytes)}


def _declared_body(headers: Any) -> tuple[bool, int | None, bytes | None]:
    """(whether the request has a body, its declared Content-Length if any, its Content-Encoding
    if any)."""
    has_body, declared, encoding = False, None, None
    for name, value in headers:
        if name == b"content-length":
            declared = int(value) if value.isdigit() else None
            has_body = value != b"0"
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"content-encoding":
            encoding = value if encoding is None else encoding + b", " + value
    return has_body, declared, encoding


class _TooLarge(Exception):
    pass


async def send_error(send: Any, message: str, status: int, *, close: bool = False) -> None:
    """Send ``{"error": message}`` with ``status`` as a complete ASGI response; with ``close``, ask
    the server to close the connection afterwards."""
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
