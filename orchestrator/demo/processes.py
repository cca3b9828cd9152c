"""Local processes for the demo, the tests and the benchmarks: endpoints on loopback ports.

Everything started here is a child process in its own session, so it can be signalled as a group,
and stopping waits for it: nothing is left behind, also when the caller is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["Endpoint", "ManagedProcess", "free_port", "start_endpoint", "wait_http"]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it; a race with another process is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process started in its own session; ``stop`` terminates the whole group and reaps it."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                env={**os.environ, **(self.env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if self.log_path and not isinstance(log, int):
                log.close()
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (and SIGCONT, in case a test froze it), then SIGKILL after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)
        # Reap anything the child left in its group (it should be nothing).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, *, timeout: float, process: ManagedProcess | None = None, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``; fail early if ``process`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process is not None and not process.alive():
                raise RuntimeError(f"{process.name} exited before {url} answered:\n{process.tail()}")
            try:
                response = client.get(url)
                if response.status_code == status:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
    tail = f"\n{process.tail()}" if process else ""
    raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f}s (last: {last}){tail}")


@dataclass
class Endpoint:
    """An ``orchestrator serve`` process on a loopback port."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> Endpoint:
        wait_http(f"{self.url}/readyz", timeout=timeout, process=self.process)
        return self

    def stop(self) -> None:
        self.process.stop()


def start_endpoint(
    model: str,
    *,
    port: int | None = None,
    name: str = "endpoint",
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cpu: int | None = None,
) -> Endpoint:
    """Start the endpoint (``python -m serving --model MODEL``, what the image runs) on a free (or
    given) port; does not wait for ready.

    ``cpu`` pins the process to one core with taskset where available (benchmarks use it to keep the
    server and the load generator off each other's core).
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "serving", "--model", model, "--port", str(port), *extra_args]
    if cpu is not None and Path("/usr/bin/taskset").exists():
        argv = ["taskset", "-c", str(cpu), *argv]
    process = ManagedProcess(name=name, argv=argv, env=env, log_path=log_path).start()
    return Endpoint(process=process, port=port)
