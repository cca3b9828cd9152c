"""`orchestrator serve`: run the model endpoint (the container runs exactly this command).

The container starts as bare ``orchestrator serve`` with every setting in the environment. That case
takes a short path (:func:`from_environment`, called by :func:`orchestrator.cli.main`) which never
imports typer, whose import and command building cost ~50 ms of the container's cold start. It reads
the same variables with the same defaults as the typer command below, accepts only values the two
read identically (plain decimal numbers), and hands anything else to the typer command, so its
messages and exit codes for bad values are unchanged.
"""

from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING, TypedDict

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    import typer

__all__ = ["Settings", "from_environment", "register", "run"]

MODEL_ENV = "MODEL_URI"
HOST_ENV = "HOST"
PORT_ENV = "PORT"
RELOAD_ENV = "MODEL_RELOAD_INTERVAL_S"
RELOAD_TIMEOUT_ENV = "MODEL_RELOAD_TIMEOUT_S"
MAX_BODY_ENV = "MAX_BODY_MB"
PUBLIC_KEY_ENV = "MODEL_SIGNING_PUBLIC_KEY"
DOCS_ENV = "SERVE_DOCS"
HEADER_TIMEOUT_ENV = "HTTP_HEADER_TIMEOUT_S"
BODY_TIMEOUT_ENV = "HTTP_BODY_TIMEOUT_S"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_MB = 32.0
# serving.protocol.DEFAULT_HEADER_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S, serving.reload.DEFAULT_RELOAD_TIMEOUT_S
# (not imported: this module must not import the server to build the CLI); why these values: see there.
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_RELOAD_TIMEOUT_S = 600.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Settings(TypedDict):
    """:func:`run`'s arguments."""

    model: str | None
    host: str
    port: int
    reload_interval: float | None
    max_body_mb: float
    signing_public_key: str | None
    docs: bool
    header_timeout: float
    body_timeout: float
    reload_timeout: float


_INT = re.compile(r"[0-9]{1,9}")
_FLOAT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def run(
    model: str | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    reload_interval: float | None = None,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    signing_public_key: str | None = None,
    docs: bool = False,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    reload_timeout: float = DEFAULT_RELOAD_TIMEOUT_S,
) -> None:
    """Serve one verified model over HTTP until stopped.

    With ``signing_public_key`` (PEM text or a path), every version must carry a signature that
    verifies with it (fail closed); without one, signatures are not checked, and the log says so.
    """
    if not model:
        raise ConfigError("no model given: pass --model PATH|URI or set MODEL_URI")
    timeouts = (
        ("--header-timeout", header_timeout),
        ("--body-timeout", body_timeout),
        ("--reload-timeout", reload_timeout),
    )
    for name, value in timeouts:
        if not value > 0:
            raise ConfigError(f"{name} {value}: must be a positive number of seconds")
    import uvicorn

    from orchestrator.core.artifact.signing import SignatureVerifier, load_public_key
    from serving.app import create_app
    from serving.protocol import protocol_with_header_timeout
    from serving.source import make_loader
    from serving.telemetry import configure_logging, get_logger

    configure_logging()
    log = get_logger("serving")
    verifier = None
    if signing_public_key:
        key = load_public_key(signing_public_key, where=f"--signing-public-key ({PUBLIC_KEY_ENV})")
        verifier = SignatureVerifier(key)
        log.info("signatures required", public_key=key.fingerprint)
    else:
        log.warning("signatures are not checked", hint=f"set {PUBLIC_KEY_ENV} to require them")
    application = create_app(
        make_loader(model, verifier=verifier),
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        reload_interval_s=reload_interval,
        body_timeout_s=body_timeout,
        reload_timeout_s=reload_timeout,
        docs=docs,
    )
    uvicorn.run(
        application,
        host=host,
        port=port,
        # uvloop + httptools: the C event loop and parser roughly double requests/s over the pure-Python
        # pair; the protocol subclass adds the header-read timeout uvicorn lacks.
        loop="uvloop",
        http=protocol_with_header_timeout(header_timeout),
        ws="none",  # no WebSocket routes: skip importing the websockets library at start-up
        access_log=False,  # TelemetryMiddleware logs one JSON line per request instead
        log_level=os.environ.get("LOG_LEVEL", "warning").lower(),
        timeout_graceful_shutdown=10,
    )


