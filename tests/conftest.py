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
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# One OpenMP thread per process: pytest-xdist runs a worker per core, and scikit-learn's OpenMP
# estimators (HistGradientBoosting) with a thread per core in each worker spin-wait against each
# other (one training case measured 33 s with the default and 11 s with one thread on 2 cores).
# Set before anything loads OpenMP; processes the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
# their cases are spread over the workers. Every other file stays on one worker (one work unit),
# so that its module-scoped fixtures (a fleet of endpoints, the demo run, the Pulumi runs, the
# image) are built once.
SPREAD_FILES = frozenset({"tests/training/test_train_tables.py"})
# The files that take longest (their module fixtures: the demo's run, Pulumi programs under mocks,
# a fleet of endpoints; measured with ``make test``'s --durations), sent to the workers first
# (longest processing time first), so that neither worker ends the run alone on one of them.
HEAVY_FIRST = (
    "tests/demo/test_demo.py",
    "tests/infra/test_health_job.py",
    "tests/infra/test_alarms.py",
    "tests/publish/test_hostile_bucket.py",
    "tests/infra/test_config.py",
    "tests/training/test_train_tables.py",
    "tests/control/test_vantage_processes.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist, one work unit per test file (its module fixtures built once), except
    :data:`SPREAD_FILES`, whose tests are units of their own.

    A scheduler rather than ``xdist_group`` marks: pytest-xdist 3.8 applies the marks by rewriting
    ``item._nodeid``, which pytest 9.2 no longer reads, so ``--dist loadgroup`` silently spread
    every file over the workers (and built each module fixture once per worker)."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the order of pytest_collection_modifyitems below

    class FileScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPREAD_FILES else path

    return FileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a pytest-xdist worker, order the files as the scheduler should hand them out:
    :data:`HEAVY_FIRST`, then the others by their number of tests (most first)."""
    if not hasattr(config, "workerinput"):
        return
    files = [item.nodeid.split("::", 1)[0] for item in items]
    counts = Counter(files)
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    order = sorted(
        range(len(items)), key=lambda i: (rank.get(files[i], len(rank)), -counts[files[i]], files[i])
    )
    items[:] = [items[i] for i in order]


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
