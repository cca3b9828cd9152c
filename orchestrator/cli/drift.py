"""`orchestrator drift report`: every cloud's model drift now, as Markdown and PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import app
from orchestrator.cli.control import CONFIG_HELP, JSON_HELP

drift_app = typer.Typer(help="Model drift: each endpoint's live inputs and outputs against the reference.")
app.add_typer(drift_app, name="drift")


@drift_app.command("report")
def report(
    out: Path = typer.Option(Path("drift-report"), "--out", help="Directory for drift.md and the PNGs."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Read every cloud's GET /v1/model/drift, judge it against the drift: section, compare the
    clouds, and write drift.md with a PSI plot per cloud and the predicted classes per cloud.

    Exit code: 0 no drift, 1 a cloud in warn or alarm or flagged by the cross-cloud comparison,
    2 no cloud answered with drift data, a configuration error, or an --out that is a file;
    without matplotlib drift.md is written without plots (one line says so)."""
    from orchestrator.control.config import load_config
    from orchestrator.control.drift_report import check_out, collect, exit_code, write_report
    from orchestrator.render.control import drift_text
    from orchestrator.render.output import console, emit_json

    cfg = load_config(config)
    check_out(out)
    clouds = collect(cfg)
    path, notes = write_report(clouds, cfg, out)
    if json_out:
        emit_json({"report": str(path), "notes": notes, "clouds": {c.cloud: c.summary for c in clouds}})
    else:
        for note in notes:
            console.print(note, soft_wrap=True, markup=False)
        for c in clouds:
            console.print(f"{c.cloud}: {drift_text(c.summary)}", soft_wrap=True)
        console.print(f"report: {path}")
    raise typer.Exit(exit_code(clouds))
