"""A SQLite file as the state's storage: opening it, its transactions, and following it on disk.

:class:`SQLiteFile` is the engine under :class:`~orchestrator.control.store.sqlite.SQLiteStateStore`,
which adds the state's tables on top. It opens the file (creating it and its directory), switches
it to WAL, applies the schema's migrations (:mod:`.sqlite_schema`), and runs transactions as
``BEGIN IMMEDIATE`` (nested ones as SAVEPOINTs); see :mod:`.sqlite` for why. If the file is
deleted or replaced while the store is open, the next statement opens what is at the path then.
SQLite's errors become the project's: waiting past the busy timeout is TransientError, anything
else StorageError naming the file, and a stored value that does not parse StateCorrupt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Self

import orjson

from orchestrator.control.errors import StateCorrupt
from orchestrator.control.store.base import BUSY_TIMEOUT, StateStore
from orchestrator.control.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_TABLE
from orchestrator.core.errors import ConfigError, StorageError, TransientError

__all__ = ["DEFAULT_STATE_PATH", "SQLiteFile"]

# Beside the configuration, in the directory the orchestrator owns (the routing file defaults there too).
DEFAULT_STATE_PATH = Path(".orchestrator") / "state.db"
# Poll interval while another process holds the lock needed to switch a new file to WAL: the
# holder is another opener doing the same switch, which takes well under a millisecond.
WAL_SWITCH_POLL = 0.005


class SQLiteFile(StateStore):
    """The state's SQLite file and its transactions (WAL mode). Safe to share between threads,
    which take turns; separate processes coordinate through SQLite's locks. Abstract: the state's
    tables are :class:`~orchestrator.control.store.sqlite.SQLiteStateStore`'s."""

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
    ) -> Self:
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
        return f"{type(self).__name__}({self.location!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Self]:
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
