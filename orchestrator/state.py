"""The control plane's memory between commands, behind :class:`StateStore`; SQLite keeps it.

    with open_state() as state:                         # .orchestrator/state.db by default
        with state.transaction() as tx:                 # read, decide, write: one atomic step
            if "aws" not in tx.drained():
                tx.set_override("aws", drained=True, reason="maintenance", actor="alice")
                tx.record_flips([Flip("aws", now, HealthState.HEALTHY, HealthState.DRAINED, ...)])

What it holds: the history of flips (:class:`~orchestrator.types.Flip`), operator overrides
(cloud → drained or not, why, who, when), every applied set of weights (the last one is what
the panic rule falls back to), and each cloud's health state machine memory as an opaque JSON
object, so that ``orchestrator health --once`` runs continue where the previous one stopped.

Concurrency. Two commands (separate processes, e.g. a cron run of ``health --once --apply`` and
an operator's ``failover``) must not lose each other's writes. Every write happens inside
:meth:`StateStore.transaction`; in SQLite that is ``BEGIN IMMEDIATE``, which takes the database's
single write lock before the first read, so a read-modify-write cannot interleave with another
one: the second waits (up to the busy timeout) and then reads what the first committed. A
deferred ``BEGIN`` would not do: in WAL mode a transaction that read an older snapshot and then
tries to write fails with SQLITE_BUSY at once, without waiting. WAL lets readers (``status``)
proceed while a writer holds the lock. Each method outside an explicit transaction is its own
transaction. Waiting longer than the busy timeout raises TransientError; another SQLite failure,
StorageError naming the file. WAL needs a local filesystem (not NFS or SMB).

The interface is small and cloud-neutral on purpose: a later object-store implementation (S3,
GCS or Azure, with conditional writes) can hold the same state in one object and run
``transaction()`` optimistically, reading with the object's version and committing with a
conditional write. There, a lost race raises PreconditionFailed when the block exits and the
caller repeats its step; in SQLite the second writer simply waits. Either way no write is lost.

Schema (version :data:`SCHEMA_VERSION`, recorded in ``schema_version``): see :data:`MIGRATIONS`,
applied in order by whichever process opens the file first; a file written by a newer
orchestrator is refused rather than misread. Times are unix seconds; JSON columns hold UTF-8
text.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import orjson

from orchestrator.errors import ConfigError, StorageError, TransientError
from orchestrator.types import CLOUDS, Flip, HealthState

__all__ = [
    "BUSY_TIMEOUT",
    "DEFAULT_STATE_PATH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AppliedWeights",
    "Migration",
    "Override",
    "SQLiteStateStore",
    "StateStore",
    "open_state",
]

DEFAULT_STATE_PATH = Path(".orchestrator") / "state.db"
# How long a command waits for another one's write transaction. Transactions are short, but a
# caller may apply routing inside one (one Route 53 change, bounded by its retry budget of a
# few seconds); 30 s covers that with room, and still ends a wait behind a hung process.
BUSY_TIMEOUT = 30.0
# Poll interval while another process holds the lock needed to switch a new file to WAL: the
# holder is another opener doing the same switch, which takes well under a millisecond.
WAL_SWITCH_POLL = 0.005
# What `orchestrator status` shows by default.
DEFAULT_FLIP_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's decision about one cloud: drained (out of rotation) or returned to it."""

    cloud: str
    drained: bool
    reason: str
    actor: str
    at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class AppliedWeights:
    """Weights that were put into effect, when and why."""

    weights: dict[str, int]
    at: float  # unix seconds
    reason: str


