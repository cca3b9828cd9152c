"""The SQLite state store: schema and migrations, WAL, the busy timeout, and above all that
concurrent commands (real separate processes on one SQLite file) never lose each other's writes.
What every backend must do (round trips, ordering, transactions) is in test_contract.py."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.control.errors import StateCorrupt
from orchestrator.control.store import (
    DEFAULT_STATE_PATH,
    HEALTH_JOB_LEASE,
    MIGRATIONS,
    SCHEMA_VERSION,
    DesiredWeights,
    SQLiteStateStore,
    StateStore,
    open_state,
)
from orchestrator.control.types import Flip, HealthState
from orchestrator.core.errors import ConfigError, StorageError, TransientError

H, U = HealthState.HEALTHY, HealthState.UNHEALTHY


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


# --- schema ----------------------------------------------------------------------------------


def test_default_path_is_created_with_its_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_state() as state:
        assert isinstance(state, SQLiteStateStore)
        assert state.path == DEFAULT_STATE_PATH
    assert (tmp_path / ".orchestrator" / "state.db").is_file()


def test_fresh_file_has_the_schema_version_table_and_wal(db: Path) -> None:
    open_state(db).close()
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT version, description FROM schema_version").fetchall()
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert all(r[1] for r in rows)
    assert mode == "wal"
    assert {"schema_version", "flips", "overrides", "desired_weights", "health_machines"} <= tables


def test_reopening_keeps_data_and_does_not_migrate_twice(db: Path) -> None:
    with open_state(db) as state:
        state.set_override("aws", drained=True, reason="r", actor="a")
    with open_state(db) as state:
        assert isinstance(state, SQLiteStateStore)
        assert state.schema_version() == SCHEMA_VERSION
        assert state.drained() == {"aws"}
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_a_newer_schema_is_refused(db: Path) -> None:
    open_state(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO schema_version VALUES (?, 0, 'from the future')", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StorageError, match=rf"schema version {SCHEMA_VERSION + 1} is newer") as info:
        open_state(db)
    assert info.value.uri == str(db)


def test_a_foreign_database_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER)")
    raw.close()
    with pytest.raises(StorageError, match="not an orchestrator state database"):
        open_state(db)


def test_a_file_that_is_not_sqlite_is_refused_naming_it(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, just text long enough to have a header" * 10)
    with pytest.raises(StorageError) as info:
        open_state(db)
    assert str(db) in str(info.value)


def test_file_uris_are_sqlite_files_and_take_no_settings(tmp_path: Path) -> None:
    with open_state(f"file://{tmp_path}/x.db") as state:
        assert isinstance(state, SQLiteStateStore)
        assert state.location == f"{tmp_path}/x.db"
    with pytest.raises(ConfigError, match="apply only to object-storage state"):
        open_state(tmp_path / "y.db", settings={"endpoint_url": "http://127.0.0.1:1"})
    with open_state(tmp_path / "z.db", settings={}) as state:  # what a config without settings passes
        assert isinstance(state, SQLiteStateStore)


def test_state_store_open_is_open_state(db: Path) -> None:
    with StateStore.open(db) as state:
        assert isinstance(state, SQLiteStateStore)
        assert state.location == str(db)


# --- transactions ----------------------------------------------------------------------------


def test_waiting_past_the_busy_timeout_is_a_transient_error(db: Path) -> None:
    open_state(db).close()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with open_state(db) as other, other.transaction():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with open_state(db, busy_timeout=0.2) as impatient:
            started = time.monotonic()
            with pytest.raises(TransientError, match="locked by another orchestrator command"):
                impatient.set_override("aws", drained=True, reason="r", actor="a")
            assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()


def test_a_writer_waits_for_the_other_within_the_busy_timeout(db: Path) -> None:
    open_state(db).close()
    holding = threading.Event()

    def hold() -> None:
        with open_state(db) as other, other.transaction() as tx:
            tx.save_desired({"aws": 100}, "first")
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    with open_state(db) as patient:
        patient.save_desired({"gcp": 100}, "second")  # waits about 0.3 s, then commits after
        last = patient.desired()
        assert last is not None
        assert (last.weights, last.reason) == ({"gcp": 100}, "second")
    thread.join()


# --- concurrency across processes ------------------------------------------------------------

WORKERS = 4
ROUNDS = 25


def _worker(path: str, worker: int, start: Any) -> None:  # start: a multiprocessing Event
    """One command's worth of read-modify-write steps, racing the others on the same file."""
    start.wait()
    # Each worker opens the (possibly not yet existing) file itself: the first-open migration
    # races too.
    with open_state(path) as state:
        for n in range(ROUNDS):
            with state.transaction() as tx:
                machines = tx.load_machines()
                count = machines.get("aws", {}).get("count", 0)
                override = tx.overrides().get("gcp")
                drains = int(override.reason) if override else 0
                time.sleep(0.002)  # widen the window between read and write
                tx.save_machines({"aws": {"count": count + 1}})
                tx.set_override("gcp", drained=drains % 2 == 0, reason=str(drains + 1), actor=f"w{worker}")
                tx.record_flips([Flip("azure", time.time(), H, U, "race", details={"w": worker, "n": n})])
            # And plain appends outside any explicit transaction.
            state.save_desired({"aws": n, "gcp": worker}, f"w{worker} n{n}")


