"""Options that several commands declare the same way (one spelling of the flag, variable and help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

__all__ = [
    "AgainstOption",
    "AllowWorseOption",
    "ChampionKeyOption",
    "EvalOption",
    "SigningKeyOption",
    "gate_lines",
]

# `train` and `package`: the key that signs the artifact before it lands (OpenSSF model signing).
SigningKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        envvar="ORCHESTRATOR_SIGNING_KEY",
        help="EC private key (PEM) to sign the artifact with (OpenSSF model signing: model.sig).",
    ),
]

# `train` and `package`: the champion-challenger gate (orchestrator.training.gate).
AgainstOption = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="The champion to beat: a bucket's models/NAME/LATEST, models/NAME/VERSION, or a local "
        "artifact directory. A significantly worse model is refused (exit 5) and nothing is written.",
    ),
]
EvalOption = Annotated[
    Path | None,
    typer.Option(
        "--eval",
        help="A labelled CSV or Parquet table both models are scored on (with --against), when the "
        "champion takes other columns.",
    ),
]
AllowWorseOption = Annotated[
    str | None,
    typer.Option(
        "--allow-worse",
        metavar="REASON",
        help="Write the model even if the champion-challenger gate refuses it; REASON is recorded "
        "in the manifest.",
    ),
]
# The public key the champion's signature must verify with (as `sync` and the endpoint take it).
ChampionKeyOption = Annotated[
    str | None,
    typer.Option(
        "--signing-public-key",
        envvar="MODEL_SIGNING_PUBLIC_KEY",
        help="PEM public key (text or a path): the --against champion's signature must verify with it.",
    ),
]


def gate_json(manifest: Any) -> dict[str, Any]:
    """``{"gate": ...}`` for ``--json`` when the manifest records a champion-challenger gate."""
    gate = (manifest.model_extra or {}).get("gate")
    return {"gate": gate} if gate else {}


def gate_lines(manifest: Any) -> list[str]:
    """The summary line of a manifest's champion-challenger gate (none without one)."""
    gate = getattr(manifest, "gate", None)
    if not isinstance(gate, dict):
        return []
    against, delta, test = gate["against"], gate["delta_f1_macro"], gate["mcnemar"]
    line = (
        f"  gate against {against['name']} {against['version']}: {gate['decision']} · macro F1 "
        f"{gate['challenger']['f1_macro']:.4f} vs {gate['champion']['f1_macro']:.4f}, difference "
        f"{delta['estimate']:+.4f} (95 % CI {delta['ci_low']:+.4f} to {delta['ci_high']:+.4f}) · "
        f"McNemar exact p = {test['pvalue']:.3g}"
    )
    if gate.get("allow_worse"):
        line += f" · allowed worse: {gate['allow_worse']}"
    return [escape(line)]