class StateStore(abc.ABC):
    """The control plane's persistent state. Use as a context manager, or call :meth:`close`.

    Every method is atomic on its own. :meth:`transaction` makes several calls one atomic step;
    use the object it yields inside the block.
    """

    location: str  # for messages

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> StateStore:
        """Open the state at ``location`` (see :func:`open_state`)."""
        return open_state(location, busy_timeout=busy_timeout, clock=clock)

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[StateStore]:
        """Everything done inside the block, through the yielded store or (from the same thread)
        the store itself, commits together when the block exits normally, and not at all if it
        raises. Concurrent transactions never see each other's partial writes and never
        overwrite each other's reads: one waits for the other, or (optimistic backends) raises
        PreconditionFailed at exit, to be retried by the caller. Transactions nest: an inner
        block that raises undoes only its own writes."""

    @abc.abstractmethod
    def record_flips(self, flips: Iterable[Flip]) -> None:
        """Append flips to the history."""

    @abc.abstractmethod
    def recent_flips(self, limit: int | None = DEFAULT_FLIP_LIMIT, cloud: str | None = None) -> list[Flip]:
        """The newest ``limit`` flips (all if None), newest first, of one cloud or all; ties in
        time go to the one recorded later."""

    @abc.abstractmethod
    def set_override(self, cloud: str, *, drained: bool, reason: str, actor: str) -> Override:
        """Record an operator's drain (``drained=True``) or return to rotation (False)."""

    @abc.abstractmethod
    def overrides(self) -> dict[str, Override]:
        """The latest override of every cloud that has one, drained or not."""

    def drained(self) -> set[str]:
        """The clouds an operator has drained and not returned to rotation."""
        return {cloud for cloud, override in self.overrides().items() if override.drained}

    @abc.abstractmethod
    def save_weights(self, weights: Mapping[str, int], reason: str) -> AppliedWeights:
        """Record weights that were just applied."""

    @abc.abstractmethod
    def last_weights(self) -> AppliedWeights | None:
        """The most recently saved weights, or None if none were ever saved."""

    @abc.abstractmethod
    def load_machines(self) -> dict[str, dict[str, Any]]:
        """Each cloud's saved health state machine memory, as saved."""

    @abc.abstractmethod
    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        """Save the memory of the given clouds' machines (others are kept as they are)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; it may not be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_state(
    location: str | os.PathLike[str] | None = None,
    *,
    busy_timeout: float = BUSY_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> StateStore:
    """Open the state at ``location``: a SQLite file path or ``file://`` URI (default
    ``.orchestrator/state.db``), created with its parent directories if missing."""
    if location is None:
        return SQLiteStateStore.open(DEFAULT_STATE_PATH, busy_timeout=busy_timeout, clock=clock)
    text = os.fspath(location)
    if text.startswith("file://"):
        text = urlsplit(text).path
    elif "://" in text:
        raise ConfigError(
            f"state location {text!r}: only a SQLite file (a path or file:// URI) is supported; "
            "object-store state is not implemented yet"
        )
    return SQLiteStateStore.open(Path(text), busy_timeout=busy_timeout, clock=clock)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``statements`` run in one transaction, then ``version`` is recorded."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "flips, overrides, applied weights, health machines",
        (
            # id orders flips recorded at the same time (clocks have finite resolution).
            """CREATE TABLE flips (
                id      INTEGER PRIMARY KEY,
                cloud   TEXT NOT NULL,
                at      REAL NOT NULL,
                old     TEXT NOT NULL,
                new     TEXT NOT NULL,
                reason  TEXT NOT NULL,
                actor   TEXT NOT NULL,
                details TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX flips_by_time ON flips (at, id)",
            "CREATE INDEX flips_by_cloud ON flips (cloud, at, id)",
            """CREATE TABLE overrides (
                cloud   TEXT PRIMARY KEY,
                drained INTEGER NOT NULL CHECK (drained IN (0, 1)),
                reason  TEXT NOT NULL,
                actor   TEXT NOT NULL,
                at      REAL NOT NULL
            )""",
            # A history, newest = highest id (commit order, which the write lock serialises).
            """CREATE TABLE applied_weights (
                id      INTEGER PRIMARY KEY,
                at      REAL NOT NULL,
                weights TEXT NOT NULL,
                reason  TEXT NOT NULL
            )""",
            """CREATE TABLE health_machines (
                cloud      TEXT PRIMARY KEY,
                state      TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_SCHEMA_VERSION_TABLE = """CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL,
    description TEXT NOT NULL
)"""


class SQLiteStateStore(StateStore):
    """The state in one SQLite file (WAL mode). Safe to share between threads, which take turns;
    separate processes coordinate through SQLite's locks."""

    def __init__(
        self, connection: sqlite3.Connection, path: Path, *, busy_timeout: float, clock: Callable[[], float]
    ) -> None:
        """Use :meth:`open`, which also configures the connection and migrates the schema."""
        self.path = path
        self.location = str(path)
        self._db = connection
        self._busy_timeout = busy_timeout
        self._clock = clock
        # One connection per store: the lock makes threads take turns, and a transaction holds it
        # from BEGIN to COMMIT so another thread's statements cannot slip into it.
        self._lock = threading.RLock()
        self._depth = 0  # open transaction blocks; above 1, SAVEPOINTs

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> SQLiteStateStore:
        """Open (creating it and its parent directories if missing) the SQLite file at
        ``location``, by default ``.orchestrator/state.db``."""
        path = DEFAULT_STATE_PATH if location is None else Path(location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the state directory: {exc}", uri=str(path)) from exc
        try:
            # isolation_level=None: the sqlite3 module issues no BEGIN of its own; we do, IMMEDIATE.
            connection = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _translate(exc, str(path), busy_timeout) from exc
        store = cls(connection, path, busy_timeout=busy_timeout, clock=clock)
        try:
            store._configure()
            store._migrate()
        except BaseException:
            connection.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"SQLiteStateStore({self.location!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SQLiteStateStore]:
        with self._lock:
            if self._depth == 0:
                begin, commit, rollback = "BEGIN IMMEDIATE", ["COMMIT"], ["ROLLBACK"]
            else:
                name = f"nested_{self._depth}"
                begin, commit = f"SAVEPOINT {name}", [f"RELEASE {name}"]
                rollback = [f"ROLLBACK TO {name}", f"RELEASE {name}"]
            self._run(begin)
            self._depth += 1
            try:
                yield self
                for statement in commit:
                    self._run(statement)
            except BaseException:
                # Undo whatever is still open (a failed COMMIT leaves the transaction open too).
                with suppress(sqlite3.Error):
                    for statement in rollback:
                        self._db.execute(statement)
                raise
            finally:
                self._depth -= 1

    # --- flips ---------------------------------------------------------------------------

    def record_flips(self, flips: Iterable[Flip]) -> None:
        rows = [
            (
                _cloud(flip.cloud),
                float(flip.at),
                HealthState(flip.old).value,
                HealthState(flip.new).value,
                flip.reason,
                flip.actor,
                _dumps(flip.details),
            )
            for flip in flips
        ]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO flips (cloud, at, old, new, reason, actor, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def recent_flips(self, limit: int | None = DEFAULT_FLIP_LIMIT, cloud: str | None = None) -> list[Flip]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        where, params = ("WHERE cloud = ?", [cloud]) if cloud is not None else ("", [])
        rows = self._query(
            f"SELECT cloud, at, old, new, reason, actor, details FROM flips {where} "  # noqa: S608  # fixed fragments
            "ORDER BY at DESC, id DESC LIMIT ?",
            (*params, -1 if limit is None else limit),  # SQLite: LIMIT -1 is no limit
        )
        return [
            Flip(
                cloud=row[0],
                at=row[1],
                old=HealthState(row[2]),
                new=HealthState(row[3]),
                reason=row[4],
                actor=row[5],
                details=orjson.loads(row[6]),
            )
            for row in rows
        ]

    # --- overrides -----------------------------------------------------------------------

    def set_override(self, cloud: str, *, drained: bool, reason: str, actor: str) -> Override:
        override = Override(
            cloud=_cloud(cloud), drained=bool(drained), reason=reason, actor=actor, at=self._clock()
        )
        with self.transaction():
            self._run(
                "INSERT INTO overrides (cloud, drained, reason, actor, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (cloud) DO UPDATE SET drained = excluded.drained, reason = excluded.reason, "
                "actor = excluded.actor, at = excluded.at",
                (override.cloud, int(override.drained), override.reason, override.actor, override.at),
            )
        return override

    def overrides(self) -> dict[str, Override]:
        rows = self._query("SELECT cloud, drained, reason, actor, at FROM overrides ORDER BY cloud")
        return {
            row[0]: Override(cloud=row[0], drained=bool(row[1]), reason=row[2], actor=row[3], at=row[4])
            for row in rows
        }

    # --- weights -------------------------------------------------------------------------

    def save_weights(self, weights: Mapping[str, int], reason: str) -> AppliedWeights:
        checked: dict[str, int] = {}
        for cloud, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise ValueError(f"weight of {cloud} must be an integer, not {weight!r}")
            checked[_cloud(cloud)] = weight
        applied = AppliedWeights(weights=checked, at=self._clock(), reason=reason)
        with self.transaction():
            self._run(
                "INSERT INTO applied_weights (at, weights, reason) VALUES (?, ?, ?)",
                (applied.at, _dumps(applied.weights), applied.reason),
            )
        return applied

    def last_weights(self) -> AppliedWeights | None:
        rows = self._query("SELECT at, weights, reason FROM applied_weights ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        at, weights, reason = rows[0]
        return AppliedWeights(weights=orjson.loads(weights), at=at, reason=reason)

    # --- health machines -----------------------------------------------------------------

    def load_machines(self) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT cloud, state FROM health_machines ORDER BY cloud")
        return {cloud: orjson.loads(state) for cloud, state in rows}

    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        now = self._clock()
        rows = [(_cloud(cloud), _dumps(dict(state)), now) for cloud, state in machines.items()]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO health_machines (cloud, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (cloud) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                rows,
            )

    # --- internals -----------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version of the open file (0 before any migration)."""
        rows = self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        version: int = rows[0][0]
        return version

    def _configure(self) -> None:
        with self._lock, self._errors():
            mode = self._switch_to_wal()
            if mode != "wal":
                raise StorageError(
                    f"SQLite cannot use WAL mode here (got {mode!r}); keep the state file on a "
                    "local filesystem",
                    uri=self.location,
                )
            # FULL: a commit is on disk when it returns. Commits are rare (flips, drains, applies),
            # and a failover that a crash forgets would be re-decided without its history.
            self._db.execute("PRAGMA synchronous=FULL")

    def _switch_to_wal(self) -> str:
        """Put the file in WAL mode (persistent: only its first opener really switches); returns
        the mode in effect. Switching needs an exclusive lock and SQLite does not wait for that
        one through the busy timeout (processes opening a fresh file together fail at once with
        SQLITE_BUSY), so the wait is here, up to the same timeout."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode: str = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(WAL_SWITCH_POLL)
            else:
                return mode

    def _migrate(self) -> None:
        if self._existing_version() == SCHEMA_VERSION:
            return  # the usual case, decided without taking the write lock
        with self.transaction():
            # Re-read under the lock: another process may have migrated meanwhile.
            current = self._existing_version()
            if current == 0 and not self._query("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"):
                self._run(_SCHEMA_VERSION_TABLE)
            for migration in MIGRATIONS:
                if migration.version > current:
                    for statement in migration.statements:
                        self._run(statement)
                    self._run(
                        "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                        (migration.version, self._clock(), migration.description),
                    )

    def _existing_version(self) -> int:
        tables = {row[0] for row in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise StorageError(
                    f"not an orchestrator state database (it has tables {sorted(tables)} but no "
                    "schema_version); choose another state path",
                    uri=self.location,
                )
            return 0
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"state schema version {version} is newer than this orchestrator understands "
                f"({SCHEMA_VERSION}); upgrade the orchestrator",
                uri=self.location,
            )
        return version

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self._lock, self._errors():
            self._db.execute(sql, params)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self._errors():
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.location, self._busy_timeout) from exc


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc)


def _translate(exc: sqlite3.Error, where: str, busy_timeout: float) -> StorageError:
    if _is_busy(exc):
        return TransientError(
            f"the state database is locked by another orchestrator command (waited up to "
            f"{busy_timeout:g} s); try again",
            uri=where,
        )
    return StorageError(f"state database error: {exc}", uri=where)


def _cloud(cloud: str) -> str:
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r} (clouds: {', '.join(CLOUDS)})")
    return cloud


def _dumps(value: Mapping[str, Any]) -> str:
    # Sorted keys: equal state is stored as equal text, which keeps diffs and debugging simple.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