def test_concurrent_processes_lose_no_writes(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "state.db"  # does not exist yet
    context = multiprocessing.get_context("spawn")  # no fork of pytest's threads
    start = context.Event()
    workers = [context.Process(target=_worker, args=(str(path), w, start)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0] * WORKERS

    total = WORKERS * ROUNDS
    with open_state(path) as state:
        assert state.load_machines()["aws"] == {"count": total}
        assert state.overrides()["gcp"].reason == str(total)
        flips = state.recent_flips(limit=None)
        assert sorted((f.details["w"], f.details["n"]) for f in flips) == [
            (w, n) for w in range(WORKERS) for n in range(ROUNDS)
        ]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM desired_weights").fetchone()[0] == total
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_opening_a_new_file_waits_for_a_writer_holding_it(tmp_path: Path) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite refuses it at once (no busy
    # wait) while another connection holds a write lock: open_state must wait itself.
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    timer.start()
    try:
        started = time.monotonic()
        with open_state(path, busy_timeout=10) as state:
            assert time.monotonic() - started >= 0.25
            assert state.desired() is None
    finally:
        timer.join()
        holder.close()


OPENERS = 8
FRESH_FILES = 5


def _open_fresh_files(paths: list[str], barrier: Any) -> None:
    for path in paths:
        barrier.wait()  # every process opens the same new file at the same moment
        with open_state(path) as state:
            state.save_desired({"aws": 1}, "opened")


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    # The race the test above sets up deliberately, as it happens: every process switching the
    # file to WAL and migrating it at once.
    paths = [str(tmp_path / f"new{n}" / "state.db") for n in range(FRESH_FILES)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(OPENERS)
    openers = [context.Process(target=_open_fresh_files, args=(paths, barrier)) for _ in range(OPENERS)]
    for process in openers:
        process.start()
    for process in openers:
        process.join(60)
    assert [p.exitcode for p in openers] == [0] * OPENERS
    for path in paths:
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT COUNT(*) FROM desired_weights").fetchone()[0] == OPENERS
        raw.close()


# --- migrations and what is read back --------------------------------------------------------


def test_a_version_1_file_is_migrated_keeping_its_weights_as_the_desired_ones(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db, isolation_level=None) as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL, "
                    "description TEXT NOT NULL)")  # fmt: skip
        for statement in MIGRATIONS[0].statements:
            raw.execute(statement)
        raw.execute("INSERT INTO schema_version VALUES (1, 0, 'v1')")
        raw.execute("""INSERT INTO applied_weights (at, weights, reason) VALUES (5, '{"aws":100}', 'old')""")
    raw.close()
    with open_state(db) as state:
        assert isinstance(state, SQLiteStateStore)
        assert state.schema_version() == SCHEMA_VERSION == 3
        assert state.desired() == DesiredWeights({"aws": 100}, 5.0, "old")
        assert state.lease(HEALTH_JOB_LEASE) is None
        assert state.backends() == {}


FLIP = "INSERT INTO flips (cloud, at, old, new, reason, actor)"


@pytest.mark.parametrize(
    ("sql", "key"),
    [
        ("""INSERT INTO health_machines VALUES ('aws', 'not json', 1)""", "machines.aws"),
        ("""INSERT INTO health_machines VALUES ('aws', '[1, 2]', 1)""", "machines.aws"),
        (f"{FLIP} VALUES ('aws', 1, 'bogus', 'healthy', '', '')", "flips"),
        (f"{FLIP} VALUES ('ibm', 1, 'healthy', 'drained', '', '')", "flips"),
        ("""INSERT INTO overrides VALUES ('aws', 1, 'r', 'a', 'yesterday')""", "overrides.aws"),
        ("""INSERT INTO desired_weights (at, weights, reason) VALUES (1, '{"aws": "all"}', '')""",
         "desired_weights"),
        ("""INSERT INTO leases VALUES ('health-job', 'h', 'x', 2, 1)""", "leases"),
        ("""INSERT INTO backends VALUES ('f', 'file', 1, '{"gcp": 1.5}', NULL, 1)""", "backends"),
    ],
)  # fmt: skip
def test_a_value_no_orchestrator_writes_is_refused_naming_the_file_and_key(
    db: Path, sql: str, key: str
) -> None:
    open_state(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(sql)
    raw.close()

    def read_everything(state: StateStore) -> None:
        state.load_machines()
        state.recent_flips()
        state.overrides()
        state.desired()
        state.lease(HEALTH_JOB_LEASE)
        state.backends()

    with open_state(db) as state:
        with pytest.raises(StateCorrupt, match=rf"malformed state at {key}") as info:
            read_everything(state)
        assert info.value.uri == str(db)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_file_deleted_or_replaced_under_a_running_command_is_followed(db: Path, how: str) -> None:
    """An operator resets the state (rm state.db) while the watch runs: the watch must see what
    commands write to the new file, not keep deciding from the file that is gone (and undo the
    operator's failover at its next reconciliation from there)."""
    watch = open_state(db)
    watch.save_desired({"aws": 100}, "the watch's last round")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "replaced":
        other = db.with_name("other.db")
        with open_state(other) as fresh:
            fresh.save_desired({"gcp": 100}, "restored from a backup")
        other.replace(db)
    with open_state(db) as operator:
        operator.set_override("aws", drained=True, reason="incident", actor="carol")
        operator.save_desired({"aws": 0, "gcp": 100}, "failover from aws")
    try:
        assert watch.drained() == {"aws"}
        assert watch.desired() is not None
        assert watch.desired().weights == {"aws": 0, "gcp": 100}
        watch.save_desired({"aws": 0, "gcp": 50, "azure": 50}, "the watch's next round")
    finally:
        watch.close()
    with open_state(db) as after:
        assert after.desired().weights == {"aws": 0, "gcp": 50, "azure": 50}
