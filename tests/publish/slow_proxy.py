"""An HTTP proxy in front of a storage emulator that answers some GETs one byte at a time.

Storage that is slow rather than down (a degraded link, a congested NAT, a hostile middlebox) never
trips a connection or read timeout: every byte arrives in time, the whole object never does. The
proxy forwards every request to the emulator and, for GETs whose path contains one of the
``trickled`` strings, sends the body one byte per ``delay`` seconds until it is stopped.
"""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from orchestrator.demo.processes import free_port

__all__ = ["SlowProxy"]

_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "host", "keep-alive"}


class SlowProxy:
    """``url`` forwards to ``upstream``; GETs matching ``trickle(...)`` patterns crawl."""

    def __init__(self, upstream: str, delay: float = 0.5) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = delay
        self.trickled: set[str] = set()
        self.stopped = threading.Event()
        self.port = free_port()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=self.rfile.read(length) if length else None,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:  # loopback
                        status, headers, data = response.status, response.headers.items(), response.read()
                except urllib.error.HTTPError as exc:
                    status, headers, data = exc.code, exc.headers.items(), exc.read()
                slow = self.command == "GET" and status < 300 and any(p in self.path for p in proxy.trickled)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                upstream_length = {k.lower(): v for k, v in headers}.get("content-length", "0")
                self.send_header(
                    "content-length", upstream_length if self.command == "HEAD" else str(len(data))
                )
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not slow:
                    self.wfile.write(data)
                    return
                for byte in data:
                    if proxy.stopped.wait(proxy.delay):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def trickle(self, patterns: Iterable[str]) -> None:
        """GETs whose path contains any of ``patterns`` crawl from now on."""
        self.trickled = set(patterns)

    def __enter__(self) -> SlowProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
