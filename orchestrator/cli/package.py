"""`orchestrator package`: a classifier trained elsewhere into a verified artifact
(:mod:`orchestrator.training.packaging`).

scikit-learn, skops, skl2onnx and ONNX Runtime are imported inside the command, so registering it
costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli.options import (
    AgainstOption,
    AllowWorseOption,
    ChampionKeyOption,
    EvalOption,
    SigningKeyOption,
    gate_json,
    gate_lines,
)
from orchestrator.render.artifact import artifact_written
from orchestrator.render.output import console

if TYPE_CHECKING:
    from orchestrator.training.packaging.package import PackageResult

__all__ = ["package"]


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(part.strip() for part in value.split(","))


@app.command()
def package(
    *,
    model: Annotated[
        Path,
        typer.Option(help="The model: an .onnx file, or a scikit-learn estimator saved with skops (.skops)."),
    ],
    reference: Annotated[
        Path,
        typer.Option(
            help="A CSV or Parquet table of the model's inputs: the canary comes from it and the "
            "export is checked on it."
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            help="The reference table's label column: evaluate the model on it (train's metrics and report)."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Class labels A,B,C in the order of the probability columns (when the model carries none)."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Feature names A,B,C in the model's input order (default: the model's, or the table's)."
        ),
    ] = None,
    categorical: Annotated[
        list[str] | None,
        typer.Option(
            help="A column to read as text categories even if every value is a number (repeatable)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Artifact name (default: the model file's stem).")] = None,
    out: Annotated[Path, typer.Option(help="The artifact is written to OUT/NAME/VERSION.")] = Path(
        "artifacts"
    ),
    signing_key: SigningKeyOption = None,
    against: AgainstOption = None,
    eval_table: EvalOption = None,
    allow_worse: AllowWorseOption = None,
    signing_public_key: ChampionKeyOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {path, name, version, export, metrics} as JSON instead.")
    ] = False,
) -> None:
    """Package an ONNX or scikit-learn classifier as a verified artifact; its path is printed last."""
    from orchestrator.training.packaging.package import PackageOptions
    from orchestrator.training.packaging.package import package as run_package

    result = run_package(
        PackageOptions(
            model=model,
            reference=reference,
            target=target,
            labels=_split(labels),
            features=_split(features),
            categorical=tuple(categorical or ()),
            name=name,
            out=out,
            signing_key=signing_key,
            against=against,
            eval_table=eval_table,
            allow_worse=allow_worse,
            signing_public_key=signing_public_key,
        )
    )
    manifest = result.manifest
    artifact_written(
        result.path,
        manifest,
        signed=result.signed,
        json_output=json_output,
        summary=lambda: _print_summary(result),
        extra={"export": manifest.export, **gate_json(manifest)},
    )


def _print_summary(result: PackageResult) -> None:
    manifest = result.manifest
    export, features = manifest.export, manifest.features
    lines = [
        f"[bold green]packaged[/] {manifest.name} [bold]{manifest.version}[/] "
        f"({manifest.training['estimator']}, {features.count} features as {features.layout}, "
        f"{len(manifest.classes)} classes)",
        f"  agrees with {export['compared_with']} on {export['test_rows']} reference rows: labels "
        f"{export['labels_agree']:.0%}, max probability difference {export['max_probability_diff']:.1e}",
    ]
    if manifest.metrics:
        lines.append(
            f"  on {manifest.split['dataset']}: accuracy {manifest.metrics['accuracy']:.4f} · "
            f"F1 macro {manifest.metrics['f1_macro']:.4f}"
        )
    lines += gate_lines(manifest)
    for line in lines:
        # soft_wrap: a narrow or absent terminal must not break lines that scripts may grep.
        console.print(line, soft_wrap=True)
