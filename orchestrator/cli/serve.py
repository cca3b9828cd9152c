"""`orchestrator serve ARGS...`: the model endpoint, as the container runs it (``python -m serving``).

The command replaces this process with ``python -m serving ARGS...`` (same interpreter, same
environment, same process id, so signals reach the endpoint), so its options, help, errors and exit
codes are the endpoint's own (:mod:`serving.settings`); ``orchestrator serve --help`` prints them.
"""

from __future__ import annotations

import functools
import os
import sys

import typer

__all__ = ["register"]


@functools.cache
def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app`` (once)."""

    @app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    def serve(ctx: typer.Context) -> None:
        """Serve one verified model over HTTP (predict, KServe V2, health, metrics); see serve --help."""
        sys.stdout.flush()
        sys.stderr.flush()
        # No shell: this interpreter, the endpoint's module and the arguments as given.
        os.execv(sys.executable, [sys.executable, "-m", "serving", *ctx.args])  # noqa: S606
