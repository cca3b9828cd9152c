"""`orchestrator demo`: the whole story on one machine (see orchestrator.demo)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from orchestrator.cli import app


@app.command()
def demo(
    json_out: Path = typer.Option(None, "--json", help="Also write the demo's figures to this file."),
) -> None:
    """Train a model, serve it, send it predictions, print the results and shut everything down."""
    import orjson

    from orchestrator.cli._output import err_console
    from orchestrator.demo import run_demo

    result = run_demo(console=err_console)
    if json_out:
        json_out.write_bytes(orjson.dumps(dataclasses.asdict(result), option=orjson.OPT_INDENT_2))
    if result.errors:
        raise typer.Exit(1)
