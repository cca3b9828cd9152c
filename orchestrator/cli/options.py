"""Options that several commands declare the same way (one spelling of the flag, variable and help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["SigningKeyOption"]

# `train` and `package`: the key that signs the artifact before it lands (OpenSSF model signing).
SigningKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        envvar="ORCHESTRATOR_SIGNING_KEY",
        help="EC private key (PEM) to sign the artifact with (OpenSSF model signing: model.sig).",
    ),
]
