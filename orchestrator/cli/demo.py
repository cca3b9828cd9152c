"""`orchestrator demo`: the whole story on one machine (see orchestrator.demo)."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import app


@app.command()
def demo(
    json_out: str = typer.Option(
        None, "--json", help="Write the demo's events and figures to this file ('-': standard output)."
    ),
    report: Path = typer.Option(
        Path("demo-report"), "--report", help="Directory for report.md and traffic.png."
    ),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the clouds up afterwards (Ctrl-C stops them); prints the config."
    ),
    workdir: Path = typer.Option(
        None, "--workdir", help="Keep buckets, logs and state here (default: a temporary directory)."
    ),
    rate: float = typer.Option(40.0, "--rate", min=1.0, max=500.0, help="Prediction requests per second."),
) -> None:
    """Three emulated clouds: train, sync, serve, route by cost, fail over, roll out, roll back."""
    import orjson

    from orchestrator.demo.story import DemoOptions, run_demo
    from orchestrator.render.output import console, err_console

    options = DemoOptions(workdir=workdir, report_dir=report, keep_running=keep_running, rate_per_s=rate)
    # With the JSON on standard output, the story goes to standard error.
    result = run_demo(options, err_console if json_out == "-" else console)
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    if json_out == "-":
        typer.echo(data.decode(), nl=False)
    elif json_out:
        Path(json_out).write_bytes(data)
    if result.get("interrupted"):
        raise typer.Exit(130)
    if not result.get("ok"):
        raise typer.Exit(1)
