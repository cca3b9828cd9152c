"""The endpoint's entry point: `python -m serving` (the image's) and `orchestrator serve` (which execs it).

One parser reads the options and the environment (serving.settings); these tests pin what it
accepts, what it refuses (exit 2, naming the option and its variable, never a traceback), and that
starting the endpoint imports nothing of the control plane's CLI, the control plane or training.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.demo.processes import ManagedProcess, free_port, wait_http
from orchestrator.training.pipeline import TrainResult
from serving.settings import Settings, UsageError, parse

SERVING = Path(__file__).resolve().parents[2] / "serving"
ENTRY_POINTS = {
    "python -m serving": [sys.executable, "-m", "serving"],
    "orchestrator serve": [sys.executable, "-m", "orchestrator", "serve"],
}
BARE_ENV = {"PATH": "/usr/bin:/bin"}

M = {"MODEL_URI": "/m"}
DEFAULTS = Settings(model="/m")
FULL_ENV = {"MODEL_URI": "s3://b/models/m/LATEST", "HOST": "0.0.0.0", "PORT": "9000",
            "MODEL_RELOAD_INTERVAL_S": "2.5", "MAX_BODY_MB": "8", "MODEL_SIGNING_PUBLIC_KEY": "/keys/pub.pem",
            "SERVE_DOCS": "1", "HTTP_HEADER_TIMEOUT_S": "5", "HTTP_BODY_TIMEOUT_S": "30",
            "MODEL_RELOAD_TIMEOUT_S": "120", "MODEL_CACHE_DIR": "/cache", "LOG_LEVEL": "INFO"}  # fmt: skip
FULL = Settings(model="s3://b/models/m/LATEST", host="0.0.0.0", port=9000, reload_interval=2.5,
                max_body_mb=8.0, signing_public_key="/keys/pub.pem", docs=True, header_timeout=5.0,
                body_timeout=30.0, reload_timeout=120.0, cache_dir=Path("/cache"),
                log_level="info")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], M, DEFAULTS),
        ([], FULL_ENV, FULL),
        (
            ["--model", "/x", "--port", "1", "--docs", "--reload-interval", "1e3"],
            FULL_ENV,
            dataclasses.replace(FULL, model="/x", port=1, reload_interval=1000.0),
        ),
        (["--model=/y"], {}, Settings(model="/y")),
        # Unset and empty variables mean the default; numbers as Python (and typer) read them.
        ([], {**M, "PORT": "", "HOST": "", "MAX_BODY_MB": "", "MODEL_SIGNING_PUBLIC_KEY": ""}, DEFAULTS),
        (["--port", "+5"], M, dataclasses.replace(DEFAULTS, port=5)),
        ([], {**M, "PORT": " 9 "}, dataclasses.replace(DEFAULTS, port=9)),
        (["--port", "1", "--port", "2"], M, dataclasses.replace(DEFAULTS, port=2)),
        (["--host", ""], M, dataclasses.replace(DEFAULTS, host="")),
        ([], {**M, "MODEL_RELOAD_INTERVAL_S": "1e3"}, dataclasses.replace(DEFAULTS, reload_interval=1000.0)),
        *[
            ([], {**M, "SERVE_DOCS": v}, dataclasses.replace(DEFAULTS, docs=True))
            for v in ("1", "TRUE", "y", " on ")
        ],
        *[([], {**M, "SERVE_DOCS": v}, DEFAULTS) for v in ("0", "false", "N", "off")],
    ],
)
def test_options_and_environment_are_read_as_orchestrator_serve_read_them(
    argv: list[str], env: dict[str, str], expected: Settings
) -> None:
    assert parse(argv, env) == expected


@pytest.mark.parametrize(
    ("argv", "env", "error", "names"),
    [
        # Not of the option's type: a usage error naming the option and its variable.
        (["--port", "abc"], M, UsageError, ("--port", "PORT", "valid integer")),
        (["--port", "1.5"], M, UsageError, ("--port", "valid integer")),
        ([], {**M, "PORT": "abc"}, UsageError, ("--port", "PORT")),
        ([], {**M, "MAX_BODY_MB": "x"}, UsageError, ("--max-body-mb", "MAX_BODY_MB", "valid number")),
        ([], {**M, "HTTP_BODY_TIMEOUT_S": "soon"}, UsageError, ("--body-timeout", "HTTP_BODY_TIMEOUT_S")),
        ([], {**M, "SERVE_DOCS": "maybe"}, UsageError, ("--docs", "SERVE_DOCS", "valid boolean")),
        (["--bogus"], M, UsageError, ("--bogus",)),
        (["--mod", "/z"], {}, UsageError, ("--mod",)),  # no abbreviations: typer had none
        (["extra"], M, UsageError, ("extra",)),
        (["--port"], M, UsageError, ("--port",)),
        (["--docs", "x"], M, UsageError, ("x",)),
        # Of the right type but cannot work.
        ([], {}, ConfigError, ("--model", "MODEL_URI")),
        (["--model", ""], {}, ConfigError, ("--model", "MODEL_URI")),
        (["--port", "-1"], M, ConfigError, ("--port", "PORT", "0 to 65535")),
        ([], {**M, "PORT": "70000"}, ConfigError, ("--port", "PORT", "0 to 65535")),
        (["--max-body-mb", "0"], M, ConfigError, ("--max-body-mb", "MAX_BODY_MB", "positive")),
        (["--max-body-mb", "nan"], M, ConfigError, ("--max-body-mb", "positive")),
        (["--max-body-mb", "inf"], M, ConfigError, ("--max-body-mb", "positive")),
        (["--reload-interval", "0"], M, ConfigError, ("--reload-interval", "MODEL_RELOAD_INTERVAL_S")),
        ([], {**M, "MODEL_RELOAD_INTERVAL_S": "-3"}, ConfigError, ("--reload-interval", "positive")),
        (
            ["--header-timeout", "0"],
            M,
            ConfigError,
            ("--header-timeout", "HTTP_HEADER_TIMEOUT_S", "positive"),
        ),
        (["--header-timeout", "inf"], M, ConfigError, ("--header-timeout", "positive")),
        (["--body-timeout", "-1"], M, ConfigError, ("--body-timeout", "positive")),
        (
            [],
            {**M, "MODEL_RELOAD_TIMEOUT_S": "-5"},
            ConfigError,
            ("--reload-timeout", "MODEL_RELOAD_TIMEOUT_S"),
        ),
        ([], {**M, "MODEL_RELOAD_TIMEOUT_S": "nan"}, ConfigError, ("--reload-timeout", "positive")),
        ([], {**M, "LOG_LEVEL": "loud"}, ConfigError, ("LOG_LEVEL", "warning")),
    ],
)
def test_values_that_cannot_be_read_or_cannot_work_are_refused_by_name(
    argv: list[str], env: dict[str, str], error: type[ConfigError], names: tuple[str, ...]
) -> None:
    with pytest.raises(error) as raised:
        parse(argv, env)
    assert raised.value.exit_code == 2
    for name in names:
        assert name in str(raised.value)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ([], {}, ("--model", "MODEL_URI")),
        ([], {"PORT": "abc", "MODEL_URI": "/nowhere"}, ("--port", "PORT", "see --help")),
        (["--model", "/nowhere", "--max-body-mb", "nan"], {}, ("--max-body-mb", "positive")),
        (["--model", "/nowhere", "--bogus"], {}, ("--bogus", "see --help")),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    entry: str, args: list[str], env: dict[str, str], names: tuple[str, ...]
) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS[entry], *args], check=False, capture_output=True, text=True, env={**BARE_ENV, **env}
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for name in names:
        assert name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_lists_every_option_with_its_variable(entry: str) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS[entry], "--help"], check=False, capture_output=True, text=True, env=BARE_ENV
    )
    assert result.returncode == 0, result.stderr
    options = {"--model": "MODEL_URI", "--host": "HOST", "--port": "PORT",
               "--reload-interval": "MODEL_RELOAD_INTERVAL_S", "--max-body-mb": "MAX_BODY_MB",
               "--signing-public-key": "MODEL_SIGNING_PUBLIC_KEY", "--docs": "SERVE_DOCS",
               "--header-timeout": "HTTP_HEADER_TIMEOUT_S", "--body-timeout": "HTTP_BODY_TIMEOUT_S",
               "--reload-timeout": "MODEL_RELOAD_TIMEOUT_S"}  # fmt: skip
    for name in (*options, *options.values(), "MODEL_CACHE_DIR", "LOG_LEVEL"):
        assert name in result.stdout


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_configured_by_the_environment_alone_as_in_the_container(
    entry: str, digits_model: TrainResult, tmp_path: Path
) -> None:
    """The image runs bare `python -m serving`; MODEL_URI, HOST and PORT come from the environment.
    `orchestrator serve` is the same process (exec), so stopping it stops the endpoint."""
    port = free_port()
    process = ManagedProcess(
        "serve",
        ENTRY_POINTS[entry],
        env={"MODEL_URI": str(digits_model.path), "HOST": "127.0.0.1", "PORT": str(port), "MAX_BODY_MB": ""},
        log_path=tmp_path / "serve.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30, process=process)
        info = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        assert info["version"] == digits_model.manifest.version
    finally:
        process.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


# What the endpoint may import of ours: the shared core (and the package root, for its version).
ALLOWED = ("orchestrator.core", "serving")


def test_serving_imports_only_the_shared_core() -> None:
    """Every import in serving/, at any depth (inside functions too), is of the core or of serving."""
    wrong = []
    for path in sorted(SERVING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = (
                    [node.module]
                    if node.module != "orchestrator"
                    else [f"orchestrator.{a.name}" for a in node.names]
                )
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                ours = name.split(".")[0] in ("orchestrator", "serving", "infra")
                if ours and not name.startswith(ALLOWED) and name != "orchestrator.__version__":
                    wrong.append(f"{path.name}:{node.lineno} {name}")
    assert not wrong


def test_starting_the_endpoint_loads_no_cli_framework_control_plane_or_training() -> None:
    """What `python -m serving` imports up to serving (settings parsed, application built): no typer
    or rich (the CLI's), no scikit-learn, nothing of the CLI, the control plane, training or the demo."""
    code = (
        "import os, sys\n"
        "from serving.settings import parse\n"
        "from serving import server\n"
        "from serving.app import create_app\n"
        "from serving.loader import make_loader\n"
        "create_app(make_loader(parse([], os.environ).model))\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**BARE_ENV, "MODEL_URI": "/m"},
    )
    loaded = result.stdout.split()
    assert "uvicorn" in loaded, "the check sees what it should"
    assert "serving.v2" in loaded
    heavy = [
        m for m in loaded
        if m.split(".")[0] in ("typer", "rich", "sklearn")  # (click comes with uvicorn)
        or m.startswith(("orchestrator.cli", "orchestrator.control", "orchestrator.training",
                         "orchestrator.demo"))
    ]  # fmt: skip
    assert not heavy
