"""Fixtures shared by the whole suite.

- ``_no_real_clouds`` (session, autouse): no test can reach a real cloud account. Cloud
  credentials, profiles, endpoints and ``AWS_CA_BUNDLE`` are removed from the environment, fake
  AWS credentials are set, and loopback bypasses proxies (``orchestrator.demo.emulators.scrubbed_environ``).
- ``moto_server``, ``gcs_emulator``, ``azurite`` (session): one running emulator each, started on
  first use on a free loopback port, stopped at the end. Tests create their own bucket with
  ``emulator.create_bucket()`` (unique names), so they never see each other's objects. A missing
  emulator fails the test with install instructions; it is never skipped.
- ``emulator_log_dir`` (session): where emulator output goes; failures quote its tail.

Tests that need to kill an emulator start their own with ``orchestrator.demo.emulators.start_moto(...)``
etc. rather than killing a shared one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from orchestrator.demo.emulators import (
    Azurite,
    Emulator,
    EmulatorUnavailable,
    GcsEmulator,
    MotoServer,
    scrubbed_environ,
    start_azurite,
    start_gcs,
    start_moto,
)

# Test files whose cases are independent and long (each trains its own models): under pytest-xdist
# their cases are spread over the workers. Every other file stays on one worker (its xdist_group),
# so that its module-scoped fixtures (a fleet of endpoints, the demo run, the Pulumi runs, the
# image) are built once.
SPREAD_FILES = frozenset({"tests/training/test_train_tables.py"})
TESTS_ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group each test by its file for ``--dist loadgroup``, except :data:`SPREAD_FILES`."""
    for item in items:
        path = item.path.resolve().relative_to(TESTS_ROOT.parent).as_posix()
        if path not in SPREAD_FILES:
            item.add_marker(pytest.mark.xdist_group(path))


@pytest.fixture(scope="session", autouse=True)
def _no_real_clouds() -> Iterator[None]:
    remove, setting = scrubbed_environ(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        for name in remove:
            mp.delenv(name, raising=False)
        for name, value in setting.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def emulator_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulators")


E = TypeVar("E", bound=Emulator)


def _serve(start: Callable[[Path], E], log_dir: Path) -> Iterator[E]:
    try:
        emulator = start(log_dir)
    except EmulatorUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_server(emulator_log_dir: Path) -> Iterator[MotoServer]:
    yield from _serve(start_moto, emulator_log_dir)


@pytest.fixture(scope="session")
def gcs_emulator(emulator_log_dir: Path) -> Iterator[GcsEmulator]:
    yield from _serve(start_gcs, emulator_log_dir)


@pytest.fixture(scope="session")
def azurite(emulator_log_dir: Path) -> Iterator[Azurite]:
    yield from _serve(start_azurite, emulator_log_dir)
