"""The state in one SQLite file: the default backend, for a control plane run from one machine.

    with open_state() as state:                         # .orchestrator/state.db by default
        with state.transaction() as tx:                 # read, decide, write: one atomic step
            if "aws" not in tx.drained():
                tx.set_override("aws", drained=True, reason="maintenance", actor="alice")
                tx.record_flips([Flip("aws", now, HealthState.HEALTHY, HealthState.DRAINED, ...)])

Concurrency. Two commands (separate processes, e.g. a cron run of ``health --once --apply`` and
an operator's ``failover``) must not lose each other's writes. Every write happens inside
:meth:`StateStore.transaction`; in SQLite that is ``BEGIN IMMEDIATE``, which takes the database's
single write lock before the first read, so a read-modify-write cannot interleave with another
one: the second waits (up to the busy timeout) and then reads what the first committed. A
deferred ``BEGIN`` would not do: in WAL mode a transaction that read an older snapshot and then
tries to write fails with SQLITE_BUSY at once, without waiting. WAL lets readers (``status``)
proceed while a writer holds the lock. Each method outside an explicit transaction is its own
transaction. Waiting longer than the busy timeout raises TransientError; another SQLite failure,
StorageError naming the file. WAL needs a local filesystem (not NFS or SMB); state shared by jobs
in the cloud lives in object storage instead (:mod:`.objectstore`).

Schema (version :data:`SCHEMA_VERSION`, recorded in ``schema_version``): see :data:`MIGRATIONS`,
applied in order by whichever process opens the file first; a file written by a newer
orchestrator is refused rather than misread. Times are unix seconds; JSON columns hold UTF-8
text.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson

from orchestrator.errors import ConfigError, StateCorrupt, StorageError, TransientError
from orchestrator.state.base import (
    BUSY_TIMEOUT,
    DEFAULT_FLIP_LIMIT,
    BackendStatus,
    DesiredWeights,
    Lease,
    Override,
    StateStore,
    check_cloud,
    check_weights,
    finite,
    parse_backend,
    parse_lease,
    text,
)
from orchestrator.state.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_TABLE, Migration
from orchestrator.types import Flip, HealthState

__all__ = ["DEFAULT_STATE_PATH", "MIGRATIONS", "SCHEMA_VERSION", "Migration", "SQLiteStateStore"]

# Beside the configuration, in the directory the orchestrator owns (the routing file defaults there too).
DEFAULT_STATE_PATH = Path(".orchestrator") / "state.db"
# Poll interval while another process holds the lock needed to switch a new file to WAL: the
# holder is another opener doing the same switch, which takes well under a millisecond.
WAL_SWITCH_POLL = 0.005


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
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> SQLiteStateStore:
        """Open (creating it and its parent directories if missing) the SQLite file at
        ``location``, by default ``.orchestrator/state.db``. ``settings`` are for object
        storage: a SQLite file takes none, and is refused any rather than ignore them."""
        path = DEFAULT_STATE_PATH if location is None else Path(location)
        if settings:
            raise ConfigError(
                f"state {path}: settings ({', '.join(sorted(settings))}) apply only to object-storage "
                "state (s3://, gs://, az://), not to a SQLite file"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the state directory: {exc}", uri=str(path)) from exc
        store = cls(_connect(path, busy_timeout), path, busy_timeout=busy_timeout, clock=clock)
        try:
            store._prepare()
        except BaseException:
            store._db.close()
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
                self._follow_file()
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
                check_cloud(flip.cloud),
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
        flips = []
        for row in rows:
            with self._corrupt("flips"):
                details = orjson.loads(row[6])
                if not isinstance(details, dict):
                    raise TypeError("details: expected an object")
                flips.append(
                    Flip(
                        cloud=check_cloud(row[0]),
                        at=finite(row[1], "at"),
                        old=HealthState(row[2]),
                        new=HealthState(row[3]),
                        reason=text(row[4], "reason"),
                        actor=text(row[5], "actor"),
                        details=details,
                    )
                )
        return flips

    # --- overrides -----------------------------------------------------------------------

    def set_override(self, cloud: str, *, drained: bool, reason: str, actor: str) -> Override:
        override = Override(
            cloud=check_cloud(cloud), drained=bool(drained), reason=reason, actor=actor, at=self._clock()
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
        overrides = {}
        for row in rows:
            with self._corrupt(f"overrides.{row[0]}"):
                overrides[row[0]] = Override(
                    cloud=check_cloud(row[0]),
                    drained=bool(row[1]),
                    reason=text(row[2], "reason"),
                    actor=text(row[3], "actor"),
                    at=finite(row[4], "at"),
                )
        return overrides

    # --- weights and backends ---------------------------------------------------------------

    def save_desired(self, weights: Mapping[str, int], reason: str) -> DesiredWeights:
        desired = DesiredWeights(weights=check_weights(weights), at=self._clock(), reason=reason)
        with self.transaction():
            self._run(
                "INSERT INTO desired_weights (at, weights, reason) VALUES (?, ?, ?)",
                (desired.at, _dumps(desired.weights), desired.reason),
            )
        return desired

    def desired(self) -> DesiredWeights | None:
        rows = self._query("SELECT at, weights, reason FROM desired_weights ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        at, weights, reason = rows[0]
        with self._corrupt("desired_weights[-1]"):
            parsed = orjson.loads(weights)
            if not isinstance(parsed, dict):
                raise TypeError("weights: expected an object")
            return DesiredWeights(
                weights=check_weights(parsed), at=finite(at, "at"), reason=text(reason, "reason")
            )

    def record_backends(self, statuses: Iterable[BackendStatus]) -> None:
        rows = [
            (
                s.location,
                s.kind,
                int(s.ok),
                None if s.in_effect is None else _dumps(check_weights(s.in_effect)),
                s.error,
                float(s.at),
            )
            for s in statuses
        ]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO backends (location, kind, ok, in_effect, error, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (location) DO UPDATE SET kind = excluded.kind, ok = excluded.ok, "
                "in_effect = excluded.in_effect, error = excluded.error, at = excluded.at",
                rows,
            )

    def backends(self) -> dict[str, BackendStatus]:
        rows = self._query("SELECT location, kind, ok, in_effect, error, at FROM backends ORDER BY location")
        statuses = {}
        for location, kind, ok, in_effect, error, at in rows:
            with self._corrupt("backends"):
                row = {"kind": kind, "ok": bool(ok), "error": error, "at": at}
                row["in_effect"] = None if in_effect is None else orjson.loads(in_effect)
                statuses[location] = parse_backend(location, row)
        return statuses

    # --- leases --------------------------------------------------------------------------

    def lease(self, name: str) -> Lease | None:
        rows = self._query(
            "SELECT holder, acquired_at, expires_at, epoch FROM leases WHERE name = ?", (name,)
        )
        if not rows:
            return None
        holder, acquired_at, expires_at, epoch = rows[0]
        with self._corrupt("leases"):
            return parse_lease(
                name, {"holder": holder, "acquired_at": acquired_at, "expires_at": expires_at, "epoch": epoch}
            )

    def put_lease(self, lease: Lease) -> None:
        with self.transaction():
            self._run(
                "INSERT INTO leases (name, holder, acquired_at, expires_at, epoch) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, "
                "epoch = excluded.epoch",
                (lease.name, lease.holder, lease.acquired_at, lease.expires_at, lease.epoch),
            )

    # --- health machines -----------------------------------------------------------------

    def load_machines(self) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT cloud, state FROM health_machines ORDER BY cloud")
        machines = {}
        for cloud, state in rows:
            with self._corrupt(f"machines.{cloud}"):
                parsed = orjson.loads(state)
                if not isinstance(parsed, dict):
                    raise TypeError("expected an object")
                machines[check_cloud(cloud)] = parsed
        return machines

    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        now = self._clock()
        rows = [(check_cloud(cloud), _dumps(dict(state)), now) for cloud, state in machines.items()]
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

    def _prepare(self) -> None:
        """Configure the connection just opened and migrate its file; remember which file it is."""
        self._identity = _identity(self.path)
        self._configure()
        self._migrate()

    def _follow_file(self) -> None:
        """If the file at ``path`` is no longer the one this store opened (deleted, or replaced by
        a restore or a move), open what is there now, creating it if need be, as a new command
        would. Without this a long-running command (the watch) would go on reading and writing a
        file no other command sees, deciding from a state the operator has reset and undoing, at
        its next reconciliation, whatever the others commit. One stat per top-level statement."""
        if _identity(self.path) == self._identity:
            return
        with suppress(sqlite3.Error):
            self._db.close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the state directory: {exc}", uri=self.location) from exc
        self._db = _connect(self.path, self._busy_timeout)
        self._prepare()

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
                self._run(SCHEMA_VERSION_TABLE)
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
        with self._lock:
            if self._depth == 0:
                self._follow_file()  # a read outside a transaction is its own: follow the file too
            with self._errors():
                return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _corrupt(self, key: str) -> Iterator[None]:
        """Turn a stored value that does not parse into StateCorrupt naming the file and ``key``."""
        try:
            yield
        except (TypeError, ValueError, KeyError, orjson.JSONDecodeError) as exc:
            raise StateCorrupt(f"malformed state at {key}: {exc}", uri=self.location) from None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.location, self._busy_timeout) from exc


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        # isolation_level=None: the sqlite3 module issues no BEGIN of its own; we do, IMMEDIATE.
        return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _translate(exc, str(path), busy_timeout) from exc


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None if there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


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


def _dumps(value: Mapping[str, Any]) -> str:
    # Sorted keys: equal state is stored as equal text, which keeps diffs and debugging simple.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
