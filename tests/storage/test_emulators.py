"""The emulator harness itself: a missing emulator says how to install it, the in-process moto
option works, and the suite's environment cannot reach a real cloud."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.emulators import EmulatorUnavailable, start_azurite, start_moto


def test_a_missing_azurite_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(EmulatorUnavailable) as caught:
        start_azurite(tmp_path, binary=tmp_path / "no-such-azurite-blob")

    message = str(caught.value)
    assert "make test" in message
    assert "scripts/bootstrap.sh" in message
    assert "azurite@3.35.0" in message


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