def from_environment() -> Settings | None:
    """:func:`run`'s arguments from the environment, or None if a value needs the typer command's
    parsing (or its error message). Unset and empty variables mean the default, as in typer."""

    def get(name: str) -> str | None:
        return os.environ.get(name) or None

    host, port, reload_interval, max_body = (get(n) for n in (HOST_ENV, PORT_ENV, RELOAD_ENV, MAX_BODY_ENV))
    header_timeout, body_timeout, docs = (get(n) for n in (HEADER_TIMEOUT_ENV, BODY_TIMEOUT_ENV, DOCS_ENV))
    reload_timeout = get(RELOAD_TIMEOUT_ENV)
    if port is not None and not _INT.fullmatch(port):
        return None
    for value in (reload_interval, max_body, header_timeout, body_timeout, reload_timeout):
        if value is not None and not _FLOAT.fullmatch(value):
            return None
    if docs is not None and docs.lower() not in (*_TRUE, *_FALSE):
        return None
    return {
        "model": get(MODEL_ENV),
        "host": host or DEFAULT_HOST,
        "port": DEFAULT_PORT if port is None else int(port),
        "reload_interval": None if reload_interval is None else float(reload_interval),
        "max_body_mb": DEFAULT_MAX_BODY_MB if max_body is None else float(max_body),
        "signing_public_key": get(PUBLIC_KEY_ENV),
        "docs": docs is not None and docs.lower() in _TRUE,
        "header_timeout": DEFAULT_HEADER_TIMEOUT_S if header_timeout is None else float(header_timeout),
        "body_timeout": DEFAULT_BODY_TIMEOUT_S if body_timeout is None else float(body_timeout),
        "reload_timeout": DEFAULT_RELOAD_TIMEOUT_S if reload_timeout is None else float(reload_timeout),
    }


@functools.cache
def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app`` (once)."""
    import typer

    @app.command()
    def serve(
        model: str = typer.Option(
            None, "--model", envvar=MODEL_ENV, help="Artifact directory or URI (default: $MODEL_URI)."
        ),
        host: str = typer.Option(
            DEFAULT_HOST, envvar=HOST_ENV, help="Interface to bind; 0.0.0.0 in a container."
        ),
        port: int = typer.Option(
            DEFAULT_PORT, envvar=PORT_ENV, help="Port to listen on (Cloud Run sets $PORT)."
        ),
        reload_interval: float = typer.Option(
            None,
            "--reload-interval",
            envvar=RELOAD_ENV,
            help="Seconds between checks for a new model.",
        ),
        max_body_mb: float = typer.Option(
            DEFAULT_MAX_BODY_MB, envvar=MAX_BODY_ENV, help="Largest request body accepted."
        ),
        signing_public_key: str = typer.Option(
            None,
            "--signing-public-key",
            envvar=PUBLIC_KEY_ENV,
            help="PEM public key (text or a path): serve only versions signed by its private key.",
        ),
        docs: bool = typer.Option(False, "--docs", envvar=DOCS_ENV, help="Serve /docs and /openapi.json."),
        header_timeout: float = typer.Option(
            DEFAULT_HEADER_TIMEOUT_S,
            "--header-timeout",
            envvar=HEADER_TIMEOUT_ENV,
            help="Seconds a client has to send its request headers (then 408).",
        ),
        body_timeout: float = typer.Option(
            DEFAULT_BODY_TIMEOUT_S,
            "--body-timeout",
            envvar=BODY_TIMEOUT_ENV,
            help="Seconds a client has to send its whole request body (then 408).",
        ),
        reload_timeout: float = typer.Option(
            DEFAULT_RELOAD_TIMEOUT_S,
            "--reload-timeout",
            envvar=RELOAD_TIMEOUT_ENV,
            help="Seconds one model load or reload may take before it is given up (slow storage).",
        ),
    ) -> None:
        """Serve one verified model over HTTP (predict, KServe V2, health, metrics)."""
        run(
            model,
            host=host,
            port=port,
            reload_interval=reload_interval,
            max_body_mb=max_body_mb,
            signing_public_key=signing_public_key,
            docs=docs,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            reload_timeout=reload_timeout,
        )
