"""Shared output helpers for commands: human text on a terminal, JSON and YAML for automation.

Machine-readable output (``--json``, the YAML of ``config from-stacks`` and ``config check``) is
written as plain bytes to standard output, never through Rich: Rich wraps lines at the terminal's
width, or at 80 columns when standard output is not a terminal, which breaks YAML and JSON
redirected to a file. Headers and confirmations go to standard error. In every JSON document the
times (keys :func:`is_time_key` names) are ISO 8601 in UTC, and clouds are objects keyed by the cloud.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "emit_json", "emit_text", "err_console", "error", "is_time_key", "iso_time", "shown"]

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


def is_time_key(key: object) -> bool:
    """Whether a JSON key holds a time: ``at``, any ``*_at`` (``expires_at``, ``renewed_at``) and
    any ``*_until`` (``hold_until``). One naming rule rather than a list, so that a time a new
    record carries (the leader lease's ``expires_at``) is written as ISO 8601 like the others
    instead of falling back to unix seconds."""
    return isinstance(key, str) and (key == "at" or key.endswith(("_at", "_until")))


def iso_time(seconds: float) -> str:
    """Unix ``seconds`` as ISO 8601 in UTC (``2026-05-01T12:00:00.123456+00:00``, the routing
    file's form)."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def _iso_times(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: _time(value)
            if is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool)
            else _iso_times(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [_iso_times(item) for item in data]
    return data


def _time(seconds: float) -> str | float | None:
    """A time as ISO 8601, or as it was when no calendar holds it (a state written by a clock far
    off, or by hand: shown as stored rather than failing the whole answer)."""
    try:
        return iso_time(seconds)
    except (OverflowError, OSError, ValueError):
        return seconds if math.isfinite(seconds) else None


def emit_json(data: Any, *, line: bool = False) -> None:
    """``data`` as one JSON document on standard output (times as ISO 8601 UTC): indented, or
    with ``line`` on a single line (JSON Lines, one document per line)."""
    option = 0 if line else orjson.OPT_INDENT_2
    sys.stdout.buffer.write(orjson.dumps(_iso_times(data), option=option) + b"\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    """Machine-readable text (YAML) on standard output, exactly as given: never wrapped."""
    sys.stdout.write(text)
    sys.stdout.flush()
