"""Fixtures of the state store suite: one fresh, empty state per test on every backend.

``state_backend`` is parametrised over ``sqlite`` (a file), ``local`` (the object-store backend on a
local directory: fast, and its conditional writes are real, under an flock), and the object-store
backend on ``s3`` (moto), ``gcs`` (gcp-storage-emulator) and ``azure`` (Azurite). Every test that
takes it runs unchanged against all five. ``StateBackend.open()`` opens another store on the same
state (as another command would), closed after the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.control.store import ObjectStoreStateStore, StateStore, open_state
from orchestrator.control.store.base import BUSY_TIMEOUT
from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.demo.emulators import Emulator

STATE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("local", id="objectstore-local"),
    pytest.param("s3", id="objectstore-s3", marks=pytest.mark.emulator),
    pytest.param("gcs", id="objectstore-gcs", marks=pytest.mark.emulator),
    pytest.param("azure", id="objectstore-azure", marks=pytest.mark.emulator),
]
EMULATOR_FIXTURE = {"s3": "moto_server", "gcs": "gcs_emulator", "azure": "azurite"}
# The emulator's documented gap, for every skip and comment that depends on it.
GCS_IGNORES_PRECONDITIONS = (
    "gcp-storage-emulator ignores every precondition; a conflicting write silently succeeds, "
    "so conflicts cannot be tested on it. Real GCS enforces ifGenerationMatch; "
    "tests/control/store/test_objectstore.py checks that every commit sends it, against a recording server "
    "that answers as GCS does"
)

# Concurrency tests assert that racing writers lose nothing; a command's own budget (5 s, 20
# replays) can run out on a machine busy with other work, which says nothing about correctness.
PATIENT: dict[str, Any] = {"busy_timeout": 120.0, "commit_attempts": 1000}


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class StateBackend:
    name: str
    location: str  # what open_state() is given
    settings: dict[str, str]
    emulator: Emulator | None = None
    opened: list[StateStore] = field(default_factory=list)

    @property
    def optimistic(self) -> bool:
        return self.name != "sqlite"

    @property
    def enforces_preconditions(self) -> bool:
        return self.name != "gcs"

    def open(self, clock: Callable[[], float] | None = None, *, patient: bool = False) -> StateStore:
        """Another store on this test's state. Object stores get a storage that retries transient
        errors without sleeping; SQLite ignores that. ``patient``: wait and replay far longer than
        a command would (:data:`PATIENT`), for tests that assert what concurrent writers end
        with, not how long they take on a loaded machine."""
        clock = clock or time.time
        budget = PATIENT if patient else {}
        store: StateStore
        if self.name == "sqlite":
            wait = budget.get("busy_timeout", BUSY_TIMEOUT)
            store = open_state(self.location, clock=clock, busy_timeout=wait)
        elif self.name == "local":
            # open_state sends file:// to SQLite, so the object store is built by hand here.
            store = ObjectStoreStateStore(
                open_storage(self.location, retry=NO_WAIT_RETRY), clock=clock, **budget
            )
        else:
            store = ObjectStoreStateStore.open(
                self.location, settings=self.settings, retry=NO_WAIT_RETRY, clock=clock, **budget
            )
        self.opened.append(store)
        return store


@pytest.fixture(params=STATE_BACKENDS)
def state_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    name: str = request.param
    if name == "sqlite":
        made = StateBackend(name, str(tmp_path / "state" / "state.db"), {})
    elif name == "local":
        root = tmp_path / "bucket"
        root.mkdir()
        made = StateBackend(name, f"file://{root}", {})
    else:
        emulator: Emulator = request.getfixturevalue(EMULATOR_FIXTURE[name])
        bucket = emulator.create_bucket()
        made = StateBackend(name, emulator.uri(bucket, "prod"), dict(emulator.settings), emulator)
    try:
        yield made
    finally:
        for store in made.opened:
            store.close()


@pytest.fixture
def store(state_backend: StateBackend) -> StateStore:
    return state_backend.open(clock=FakeClock())
