"""Bearer-token authentication of the endpoint's routes, as one pure ASGI middleware.

With ``API_TOKEN`` set (and, during a rotation, ``API_TOKEN_PREVIOUS``), every request needs
``Authorization: Bearer <token>`` (RFC 6750 section 2.1) naming one of them, except the probes the
platforms send without credentials: liveness and readiness (:data:`OPEN_PATHS`). Everything else
is closed by default, so a route added later is never open by accident:

- predictions and model metadata (``/v1/...``, ``/v2/models/...``, KServe's routes): the
  metadata names the features and ``/v1/model`` carries the canary's training rows;
- ``/metrics``: it counts predictions by class and model version, which is the model's business;
  Prometheus sends a bearer token from its scrape configuration (``authorization``);
- ``/v2`` (server metadata), ``/docs`` and ``/openapi.json`` when served, and unknown paths (a
  client without the token learns nothing about which routes exist).

Without a token the middleware is not installed at all (the endpoint is open, and says so at
start-up): the demo and local runs work as before.

The check costs one pass over the request's headers, one SHA-256 of the presented token and one
:func:`hmac.compare_digest` per accepted token (all of them, whichever matches: the time does not
tell which token, or whether any, matched; comparing digests of equal length also hides the
accepted tokens' lengths). A refusal is ``401`` with ``WWW-Authenticate: Bearer realm=...`` (and
``error="invalid_token"`` when a credential was presented, RFC 6750 section 3.1) and the JSON
``{"error": message}`` every other refusal of this endpoint has. No message and no log line
contains what the client sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, Final

from serving.protocol import send_error

__all__ = ["OPEN_PATHS", "REALM", "BearerTokenMiddleware"]

# The probes the platforms (ECS/ALB, Cloud Run, Container Apps, Route 53) and KServe-style
# orchestrators send without credentials: liveness and readiness only. `/livez` is the Kubernetes
# spelling of liveness, open should a route of that name be served.
OPEN_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz", "/v2/health/live", "/v2/health/ready"})
# What the `WWW-Authenticate` challenge names (RFC 7235 section 2.2): the protection space.
REALM: Final = "model endpoint"
_CHALLENGE: Final = f'Bearer realm="{REALM}"'.encode()
_INVALID: Final = f'Bearer realm="{REALM}", error="invalid_token"'.encode()
# A credential: printable ASCII without spaces (what orchestrator.core.tokens accepts as a token).
_CREDENTIAL: Final = re.compile(rb"[\x21-\x7e]+")


class BearerTokenMiddleware:
    """Refuse requests without a valid bearer token (see the module docstring).

    ``tokens``: the accepted tokens (one, or two during a rotation), non-empty strings; ValueError
    for none. Paths in :data:`OPEN_PATHS` and non-HTTP scopes (lifespan) pass unchecked.
    """

    def __init__(self, app: Any, tokens: Sequence[str]) -> None:
        if not tokens or not all(tokens):
            raise ValueError("BearerTokenMiddleware needs at least one non-empty token")
        self.app = app
        self._digests = tuple(hashlib.sha256(t.encode()).digest() for t in tokens)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope["headers"])
        if problem is None:
            await self.app(scope, receive, send)
            return
        message, challenge = problem
        await send_error(_Challenging(send, challenge), message, 401)

    def _problem(self, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, bytes] | None:
        """None for a request carrying exactly one accepted bearer token, else (message, challenge)."""
        value: bytes | None = None
        for name, header in headers:
            if name == b"authorization":
                if value is not None:
                    return "more than one Authorization header", _INVALID
                value = header
        if value is None:
            return "missing credentials: send Authorization: Bearer <token>", _CHALLENGE
        scheme, _, credential = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return "Authorization is not a Bearer credential: send Authorization: Bearer <token>", _INVALID
        # RFC 7235: 1*SP between the scheme and the token; RFC 9110 section 5.5: whitespace around a
        # field value is not part of it (a client or proxy may leave a trailing space).
        credential = credential.strip(b" \t")
        if not _CREDENTIAL.fullmatch(credential):
            return "malformed bearer token (printable ASCII without spaces expected)", _INVALID
        presented = hashlib.sha256(credential).digest()
        accepted = False
        for digest in self._digests:  # every one, whichever matches: constant time
            accepted |= hmac.compare_digest(digest, presented)
        return None if accepted else ("invalid bearer token", _INVALID)


class _Challenging:
    """``send`` that adds the ``WWW-Authenticate`` challenge to the response's headers."""

    def __init__(self, send: Any, challenge: bytes) -> None:
        self.send = send
        self.challenge = challenge

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], (b"www-authenticate", self.challenge)]}
        await self.send(message)
