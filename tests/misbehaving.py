"""A misbehaving endpoint: a real HTTP server process in front of a real one, failing on command.

    python tests/misbehaving.py --port 8099 --upstream http://127.0.0.1:8080
    curl -X POST localhost:8099/_mode/trickle           # from now on /readyz trickles its body

In mode ``ok`` every request is forwarded to ``--upstream`` (an ``orchestrator serve``), so the
cloud behind it is healthy; every other mode (:data:`MODES`) is one way an endpoint, or whatever
sits in front of it (a proxy, a captive portal, a half-dead load balancer), answers wrongly on the
wire or in the body. ``POST /_mode/<mode>`` switches at once and is always answered, whatever the
mode. Written on raw asyncio streams so that it can do what a correct server never would: trickle
bytes, stall before the status line, lie about lengths, reset mid-body, speak something else than
HTTP. The health checker's tests and benchmarks/failover.py start it as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gzip
import json
import socket
import struct
import sys
from urllib.parse import urlsplit

# mode -> (what it does, the reason a probe must give for it): the tests and the benchmark use both.
MODES: dict[str, tuple[str, str]] = {
    "ok": ("forward everything to the real endpoint", ""),
    "null_probabilities": ("canary answer with the right labels and null probabilities", "not all numbers"),
    "string_probabilities": ("canary probabilities as strings", "not all numbers"),
    "nan_probabilities": ("canary probabilities as NaN (not JSON)", "not a JSON object"),
    "wrong_shape": ("canary probabilities as one flat list", "wrong shape"),
    "wrong_labels": ("canary labels as integers", "labels (strings)"),
    "deep_nesting": ("canary answer nested 100,000 levels deep", "not a JSON object"),
    "html_200": ("200 text/html on every path (a captive portal)", "not a JSON object"),
    "non_json": ("200 text/plain 'OK' on every path", "not a JSON object"),
    "status_500": ("500 on every path", "answered 500"),
    "not_ready": ("503 with a 1 MB reason", "not ready"),
    "redirect": ("302 to itself on every path", "answered 302"),
    "wrong_version": ("/v1/model names another version", "serves version"),
    "hostile_version": ("/v1/model names a version of markup and terminal escapes", "names no version"),
    "slow_model": ("/readyz answers at once, /v1/model takes the whole deadline", "timed out"),
    "trickle": ("/readyz body one byte every 1.5 s", "timed out"),
    "slow_headers": ("30 s before the status line", "timed out"),
    "slow_answers": ("every answer 0.3 s late: each request within a per-request timeout", "timed out"),
    "hang": ("reads the request, never answers", "timed out"),
    "oversized": ("/v1/model 100 MB long, Content-Length announced", "over 1024 KiB"),
    "oversized_chunked": ("/v1/model streamed without end, no length", "over 1024 KiB"),
    "gzip_bomb": ("/v1/model gzip of 50 MB of spaces", "content-encoding gzip"),
    "reset": ("headers and half a body, then a TCP reset", "unreachable"),
    "short_body": ("Content-Length 1000, 10 bytes, then close", "unreachable"),
    "garbage": ("not HTTP at all (an SSH banner)", "unreachable"),
    "huge_headers": ("a 200 KB response header", "unreachable"),
}

HTML = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
MAX_REQUEST_HEAD = 64 * 1024


class Misbehaving:
    def __init__(self, upstream: str, mode: str = "ok") -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode = mode

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                if path.startswith("/_mode/"):
                    mode = path.removeprefix("/_mode/")
                    if mode not in MODES:
                        await _respond(writer, 404, b"unknown mode", "text/plain")
                        continue
                    self.mode = mode
                    await _respond(writer, 200, mode.encode(), "text/plain")
                    continue
                keep = await self.answer(self.mode, method, path, headers, body, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def answer(
        self,
        mode: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request in ``mode``; False when the connection must end."""
        if mode == "html_200":
            return await _respond(writer, 200, HTML, "text/html")
        if mode == "non_json":
            return await _respond(writer, 200, b"OK", "text/plain")
        if mode == "status_500":
            return await _respond(writer, 500, b'{"error": "internal"}', "application/json")
        if mode == "not_ready":
            reason = json.dumps({"ready": False, "reason": "x" * 1_000_000}).encode()
            return await _respond(writer, 503, reason, "application/json")
        if mode == "redirect":
            return await _respond(writer, 302, b"", "text/plain", location=f"http://127.0.0.1{path}")
        if mode == "hang":
            await asyncio.sleep(3600)
            return False
        if mode == "slow_headers" or (mode == "slow_model" and path == "/v1/model"):
            await asyncio.sleep(30)
        if mode == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + b"\x00\xff" * 100)
            await writer.drain()
            return False
        if mode == "huge_headers":
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\n{}"
            )
            await writer.drain()
            return False
        if path == "/v1/model" and mode in ("oversized", "oversized_chunked", "gzip_bomb"):
            return await self._big_model(mode, writer)
        if path == "/v1/predict" and mode == "deep_nesting":
            return await _respond(writer, 200, b"[" * 100_000 + b"]" * 100_000, "application/json")
        status, answer_headers, answer = await self._forward(method, path, headers, body)
        if mode == "slow_answers":
            await asyncio.sleep(0.3)
        answer = _rewrite(mode, path, answer)
        if mode == "trickle" and path == "/readyz":
            writer.write(_head(status, len(answer), answer_headers.get("content-type", "application/json")))
            for byte in answer:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.5)
            return True
        if mode == "reset":
            writer.write(_head(status, len(answer), "application/json") + answer[: len(answer) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if mode == "short_body":
            writer.write(_head(status, 1000, "application/json") + answer[:10])
            await writer.drain()
            return False
        return await _respond(writer, status, answer, answer_headers.get("content-type", "application/json"))

    async def _big_model(self, mode: str, writer: asyncio.StreamWriter) -> bool:
        if mode == "gzip_bomb":
            bomb = _bomb()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
                + bomb
            )
            await writer.drain()
            return True
        size = 100 * 1024 * 1024
        if mode == "oversized":
            writer.write(_head(200, size, "application/json"))
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
        chunk = b" " * 65536
        frame = chunk if mode == "oversized" else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(size // len(chunk)):
            writer.write(frame)
            await writer.drain()  # raises once the client gives up: the stream ends there
        return False

    async def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: {self.upstream[0]}:{self.upstream[1]}\r\n"
            head += f"Content-Type: {headers.get('content-type', 'application/json')}\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head_bytes, _, answer = raw.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        answer_headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            answer_headers[key.strip().lower()] = value.strip()
        return status, answer_headers, answer


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(b" " * 50_000_000, compresslevel=9)


def _rewrite(mode: str, path: str, answer: bytes) -> bytes:
    """The upstream's answer, made wrong the way ``mode`` says (on the paths it applies to)."""
    if path == "/v1/model" and mode in ("wrong_version", "hostile_version"):
        doc = json.loads(answer)
        doc["version"] = "0000not-deployed" if mode == "wrong_version" else "[/bold]\x1b[2J\x1b]0;pwned\x07"
        return json.dumps(doc).encode()
    if path != "/v1/predict" or mode not in (
        "null_probabilities", "string_probabilities", "nan_probabilities", "wrong_shape", "wrong_labels"
    ):  # fmt: skip
        return answer
    doc = json.loads(answer)
    if mode == "null_probabilities":
        doc["probabilities"] = [[None for _ in row] for row in doc["probabilities"]]
    elif mode == "string_probabilities":
        doc["probabilities"] = [[str(p) for p in row] for row in doc["probabilities"]]
    elif mode == "nan_probabilities":
        doc["probabilities"] = [[float("nan") for _ in row] for row in doc["probabilities"]]
    elif mode == "wrong_shape":
        doc["probabilities"] = [p for row in doc["probabilities"] for p in row]
    else:
        doc["predictions"] = list(range(len(doc["predictions"])))
    return json.dumps(doc).encode()  # Python writes NaN as the bare token NaN: not JSON


def _head(status: int, length: int, content_type: str, **extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    lines += [f"{k.title()}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, **extra: str
) -> bool:
    writer.write(_head(status, len(body), content_type, **extra) + body)
    await writer.drain()
    return True


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    if len(head) > MAX_REQUEST_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, path, headers, body


async def serve(port: int, upstream: str, mode: str) -> None:
    server_state = Misbehaving(upstream, mode)
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", port, limit=MAX_REQUEST_HEAD)
    print(f"misbehaving endpoint on 127.0.0.1:{port}, upstream {upstream}, mode {mode}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the real endpoint to forward to in mode ok")
    parser.add_argument("--mode", default="ok", choices=sorted(MODES))
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.upstream, args.mode))
    sys.exit(0)


if __name__ == "__main__":
    main()
