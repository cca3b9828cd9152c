"""The SQLite state's schema: its migrations, applied in order by :mod:`.sqlite` when a file is opened.

Version 1 holds flips, overrides, applied weights and health machines; version 2 renames the
weights to desired weights (they keep their meaning: the decision every backend must hold) and adds
the backends' last reconciliations and the leases. A file written by a newer orchestrator is
refused rather than misread.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SCHEMA_VERSION_TABLE", "Migration"]


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
    Migration(
        2,
        "desired weights (backends are reconciled to them), backend statuses, leases",
        (
            # The rows keep their meaning: the last decision, which every backend must now hold.
            "ALTER TABLE applied_weights RENAME TO desired_weights",
            """CREATE TABLE backends (
                location  TEXT PRIMARY KEY,
                kind      TEXT NOT NULL,
                ok        INTEGER NOT NULL CHECK (ok IN (0, 1)),
                in_effect TEXT,
                error     TEXT,
                at        REAL NOT NULL
            )""",
            """CREATE TABLE leases (
                name        TEXT PRIMARY KEY,
                holder      TEXT NOT NULL,
                acquired_at REAL NOT NULL,
                expires_at  REAL NOT NULL,
                epoch       INTEGER NOT NULL CHECK (epoch >= 1)
            )""",
        ),
    ),
)
MIGRATIONS += (
    Migration(
        3,
        "rollouts: the progressive rollout in progress or last finished (one JSON record)",
        (
            """CREATE TABLE rollouts (
                name   TEXT PRIMARY KEY,
                record TEXT NOT NULL,
                at     REAL NOT NULL
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

SCHEMA_VERSION_TABLE = """CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL,
    description TEXT NOT NULL
)"""
