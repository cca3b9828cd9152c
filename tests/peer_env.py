"""Python packages that cannot live in the project's environment, installed once and cached under
``.cache/peers/`` (keyed by their pins, so a changed pin installs afresh).

- :func:`layered` installs packages with ``--no-deps`` into a directory put on ``PYTHONPATH`` in
  front of the project's own environment: the KServe SDK's client for the conformance tests. The
  ``kserve`` package pins ``pandas<3`` and ``psutil<6`` (the project pins 3.1.1 and 7.2.2), so it
  cannot be in ``constraints.txt``; its REST client needs neither, and runs on the project's versions.
  Measured here: 19 s to install, against 108 s for a virtualenv of its own with every dependency
  (CI starts from a fresh machine, so that would be paid on every run).
- :func:`own_venv` makes a virtualenv with its own dependencies: the peer servers of
  ``benchmarks/peers.py`` (MLServer, KServe's model server), which pin their own web stacks.

Installing needs the package index; a failure is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "peers"

# The KServe SDK 0.21.0 and the dependencies it has beyond the project's (pip freeze of a virtualenv
# with kserve==0.21.0, minus what constraints.txt already pins).
KSERVE_CLIENT = (
    "kserve==0.21.0",
    "aiohttp-retry==2.9.1",
    "cloudevents==1.13.0",
    "deprecation==2.1.0",
    "durationpy==0.11",
    "grpc-interceptor==0.15.4",
    "grpcio-tools==1.81.1",
    "kubernetes==37.0.1",
    "oauthlib==4.0.1",
    "python-multipart==0.0.34",
    "requests-oauthlib==2.0.0",
    "tabulate==0.10.0",
    "timing-asgi==0.3.2",
    "websocket-client==1.9.2",
)
# Every pip call's deadline: a hung index fails the run instead of holding it.
PIP_TIMEOUT_S = 600


def _key(name: str, pins: tuple[str, ...]) -> Path:
    digest = hashlib.sha256("\n".join((sys.version, *pins)).encode()).hexdigest()[:12]
    return CACHE / f"{name}-{digest}"


def _pip(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... failed:\n{result.stderr[-3000:]}")


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for building ``target``: two processes (pytest-xdist workers, or two
    sessions) asking for the same packages at once build them once, and neither removes the
    other's half-built directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def layered(name: str, pins: tuple[str, ...]) -> Path:
    """A directory holding ``pins`` (installed without dependencies) to put on ``PYTHONPATH``."""
    target = _key(name, pins)
    with _locked(target):
        return _build_layer(target, pins)


def _build_layer(target: Path, pins: tuple[str, ...]) -> Path:
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _pip([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-deps", "--no-compile", "--target", str(partial), *pins])  # fmt: skip
    (partial / ".complete").write_text("\n".join(pins) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def own_venv(name: str, pins: tuple[str, ...]) -> Path:
    """A virtualenv with ``pins`` and their dependencies; returns its ``python``."""
    root = _key(name, pins)
    with _locked(root):
        return _build_venv(root, pins)


def _build_venv(root: Path, pins: tuple[str, ...]) -> Path:
    python = root / "bin" / "python"
    if (root / ".complete").exists():
        return python
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=PIP_TIMEOUT_S)
    _pip([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins])
    (root / ".complete").write_text("\n".join(pins) + "\n")
    return python
