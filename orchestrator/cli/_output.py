"""Shared output helpers for commands: human text on a terminal, JSON for automation."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "emit_json", "err_console", "error"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    # Messages quote URIs, JSON paths and user input: never let them be read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
