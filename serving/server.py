"""Run the endpoint: the application (:func:`serving.app.create_app`) under uvicorn, until stopped."""

from __future__ import annotations

import uvicorn

from orchestrator.core.artifact.signing import SignatureVerifier, load_public_key
from orchestrator.core.contract import ENV_API_TOKEN, ENV_SIGNING_PUBLIC_KEY
from serving.app import create_app
from serving.loader import make_loader
from serving.protocol import protocol_with_header_timeout
from serving.settings import Settings
from serving.telemetry import configure_logging, get_logger

__all__ = ["run"]

# Seconds uvicorn gives open requests to finish after SIGTERM: longer than any prediction, shorter
# than the platforms' grace periods (Cloud Run and ECS 10 s at the least, Container Apps 30 s).
GRACEFUL_SHUTDOWN_S = 10


def run(settings: Settings) -> None:
    """Serve one verified model over HTTP until stopped (SIGINT or SIGTERM).

    With ``settings.signing_public_key`` (PEM text or a path), every version must carry a signature
    that verifies with it (fail closed); without one, signatures are not checked, and the log says
    so. With ``settings.api_tokens``, every route but liveness and readiness needs one of them as a
    bearer token (:mod:`serving.auth`); without, the log warns that the endpoint is open. Raises
    ConfigError for a key that does not load or a model URI outside the grammar.
    """
    configure_logging()
    log = get_logger("serving")
    verifier = None
    if settings.signing_public_key:
        key = load_public_key(
            settings.signing_public_key, where=f"--signing-public-key ({ENV_SIGNING_PUBLIC_KEY})"
        )
        verifier = SignatureVerifier(key)
        log.info("signatures required", public_key=key.fingerprint)
    else:
        log.warning("signatures are not checked", hint=f"set {ENV_SIGNING_PUBLIC_KEY} to require them")
    if settings.api_tokens:
        log.info("bearer token required", tokens=len(settings.api_tokens))
    else:
        log.warning(
            "predictions are not authenticated: every route is open",
            hint=f"set {ENV_API_TOKEN} to require Authorization: Bearer <token>",
        )
    application = create_app(
        make_loader(settings.model, cache_dir=settings.cache_dir, verifier=verifier),
        max_body_bytes=int(settings.max_body_mb * 1024 * 1024),
        reload_interval_s=settings.reload_interval,
        body_timeout_s=settings.body_timeout,
        reload_timeout_s=settings.reload_timeout,
        docs=settings.docs,
        api_tokens=settings.api_tokens,
        drift_window_rows=settings.drift_window_rows,
    )
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        # uvloop + httptools: the C event loop and parser roughly double requests/s over the pure-Python
        # pair; the protocol subclass adds the header-read timeout uvicorn lacks.
        loop="uvloop",
        http=protocol_with_header_timeout(settings.header_timeout),
        ws="none",  # no WebSocket routes: skip importing the websockets library at start-up
        access_log=False,  # TelemetryMiddleware logs one JSON line per request instead
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
