"""The endpoint's settings: the one parser of its options and environment variables.

Every option has an environment variable of the same meaning (the container sets only variables);
an option given on the command line wins over its variable, and an unset or empty variable means the
default. Parsing imports nothing heavier than :mod:`argparse`, so ``python -m serving --help`` and a
bad value answer at once, and the container's cold start pays for no command-line framework.

Errors: a value that is not of its option's type, an unknown option or a missing argument raise
:class:`UsageError`; a value of the right type that cannot work (no model, a port outside 0-65535,
a size or a number of seconds that is not positive and finite) raises
:class:`~orchestrator.core.errors.ConfigError`. Both exit 2 and name the option and its variable.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.core.contract import (
    ENV_API_TOKEN,
    ENV_API_TOKEN_PREVIOUS,
    ENV_BODY_TIMEOUT,
    ENV_CACHE_DIR,
    ENV_DRIFT_WINDOW_ROWS,
    ENV_HEADER_TIMEOUT,
    ENV_HOST,
    ENV_LOG_LEVEL,
    ENV_MAX_BODY_MB,
    ENV_MODEL_URI,
    ENV_PORT,
    ENV_RELOAD_INTERVAL,
    ENV_RELOAD_TIMEOUT,
    ENV_SERVE_DOCS,
    ENV_SIGNING_PUBLIC_KEY,
)
from orchestrator.core.errors import ConfigError
from orchestrator.core.tokens import token_problem

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_MB",
    "DEFAULT_PORT",
    "DEFAULT_RELOAD_TIMEOUT_S",
    "Settings",
    "UsageError",
    "api_tokens",
    "build_parser",
    "parse",
]

# Loopback unless told otherwise: a laptop's endpoint is not exposed by accident; the image sets
# HOST=0.0.0.0.
DEFAULT_HOST = "127.0.0.1"
# Cloud Run's default $PORT, which the other clouds' stacks set too (infra/spec.py).
DEFAULT_PORT = 8080
# 10,000 rows (serving.inputs.MAX_ROWS) x 64 features is ~13 MB of JSON; 32 MiB leaves room and still
# bounds memory per request.
DEFAULT_MAX_BODY_MB = 32.0
# Request line and headers are a few hundred bytes; 10 s is generous on the slowest mobile link and
# still frees a slowloris connection quickly (serving.protocol).
DEFAULT_HEADER_TIMEOUT_S = 10.0
# The whole body must arrive within this many seconds of the request's start: 32 MiB at 5 Mbit/s
# takes ~55 s. A client trickling its body (slowloris) is answered 408 and disconnected (serving.protocol).
DEFAULT_BODY_TIMEOUT_S = 60.0
# A reload's total deadline: a 2 GiB model (the most ONNX Runtime loads from memory, protobuf's
# limit) takes ~570 s over a 30 Mbit/s link. Ours are kilobytes and load in well under a second.
DEFAULT_RELOAD_TIMEOUT_S = 600.0
# uvicorn's own log records (start-up, errors): the JSON request lines are written whatever this is.
DEFAULT_LOG_LEVEL = "warning"
# The drift monitor's window (serving.drift.DEFAULT_WINDOW_ROWS, not imported: settings stay light).
DEFAULT_DRIFT_WINDOW_ROWS = 2000
# A window beyond this many rows is a typo: the counts per sub-window are fixed-size, but a window of
# millions of rows would react to a shift only after hours.
MAX_DRIFT_WINDOW_ROWS = 1_000_000
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# click's spellings of a boolean (the values `orchestrator serve`'s SERVE_DOCS always accepted).
_TRUE = frozenset(("1", "true", "t", "yes", "y", "on"))
_FALSE = frozenset(("0", "false", "f", "no", "n", "off"))


class UsageError(ConfigError):
    """A command line or variable the parser cannot read (exit 2, as every usage error)."""


@dataclass(frozen=True)
class Settings:
    """What the endpoint runs with (:func:`serving.server.run`).

    Sizes in MiB, durations in seconds; ``reload_interval`` None means the model is loaded once;
    ``signing_public_key`` is PEM text or a path; ``cache_dir`` None means ``$TMPDIR/model-cache``;
    ``api_tokens`` are the bearer tokens requests need (current first; empty: open, no check).
    """

    model: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    reload_interval: float | None = None
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    signing_public_key: str | None = None
    docs: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    reload_timeout: float = DEFAULT_RELOAD_TIMEOUT_S
    cache_dir: Path | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    drift_window_rows: int = DEFAULT_DRIFT_WINDOW_ROWS


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("Input should be a valid integer, unable to parse string as an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("Input should be a valid number, unable to parse string as a number") from None


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


@dataclass(frozen=True)
class _Option:
    flag: str
    env: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = ""
    unit: str = ""  # for a number: what it counts; it must then be positive and finite

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


# In `--help`'s order. Option names, variables and defaults are those `orchestrator serve` had.
_OPTIONS = (
    _Option(
        "--model", ENV_MODEL_URI, str, None, "Artifact directory or URI (s3://, gs://, az://).", "PATH|URI"
    ),
    _Option("--host", ENV_HOST, str, DEFAULT_HOST, "Interface to bind; 0.0.0.0 in a container.", "HOST"),
    _Option("--port", ENV_PORT, _integer, DEFAULT_PORT, "Port to listen on (Cloud Run sets $PORT).", "PORT"),
    _Option(
        "--reload-interval",
        ENV_RELOAD_INTERVAL,
        _number,
        None,
        "Seconds between checks for a new model (default: load once).",
        "SECONDS",
        unit="seconds",
    ),
    _Option(
        "--max-body-mb",
        ENV_MAX_BODY_MB,
        _number,
        DEFAULT_MAX_BODY_MB,
        "Largest request body accepted.",
        "MiB",
        unit="MiB",
    ),
    _Option(
        "--signing-public-key",
        ENV_SIGNING_PUBLIC_KEY,
        str,
        None,
        "PEM public key (text or a path): serve only versions signed by its private key.",
        "PEM|PATH",
    ),
    _Option("--docs", ENV_SERVE_DOCS, _boolean, False, "Serve /docs and /openapi.json."),
    _Option(
        "--header-timeout",
        ENV_HEADER_TIMEOUT,
        _number,
        DEFAULT_HEADER_TIMEOUT_S,
        "Seconds a client has to send its request headers (then 408).",
        "SECONDS",
        unit="seconds",
    ),
    _Option(
        "--body-timeout",
        ENV_BODY_TIMEOUT,
        _number,
        DEFAULT_BODY_TIMEOUT_S,
        "Seconds a client has to send its whole request body (then 408).",
        "SECONDS",
        unit="seconds",
    ),
    _Option(
        "--reload-timeout",
        ENV_RELOAD_TIMEOUT,
        _number,
        DEFAULT_RELOAD_TIMEOUT_S,
        "Seconds one model load or reload may take before it is given up (slow storage).",
        "SECONDS",
        unit="seconds",
    ),
)
_ENVIRONMENT_ONLY = (
    (ENV_CACHE_DIR, "where remote model files are downloaded and verified (default: $TMPDIR/model-cache)"),
    (
        ENV_LOG_LEVEL,
        f"uvicorn's own log level, one of {', '.join(_LOG_LEVELS)} (default: {DEFAULT_LOG_LEVEL})",
    ),
    (
        ENV_DRIFT_WINDOW_ROWS,
        f"rows in the drift monitor's sliding window, 0 turns it off (default {DEFAULT_DRIFT_WINDOW_ROWS})",
    ),
    (
        ENV_API_TOKEN,
        "the bearer token every route but liveness and readiness requires (default: none, the "
        f"endpoint is open); during a rotation {ENV_API_TOKEN_PREVIOUS} too",
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m serving``. Options it was not given are absent from the
    namespace it returns (so :func:`parse` can tell them from defaults); values are strings."""
    parser = _Parser(
        prog="python -m serving",
        description="Serve one verified model over HTTP (predict, KServe V2, health, metrics).",
        epilog="Environment only: "
        + "; ".join(f"{name}: {text}" for name, text in _ENVIRONMENT_ONLY)
        + ". An option given on the command line wins over its variable; an empty variable is unset.",
        add_help=False,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    for option in _OPTIONS:
        shown_default = "" if option.default is None else f"; default: {option.default}"
        text = f"{option.help} [env: {option.env}{shown_default}]"
        if option.convert is _boolean:
            parser.add_argument(option.flag, action="store_const", const="1", help=text)
        else:
            parser.add_argument(option.flag, metavar=option.metavar, help=text)
    parser.add_argument("--help", action="help", help="Show this message and exit.")
    return parser


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """The settings from ``argv`` (without the program name) and ``environ``.

    Raises :class:`UsageError` or :class:`~orchestrator.core.errors.ConfigError` (both exit 2) naming
    the option and its variable; ``--help`` prints the help and raises SystemExit(0).
    """
    given = vars(build_parser().parse_args(list(argv)))
    values: dict[str, Any] = {}
    for option in _OPTIONS:
        raw = given.get(option.dest)
        if raw is None:
            raw = environ.get(option.env) or None
        if raw is None:
            values[option.dest] = option.default
            continue
        try:
            values[option.dest] = option.convert(raw)
        except ValueError as exc:
            raise UsageError(f"Invalid value for '{option.flag}' (env var: '{option.env}'): {exc}") from None
        _check(option, values[option.dest])
    if not values["model"]:
        raise ConfigError(f"no model given: pass --model PATH|URI or set {ENV_MODEL_URI}")
    log_level = (environ.get(ENV_LOG_LEVEL) or DEFAULT_LOG_LEVEL).lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"{ENV_LOG_LEVEL} {log_level!r}: must be one of {', '.join(_LOG_LEVELS)}")
    cache_dir = environ.get(ENV_CACHE_DIR) or None
    return Settings(
        **values,
        drift_window_rows=_drift_window(environ.get(ENV_DRIFT_WINDOW_ROWS) or None),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        log_level=log_level,
        api_tokens=api_tokens(environ),
    )


