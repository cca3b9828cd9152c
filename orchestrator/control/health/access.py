"""How the probes reach each cloud the way a client does: the public name and the API token.

:class:`ProbeAccess` builds the prober's HTTP client from ``endpoint.public_name`` and
``auth.token`` (:mod:`orchestrator.control.config_access`):

- with a public name, every request still connects to the cloud's own entry
  (``clouds.<cloud>.endpoint``: ``aws.<public name>``, the GCP load balancer's name, the Azure
  app's host) but carries ``Host: <public name>`` and sends the public name as the TLS server name
  (SNI, httpcore's ``sni_hostname`` request extension), so the certificate is verified for the
  public name: an entry that does not serve the public name over TLS fails its probe (a TLS error,
  a 421 or 404 from an ingress that routes by host), and its cloud is not counted healthy;
- with a token reference, every request carries ``Authorization: Bearer <token>``. The token is
  read from its secret store before the first round, within the store's deadline, and re-read
  every :data:`TOKEN_TTL_S` (a rotation reaches a long ``health --watch``; the endpoints accept
  both tokens meanwhile); a failed re-read keeps the token in hand and says so (:attr:`note`).

The token is held only in the client's headers: never logged, never in a reason or a report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import httpx

from orchestrator.control.config import Config
from orchestrator.core.errors import ConfigError

__all__ = ["TOKEN_TTL_S", "ProbeAccess", "PublicNameTransport"]

# How long a token read from its store is used before it is read again: a rotation keeps the
# previous token valid for as long as the operator needs (minutes at least), so five minutes never
# leaves a watch with a token the endpoints stopped accepting, and costs one read per 60 rounds.
TOKEN_TTL_S: Final = 300.0


class PublicNameTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: each request gets ``Host: <public_name>`` (with the URL's port when it
    is not the scheme's default) and the TLS server name ``public_name``, whatever host it
    connects to."""

    def __init__(self, inner: httpx.AsyncBaseTransport, public_name: str) -> None:
        self.inner = inner
        self.public_name = public_name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port  # None when it is the scheme's default
        request.headers["Host"] = self.public_name if port is None else f"{self.public_name}:{port}"
        request.extensions = {**request.extensions, "sni_hostname": self.public_name}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ProbeAccess:
    """The probes' HTTP client for ``config`` (see the module docstring). ``read_token`` reads
    the reference (default: :func:`orchestrator.control.secrets.read_secret`); ``monotonic`` measures
    the token's age."""

    def __init__(
        self,
        config: Config,
        *,
        read_token: Callable[[str], str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.public_name = config.endpoint.public_name
        self.token_ref = config.auth.token
        self.note: str | None = None  # why the token in use is not a fresh one
        self._read = read_token or _read_secret
        self._monotonic = monotonic
        self._token: str | None = None
        self._read_at = -float("inf")

    def client(self, transport: httpx.AsyncBaseTransport | None, timeout: float) -> httpx.AsyncClient:
        """The client the probes use: ``transport`` (default: httpx's own, verifying TLS) wrapped
        to send the public name, with the token's header once :meth:`refresh` read it."""
        if self.public_name is not None:
            transport = PublicNameTransport(transport or httpx.AsyncHTTPTransport(), self.public_name)
        return httpx.AsyncClient(transport=transport, timeout=timeout)

    def refresh(self, client: httpx.AsyncClient) -> None:
        """Read the token when there is none or it is older than TOKEN_TTL_S, and put it in
        ``client``'s headers. ConfigError (naming the reference) when the first read fails; a
        failed re-read keeps the token in hand and sets :attr:`note`."""
        if self.token_ref is None or self._monotonic() - self._read_at < TOKEN_TTL_S:
            return
        try:
            token = _checked(self.token_ref, self._read(self.token_ref))
        except ConfigError as exc:
            if self._token is None:
                raise ConfigError(f"auth.token: {exc}") from None
            self.note = f"auth.token not re-read, still using the token read before: {exc}"
            self._read_at = self._monotonic()  # try again at the next TTL, not at every round
            return
        self._token, self._read_at, self.note = token, self._monotonic(), None
        client.headers["Authorization"] = f"Bearer {token}"


def _checked(reference: str, token: str) -> str:
    """``token`` when it can travel as a bearer token (:func:`orchestrator.core.tokens.token_problem`,
    the rule the endpoint applies to its own copy), else ConfigError naming the reference and never
    quoting the value: a secret stored with a trailing newline (``echo``) or a pasted scheme would
    otherwise be refused by the HTTP client in an error quoting the header, which would become the
    probe's reason, in tables, flip records and the state."""
    from orchestrator.core.tokens import token_problem

    if problem := token_problem(token):
        raise ConfigError(f"secret {reference}: the value is not an API token: it {problem}")
    return token


def _read_secret(reference: str) -> str:
    from orchestrator.control.secrets import parse_secret_ref, read_secret

    try:
        ref = parse_secret_ref(reference)
    except ValueError as exc:
        raise ConfigError(f"the reference {exc}") from None
    return read_secret(ref)
