"""The emulator harness itself: a missing emulator says how to install it, the in-process moto
option works, and the suite's environment cannot reach a real cloud."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.demo.emulators import (
    AZURITE_COMMAND,
    EmulatorUnavailable,
    azurite_binary,
    start_azurite,
    start_moto,
)


def test_a_missing_azurite_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(EmulatorUnavailable) as caught:
        start_azurite(tmp_path, binary=tmp_path / "no-such-azurite-blob")

    message = str(caught.value)
    assert "make test" in message
    assert "scripts/bootstrap.sh" in message
    assert "azurite@3.35.0" in message


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_azurite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Azurite anywhere: not in $AZURITE_BIN, not beside this Python, not on PATH."""
    monkeypatch.delenv("AZURITE_BIN", raising=False)
    scripts = tmp_path / "venv-bin"
    scripts.mkdir()
    monkeypatch.setattr("sysconfig.get_path", lambda name, *a, **k: str(scripts))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return scripts


def test_azurite_is_found_through_azurite_bin_first(
    tmp_path: Path, no_azurite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _executable(no_azurite / AZURITE_COMMAND)
    chosen = _executable(tmp_path / "elsewhere" / "azurite-blob")
    monkeypatch.setenv("AZURITE_BIN", str(chosen))
    assert azurite_binary() == chosen


def test_azurite_is_found_beside_this_python_before_path(
    tmp_path: Path, no_azurite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = _executable(no_azurite / AZURITE_COMMAND)
    on_path = _executable(tmp_path / "on-path" / AZURITE_COMMAND)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert azurite_binary() == beside


def test_azurite_is_found_on_path(tmp_path: Path, no_azurite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _executable(tmp_path / "on-path" / AZURITE_COMMAND)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert azurite_binary() == on_path


def test_no_azurite_anywhere_says_where_it_looked_and_how_to_get_it(tmp_path: Path, no_azurite: Path) -> None:
    assert azurite_binary() is None
    with pytest.raises(EmulatorUnavailable) as caught:
        start_azurite(tmp_path)
    message = str(caught.value)
    for hint in ("AZURITE_BIN", "PATH", "make test", "scripts/bootstrap.sh", "azurite@3.35.0"):
        assert hint in message


@pytest.mark.emulator
def test_moto_can_run_in_process(tmp_path: Path) -> None:
    with start_moto(tmp_path, in_process=True) as server:
        bucket = server.create_bucket()
        server.client.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert server.client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        with pytest.raises(RuntimeError, match="not running as a process"):
            server.kill()


def test_the_suite_cannot_reach_a_real_cloud() -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_CONFIG_FILE"] == os.devnull
    for name in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS",
                 "STORAGE_EMULATOR_HOST", "AZURE_STORAGE_CONNECTION_STRING"):  # fmt: skip
        assert name not in os.environ
    assert "127.0.0.1" in os.environ["NO_PROXY"]
