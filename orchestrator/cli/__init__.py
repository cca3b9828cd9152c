"""The ``orchestrator`` command: a thin layer over library functions.

Each command lives in its own module and imports its heavy dependencies (scikit-learn, ONNX Runtime,
cloud SDKs) inside the command function, so ``orchestrator --help`` stays fast. Errors from the
project's exception tree become one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys

import typer

from orchestrator.errors import OrchestratorError

__all__ = ["app", "main"]

app = typer.Typer(
    name="orchestrator",
    help="Train, sync, serve, health-check and route one ML model across AWS, GCP and Azure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from orchestrator import __version__

        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Train, sync, serve, health-check and route one ML model across AWS, GCP and Azure."""


def _register() -> None:
    # Imported for their side effect of adding commands to `app`; each is cheap to import.
    from orchestrator.cli import control, demo, image, publish, serve, train  # noqa: F401


_register()


def main() -> None:
    try:
        app()
    except OrchestratorError as err:
        from orchestrator.cli._output import error

        error(str(err))
        sys.exit(err.exit_code)
