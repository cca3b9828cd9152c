"""Shared output helpers for commands: human text on a terminal, JSON for automation."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "emit_json", "err_console", "error", "shown"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def shown(value: object) -> str:
    """``value`` as text safe to print in a table or a line: one line, printable characters only,
    and no Rich markup. What endpoints, stored state and other services say is quoted this way, so
    none of it can break a table or send escape sequences to the operator's terminal."""
    text = " ".join(str(value).split())
    return escape("".join(c if c.isprintable() else " " for c in text))


def error(message: str) -> None:
    # Messages quote URIs, JSON paths and user input: never let them be read as markup.
    err_console.print(f"[bold red]error:[/] {shown(message)}", soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
