"""`orchestrator train`: fit, evaluate, gate and write a model artifact (:mod:`orchestrator.training`).

scikit-learn, skl2onnx and friends are imported inside the command, so registering it costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

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
    from orchestrator.training.pipeline import TrainResult

__all__ = ["train"]


@app.command()
def train(
    *,
    dataset: Annotated[str, typer.Option(help="iris, wine, digits, or a path to a CSV or Parquet file.")],
    target: Annotated[
        str | None,
        typer.Option(
            help="The table's column holding the labels, read as text exactly as written "
            "(default: the column named 'target')."
        ),
    ] = None,
    model: Annotated[
        Literal["logreg", "random_forest", "hist_gradient_boosting", "auto"],
        typer.Option(
            help="The classifier; auto compares all three in the same cross-validated search.",
        ),
    ] = "logreg",
    strategy: Annotated[
        Literal["multinomial", "ovr"],
        typer.Option(help="Logistic regression: one softmax model, or one binary model per class."),
    ] = "multinomial",
    class_weight: Annotated[
        Literal["none", "balanced"],
        typer.Option(
            help="balanced: weight classes inversely to their frequency (recorded in the manifest)."
        ),
    ] = "none",
    categorical: Annotated[
        list[str] | None,
        typer.Option(
            help="A column to read as text categories even if every value is a number (repeatable)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="The artifact is written to OUT/NAME/VERSION.")] = Path(
        "artifacts"
    ),
    seed: Annotated[
        int, typer.Option(help="Seed of the train/test split and the cross-validation folds.")
    ] = 0,
    min_f1_macro: Annotated[
        float | None,
        typer.Option(
            help="Metric gate: below this test-set macro F1 nothing is written and the exit is non-zero."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Artifact name (default: the dataset's name, or the CSV file's stem).")
    ] = None,
    signing_key: SigningKeyOption = None,
    against: AgainstOption = None,
    eval_table: EvalOption = None,
    allow_worse: AllowWorseOption = None,
    signing_public_key: ChampionKeyOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {path, name, version, metrics} as JSON instead.")
    ] = False,
) -> None:
    """Train a classifier and write a verified, versioned artifact; its path is the last line printed."""
    from orchestrator.training.pipeline import TrainOptions
    from orchestrator.training.pipeline import train as run_training

    options = TrainOptions(
        dataset=dataset,
        target=target,
        model=model,
        strategy=strategy,
        class_weight=class_weight,
        categorical=tuple(categorical or ()),
        out=out,
        seed=seed,
        min_f1_macro=min_f1_macro,
        name=name,
        signing_key=signing_key,
        against=against,
        eval_table=eval_table,
        allow_worse=allow_worse,
        signing_public_key=signing_public_key,
    )
    result = run_training(options)
    artifact_written(
        result.path,
        result.manifest,
        signed=result.signed,
        json_output=json_output,
        summary=lambda: _print_summary(result),
        extra=gate_json(result.manifest),
    )


def _print_summary(result: TrainResult) -> None:
    manifest = result.manifest
    metrics, cv, split = manifest.metrics, manifest.metrics["cv"], manifest.split
    test_scores = " · ".join(
        f"{label} {metrics[key]:.4f}"
        for key, label in (
            ("accuracy", "accuracy"),
            ("balanced_accuracy", "balanced accuracy"),
            ("f1_macro", "F1 macro"),
            ("roc_auc_ovr_macro", "ROC AUC"),
        )
    )
    chosen = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cv["best_params"].items()
    )
    model = manifest.training.get("chosen", "logreg")
    kind = manifest.training["strategy"] if model == "logreg" else model
    lines = [
        f"[bold green]trained[/] {manifest.name} [bold]{manifest.version}[/] "
        f"({kind}, {chosen}, {split['n_train']} train / {split['n_test']} test rows)",
        f"  test: {test_scores}",
        f"  cross-validated F1 macro {cv['f1_macro_mean']:.4f} ± {cv['f1_macro_std']:.4f} · ONNX agrees with "
        f"scikit-learn (max probability difference {manifest.export['max_probability_diff']:.1e})",
    ]
    lines += gate_lines(manifest)
    for line in lines:
        # soft_wrap: a narrow or absent terminal must not break lines that scripts may grep.
        console.print(line, soft_wrap=True)
