"""Secret references: where the control plane reads a secret it needs (the API token), never
the secret itself.

``orchestrator.yaml`` names a secret by reference, and the value is read when it is needed, from
the secret store of the cloud the reference names, with that cloud's usual credentials:

- ``aws-sm://NAME`` or ``aws-sm://arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-xxxxxx``:
  AWS Secrets Manager (the ``SecretString`` of the current version; the ARN's region, else the
  SDK's); :mod:`.aws`
- ``gcp-sm://projects/PROJECT/secrets/SECRET[/versions/VERSION]``: Google Secret Manager (the
  ``latest`` version unless named); :mod:`.gcp`
- ``azure-kv://VAULT/SECRET[/VERSION]``: an Azure Key Vault secret (``https://VAULT.vault.azure.net``;
  its current version unless named); :mod:`.azure`
- ``env://VARIABLE``: an environment variable: for local use, and for the scheduled jobs, whose
  platform puts the token from the job's own cloud's secret store into ``API_TOKEN`` by
  reference (ECS ``secrets``, Cloud Run ``secret_key_ref``, a Container Apps Key Vault secret).

Each cloud's SDK is imported only when one of its references is read. A read has a total
deadline (:data:`READ_DEADLINE_S`, credential discovery included); what goes wrong is a
ConfigError naming the reference (a name, not a secret) and never quoting the value.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from orchestrator.core.errors import ConfigError

__all__ = ["READ_DEADLINE_S", "SCHEMES", "SecretRef", "parse_secret_ref", "read_secret"]

# The longest one read may take, all included: credential discovery (an instance metadata
# service that does not answer costs its own timeouts), the request, one retry. A secret store
# answers in tens of milliseconds; a command that needs the token waits no longer than this.
READ_DEADLINE_S: Final = 10.0
# The per-request timeouts handed to each SDK (seconds): well under the deadline, so that one
# retry fits in it.
CONNECT_TIMEOUT_S: Final = 3.0
READ_TIMEOUT_S: Final = 3.0

SCHEMES: Final = ("aws-sm", "gcp-sm", "azure-kv", "env")
_AWS_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_AWS_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")
_GCP = re.compile(
    r"projects/([A-Za-z0-9_-]{1,100})/secrets/([A-Za-z0-9_-]{1,255})(?:/versions/(latest|[1-9][0-9]{0,18}))?"
)
_AZURE = re.compile(r"([A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])/([A-Za-z0-9-]{1,127})(?:/([0-9a-f]{32}))?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference: its ``scheme`` (one of :data:`SCHEMES`) and the scheme's parts (for
    ``aws-sm``: the secret id and the ARN's region or None; ``gcp-sm``: the version's full
    resource name; ``azure-kv``: the vault URL, the secret's name and version or None; ``env``:
    the variable's name). ``text`` is the reference as written (names only, no secret)."""

    scheme: str
    text: str
    parts: tuple[str | None, ...]


def parse_secret_ref(text: str) -> SecretRef:
    """The reference ``text``; ValueError saying which forms are accepted. A value that is no
    reference at all (a token pasted in) is refused without being quoted."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(
            "is not a secret reference (aws-sm://NAME, gcp-sm://projects/P/secrets/S, "
            "azure-kv://VAULT/SECRET or env://VARIABLE); never write the secret itself here"
        )
    if scheme == "aws-sm":
        arn = _AWS_ARN.fullmatch(rest)
        if arn is None and not _AWS_NAME.fullmatch(rest):
            raise ValueError("aws-sm:// takes a Secrets Manager secret name or ARN")
        return SecretRef(scheme, text, (rest, arn.group(1) if arn else None))
    if scheme == "gcp-sm":
        match = _GCP.fullmatch(rest)
        if match is None:
            raise ValueError("gcp-sm:// takes projects/PROJECT/secrets/SECRET[/versions/VERSION]")
        project, secret, version = match.groups()
        return SecretRef(
            scheme, text, (f"projects/{project}/secrets/{secret}/versions/{version or 'latest'}",)
        )
    if scheme == "azure-kv":
        match = _AZURE.fullmatch(rest)
        if match is None:
            raise ValueError(
                "azure-kv:// takes VAULT/SECRET[/VERSION] (a vault name of 3 to 24 letters, digits "
                "and '-'; a secret name of letters, digits and '-'; a 32-hex-digit version)"
            )
        vault, name, version = match.groups()
        return SecretRef(scheme, text, (f"https://{vault.lower()}.vault.azure.net", name, version))
    if not _ENV.fullmatch(rest):
        raise ValueError("env:// takes an environment variable's name")
    return SecretRef(scheme, text, (rest,))


def read_secret(
    ref: SecretRef, *, environ: Mapping[str, str] | None = None, deadline_s: float = READ_DEADLINE_S
) -> str:
    """The secret ``ref`` names, as text, read within ``deadline_s`` seconds. ConfigError naming
    the reference when it cannot be read (missing, no permission, no credentials, the SDK not
    installed, empty, the deadline passed), never quoting a value."""
    if ref.scheme == "env":
        value = (os.environ if environ is None else environ).get(str(ref.parts[0]), "")
        if not value:
            raise ConfigError(f"secret {ref.text}: the environment variable is not set (or empty)")
        return value
    reader = _reader(ref.scheme)
    outcome: list[str | BaseException] = []

    def run() -> None:
        try:
            outcome.append(reader(ref))
        except BaseException as exc:  # carried to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name=f"secret-{ref.scheme}", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if not outcome:  # the daemon thread is abandoned; its SDK timeouts end it
        raise ConfigError(f"secret {ref.text}: the secret store did not answer within {deadline_s:g} s")
    result = outcome[0]
    if isinstance(result, ConfigError):
        raise ConfigError(f"secret {ref.text}: {result}") from None
    if isinstance(result, BaseException):
        # The SDK's message names the secret and the failure (permission, not found), not a value;
        # its type is kept, its traceback is not (it may hold request objects).
        raise ConfigError(
            f"secret {ref.text}: cannot read it: {type(result).__name__}: {_first_line(result)}"
        ) from None
    if not result:
        raise ConfigError(f"secret {ref.text}: the secret is empty")
    return result


def _reader(scheme: str) -> Callable[[SecretRef], str]:
    if scheme == "aws-sm":
        from orchestrator.control.secrets.aws import read

        return read
    if scheme == "gcp-sm":
        from orchestrator.control.secrets.gcp import read

        return read
    from orchestrator.control.secrets.azure import read

    return read


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text[:200]
