"""uvicorn's httptools protocol with a header-read timeout.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not a request whose headers
never finish: a client sending one header byte at a time (slowloris) holds its connection, and its
place in the platform's concurrency limit, for as long as it likes. :class:`HeaderTimeoutProtocol`
starts a timer when a connection opens and when each new request on it begins, and cancels it when
the headers are complete; if it fires first, the client gets ``408 Request Timeout`` and the
connection is closed. Body reads are bounded by :class:`serving.app.BodyLimitMiddleware`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["DEFAULT_HEADER_TIMEOUT_S", "HeaderTimeoutProtocol", "protocol_with_header_timeout"]

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
