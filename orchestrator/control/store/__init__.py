"""The control plane's memory between commands, behind :class:`StateStore`.

    with open_state(config.state.path, settings=...) as state:     # a file, or s3:// gs:// az://
        with state.transaction() as tx:                             # read, decide, write: one step
            if "aws" not in tx.drained():
                tx.set_override("aws", drained=True, reason="maintenance", actor="alice")
                tx.record_flips([Flip("aws", now, HealthState.HEALTHY, HealthState.DRAINED, ...)])

What it holds: the history of flips (:class:`~orchestrator.control.types.Flip`), operator overrides
(cloud → drained or not, why, who, when), the routing decisions (:class:`DesiredWeights`: the last
one is what every routing backend must hold, and what a panic keeps), what the last reconciliation
found at each backend (:class:`BackendStatus`), each cloud's health state machine memory as an
opaque JSON object, so that ``orchestrator health --once`` runs continue where the previous one
stopped, and the health job's :class:`Lease`, so that runs of it do not pile up.

Transactions are short by contract: the control plane probes before one and writes routing after
one, never inside, so SQLite's write lock is held for milliseconds. A value read back that no
orchestrator writes raises :class:`~orchestrator.control.errors.StateCorrupt` naming the location and key.

Modules: :mod:`.base` (the interface, its value types and checks), :mod:`.sqlite` (a local file,
the default; transactions take its write lock) and :mod:`.objectstore` (one versioned JSON
document in S3, GCS or Azure, for jobs running in the cloud; transactions are optimistic, with
conditional writes). :func:`open_state` picks one from the location. Either way no command loses
another's writes; with object storage, a step that read what another command changed meanwhile
raises :class:`~orchestrator.control.errors.StateConflict` with nothing written, and
:meth:`StateStore.atomically` runs such a step again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.control.store.base import (
    BUSY_TIMEOUT,
    DEFAULT_FLIP_LIMIT,
    HEALTH_JOB_LEASE,
    MAX_LEASE_S,
    STEP_ATTEMPTS,
    BackendStatus,
    DesiredWeights,
    Lease,
    Override,
    StateStore,
)
from orchestrator.control.store.objectstore import (
    DOCUMENT_KEY,
    DOCUMENT_SCHEMA_VERSION,
    MAX_DESIRED_WEIGHTS,
    MAX_FLIPS,
    OBJECT_STORE_SCHEMES,
    ObjectStoreStateStore,
)
from orchestrator.control.store.sqlite import (
    DEFAULT_STATE_PATH,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    SQLiteStateStore,
)
from orchestrator.core.errors import ConfigError

__all__ = [
    "BUSY_TIMEOUT",
    "DEFAULT_FLIP_LIMIT",
    "DEFAULT_STATE_PATH",
    "DOCUMENT_KEY",
    "DOCUMENT_SCHEMA_VERSION",
    "HEALTH_JOB_LEASE",
    "MAX_DESIRED_WEIGHTS",
    "MAX_FLIPS",
    "MAX_LEASE_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STEP_ATTEMPTS",
    "BackendStatus",
    "DesiredWeights",
    "Lease",
    "Migration",
    "ObjectStoreStateStore",
    "Override",
    "SQLiteStateStore",
    "StateStore",
    "open_state",
]


def open_state(
    location: str | os.PathLike[str] | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    busy_timeout: float = BUSY_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> StateStore:
    """Open the state at ``location``:

    - a path or ``file://`` URI (default ``.orchestrator/state.db``): a SQLite file, created with
      its parent directories if missing; ``settings`` must then be empty;
    - ``s3://bucket[/prefix]``, ``gs://...`` or ``az://...``: the document ``orchestrator/state.json``
      under that prefix (or the object itself if the URI ends in ``.json``), in a bucket that must
      exist. ``settings`` are the storage settings of
      :func:`~orchestrator.core.storage.open_storage` (``endpoint_url``, ``region``, ``project``,
      ``connection_string``, ``account_url``...), as ``state.settings`` in the configuration.

    ``busy_timeout`` bounds how long a command waits for others' writes (SQLite's lock, or the
    object store's retries of a lost race).
    """
    if location is None:
        return SQLiteStateStore.open(
            DEFAULT_STATE_PATH, settings=settings, busy_timeout=busy_timeout, clock=clock
        )
    text = os.fspath(location)
    if text.startswith("file://"):
        text = urlsplit(text).path
    elif "://" in text:
        scheme = text.partition("://")[0].lower()
        if scheme not in OBJECT_STORE_SCHEMES:
            raise ConfigError(
                f"state location {text!r}: use a SQLite file (a path or file:// URI) or object "
                f"storage ({', '.join(f'{s}://' for s in OBJECT_STORE_SCHEMES)})"
            )
        return ObjectStoreStateStore.open(text, settings=settings, busy_timeout=busy_timeout, clock=clock)
    return SQLiteStateStore.open(Path(text), settings=settings, busy_timeout=busy_timeout, clock=clock)
