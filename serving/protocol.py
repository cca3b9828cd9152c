"""HTTP-level limits: how long and how large a request may be, before any route sees it.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not a request whose headers
never finish: a client sending one header byte at a time (slowloris) holds its connection, and its
place in the platform's concurrency limit, for as long as it likes. :class:`HeaderTimeoutProtocol`
starts a timer when a connection opens and when each new request on it begins, and cancels it when
the headers are complete; if it fires first, the client gets ``408 Request Timeout`` and the
connection is closed.

:class:`BodyLimitMiddleware` (ASGI) bounds the body: its size (413) and the time it takes to arrive
(408).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "BodyLimitMiddleware",
    "HeaderTimeoutProtocol",
    "protocol_with_header_timeout",
    "send_error",
]

# Request line and headers are a few hundred bytes; 10 s is generous on the slowest mobile link
# and still frees a slowloris connection quickly.
DEFAULT_HEADER_TIMEOUT_S = 10.0
_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that answers 408 and closes when headers take longer than ``header_timeout_s``.

    The hot path only sets and clears a deadline (a float) per request; one timer per connection
    checks it, so a kept-alive connection serving thousands of requests schedules no timer per
    request.
    """

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        super().connection_made(transport)
        self._header_deadline = self.loop.time() + self.header_timeout_s
        self._header_timer = self.loop.call_at(self._header_deadline, self._check_headers)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._header_deadline = self.loop.time() + self.header_timeout_s

    def on_headers_complete(self) -> None:
        self._header_deadline = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _check_headers(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        deadline = self._header_deadline
        if deadline is not None and now >= deadline:
            body = b'{"error":"request headers did not arrive within %g s"}' % self.header_timeout_s
            self.transport.write(_RESPONSE % (len(body), body))
            self.transport.close()
            return
        # Headers complete (or idle between requests: uvicorn's keep-alive timeout closes it):
        # look again when the current deadline, or one a full timeout from now, would pass.
        self._header_timer = self.loop.call_at(
            deadline if deadline is not None else now + self.header_timeout_s, self._check_headers
        )


def protocol_with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """A protocol class for ``uvicorn.run(http=...)`` with this header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})


# The whole body must arrive within this many seconds of the request's start: 32 MiB at 5 Mbit/s
# takes ~55 s. A client trickling its body (slowloris) is answered 408 and disconnected.
DEFAULT_BODY_TIMEOUT_S = 60.0


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
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    message = f"request body of {int(value)} bytes exceeds the limit of {self.max_bytes}"
                    await send_error(send, message, 413)
                    return
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        seen = 0
        timer: asyncio.TimerHandle | None = None
        timed_out = False
        if has_body:
            task = asyncio.current_task()

            def expire() -> None:
                nonlocal timed_out
                timed_out = True
                if task is not None:
                    task.cancel()

            timer = asyncio.get_running_loop().call_later(self.timeout_s, expire)

        async def limited() -> Any:
            nonlocal seen, timer
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            if timer is not None and (message["type"] != "http.request" or not message.get("more_body")):
                timer.cancel()  # the body is complete
                timer = None
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await send_error(send, f"request body exceeds the limit of {self.max_bytes} bytes", 413)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            message = f"request body did not arrive within {self.timeout_s:g} s"
            await send_error(send, message, 408, close=True)
        finally:
            if timer is not None:
                timer.cancel()


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
