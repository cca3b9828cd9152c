"""The ``orchestrator`` command: a thin layer over library functions.

Each command lives in its own module and imports its heavy dependencies (scikit-learn, ONNX Runtime,
cloud SDKs) inside the command function, so ``orchestrator --help`` stays fast. Errors from the
project's exception tree become one line on stderr and a non-zero exit code; so do usage errors
and anything unexpected (see :func:`main`).

:data:`app` (the typer application) is built on first use and :func:`main` registers the commands
on it, only ``serve``'s when that is the command (it execs ``python -m serving``, see
:mod:`orchestrator.cli.serve`). Code that drives :data:`app` itself (e.g. with a ``CliRunner``)
calls :func:`register_commands` first.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.core.errors import OrchestratorError

if TYPE_CHECKING:
    import typer

    app: typer.Typer

__all__ = ["app", "main", "register_commands"]


@functools.cache
def _build_app() -> typer.Typer:
    import typer

    application = typer.Typer(
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

    @application.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """Train, sync, serve, health-check and route one ML model across AWS, GCP and Azure."""

    return application


def __getattr__(name: str) -> typer.Typer:
    # `app` is built on first access (PEP 562): `from orchestrator.cli import app` in the command
    # modules works as before, and a process that never touches it never imports typer.
    if name == "app":
        return _build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_commands(argv: Sequence[str] | None = None) -> None:
    """Add the commands to ``app`` (calling it again adds nothing twice).

    Given the arguments and they name ``serve``, only that command is registered: what ``orchestrator
    serve`` runs and prints (``--help`` included) is the same, it just starts faster.
    """
    from orchestrator.cli import serve

    app = _build_app()
    if next((arg for arg in argv or () if not arg.startswith("-")), None) == "serve":
        serve.register(app)
        return
    # Imported for their side effect of adding commands to `app`, in the order `--help` lists them.
    from orchestrator.cli import channels, control, demo, drift, image, package, publish, rollout  # noqa: F401

    serve.register(app)
    from orchestrator.cli import train  # noqa: F401


# sysexits.h EX_SOFTWARE, "an internal software error has been detected": an exception the code
# did not expect. It never comes with a traceback (which may quote data); ORCHESTRATOR_DEBUG=1 shows it.
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main() -> None:
    """The console script: every error is one line on stderr (``error: ...``) and an exit code:
    the project's errors their own (:mod:`orchestrator.core.errors`), usage errors 2, Ctrl-C 130, and
    anything unexpected :data:`EXIT_INTERNAL`, naming only its type and where it was raised."""
    argv = sys.argv[1:]
    from orchestrator.render.output import error

    try:
        # Retries are summed up in the error that ends them ("gave up after 3 attempts in 0.8 s");
        # stamina's per-retry log records would otherwise reach stderr through logging's last resort.
        logging.getLogger("stamina").addHandler(logging.NullHandler())
        logging.getLogger("stamina").propagate = False
        register_commands(argv)
        code = _build_app()(args=argv, prog_name="orchestrator", standalone_mode=False)
    except OrchestratorError as err:
        error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # Typer carries its own copy of click, so its exceptions are recognised by shape: a usage
        # error (missing option, unknown command...) has an exit code and a formatted message.
        if type(exc).__name__ == "Abort":
            sys.exit(EXIT_INTERRUPTED)
        exit_code = getattr(exc, "exit_code", None)
        if hasattr(exc, "format_message") and isinstance(exit_code, int):
            ctx = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            error(f"{where}{' '.join(str(exc.format_message()).split())} (see --help)")
            sys.exit(exit_code)
        if os.environ.get("ORCHESTRATOR_DEBUG"):
            raise
        error(_internal(exc))
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


def _internal(exc: BaseException) -> str:
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return (
        f"internal error: {type(exc).__name__}{where}; this is a bug, please report it "
        "(ORCHESTRATOR_DEBUG=1 shows the traceback)"
    )