def _drift_window(raw: str | None) -> int:
    """``DRIFT_WINDOW_ROWS`` as rows (default when unset); ConfigError unless 0 or a multiple of 10
    from 10 to :data:`MAX_DRIFT_WINDOW_ROWS` (the window is ten equal sub-windows of at least one
    row: any other number would be silently rounded down)."""
    if raw is None:
        return DEFAULT_DRIFT_WINDOW_ROWS
    try:
        rows = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_DRIFT_WINDOW_ROWS} {raw[:40]!r}: must be a whole number of rows") from None
    if rows != 0 and not (10 <= rows <= MAX_DRIFT_WINDOW_ROWS and rows % 10 == 0):
        raise ConfigError(
            f"{ENV_DRIFT_WINDOW_ROWS} {rows}: must be 0 (off) or a multiple of 10 from 10 to "
            f"{MAX_DRIFT_WINDOW_ROWS} rows (ten equal sub-windows)"
        )
    return rows


def api_tokens(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The bearer tokens from ``API_TOKEN`` and ``API_TOKEN_PREVIOUS`` (environment only: a value
    on the command line would show in the process list), current first; empty when neither is
    set. ConfigError naming the variable, never quoting its value, for a token that is too short
    or not printable ASCII without spaces, a previous token without a current one, or two equal.
    """
    current = environ.get(ENV_API_TOKEN) or None
    previous = environ.get(ENV_API_TOKEN_PREVIOUS) or None
    for name, value in ((ENV_API_TOKEN, current), (ENV_API_TOKEN_PREVIOUS, previous)):
        if value is not None and (problem := token_problem(value)):
            raise ConfigError(f"{name} {problem}")
    if previous is not None and current is None:
        raise ConfigError(
            f"{ENV_API_TOKEN_PREVIOUS} is set without {ENV_API_TOKEN} (the token clients move to)"
        )
    if previous is not None and previous == current:
        raise ConfigError(f"{ENV_API_TOKEN_PREVIOUS} must differ from {ENV_API_TOKEN}")
    return tuple(t for t in (current, previous) if t is not None)


def _check(option: _Option, value: Any) -> None:
    """ConfigError if ``value``, of the option's type, cannot work."""
    if option.dest == "port" and not 0 <= value <= 65535:
        raise ConfigError(f"{option.flag} ({option.env}) {value}: must be a port number, 0 to 65535")
    if option.unit and not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{option.flag} ({option.env}) {value}: must be a positive number of {option.unit}")
