"""Fault injection for real endpoints: a loopback TCP proxy that adds latency (or holds traffic),
and a misbehaving endpoint process in front of a real one (``tests/misbehaving.py``).

Kill and freeze need nothing special (SIGKILL, SIGSTOP on the endpoint's process); slowness is
injected on the wire, as a congested network or an overloaded load balancer would, so the endpoint
itself runs unmodified. A proxy stopped and started again on the same port is an outage of what
it fronts (a Route 53 API that refuses connections, then comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path

import httpx

from orchestrator.demo.processes import ManagedProcess, free_port

__all__ = ["MISBEHAVING", "DelayProxy", "MisbehavingEndpoint"]

MISBEHAVING = Path(__file__).resolve().parent / "misbehaving.py"


class MisbehavingEndpoint:
    """``tests/misbehaving.py`` as a process on a free port, forwarding to ``upstream`` until told
    to misbehave (:meth:`mode`)."""

    def __init__(self, upstream: str, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.process = ManagedProcess(
            name="misbehaving",
            argv=[sys.executable, str(MISBEHAVING), "--port", str(self.port), "--upstream", upstream],
            log_path=log_path,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> MisbehavingEndpoint:
        self.process.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.mode("ok")
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline or not self.process.alive():
                    raise RuntimeError(
                        f"the misbehaving endpoint did not start:\n{self.process.tail()}"
                    ) from None
                time.sleep(0.05)

    def mode(self, mode: str) -> None:
        response = httpx.post(f"{self.url}/_mode/{mode}", timeout=5)
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        self.process.stop()


class DelayProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, delaying each response chunk.

    ``dropping`` (set it, or call :meth:`drop`): a network partition between whoever connects
    here and the target. Every connection is accepted and reset at once (RST: the client sees
    its connection dropped, as behind a firewall that rejects), and the connections already open
    are reset too; clearing it heals the partition."""

    def __init__(self, target_port: int, delay_s: float = 0.0, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.dropping = False
        self._open: set[asyncio.StreamWriter] = set()
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="delay-proxy")
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(timeout=5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:  # connections still open: their pipes end on cancellation
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def drop(self, dropping: bool = True) -> None:
        """Start (or with False, end) the partition; open connections are reset now."""
        self.dropping = dropping
        if dropping:

            def reset() -> None:
                for writer in list(self._open):
                    writer.transport.abort()

            self._loop.call_soon_threadsafe(reset)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dropping:
            writer.transport.abort()  # RST, nothing forwarded
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._open.add(writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delayed: bool) -> None:
            try:
                while data := await src.read(65536):
                    if delayed and self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        finally:
            self._open.discard(writer)
