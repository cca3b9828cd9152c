"""Optimistic transactions over one document in object storage: the engine under the object-store state.

Transactions are optimistic. :meth:`OptimisticDocument.transaction` reads the document once,
with its version token (S3 and Azure ETag, GCS generation). Inside the block every write is
applied to a private working copy, which later reads see, and is also recorded as a *mutation*:
a small function that re-applies that one write to any document ("append these flips", "set
aws's override to this value", "append these weights", "replace aws's machine", "set this
lease"), together with the sections the block read. At exit the working copy is written with
``put_if`` on the token read (S3 If-Match, or If-None-Match: * for the first write; GCS
ifGenerationMatch; Azure If-Match), so a write lands only on the version it was computed from.
If another command committed in between, the write is refused (PreconditionFailed): the store
backs off with full jitter, re-reads, and then

- if every section the block read is unchanged, replays the mutations, in order, on the fresh
  document and tries again (at most :data:`COMMIT_ATTEMPTS` tries within the busy timeout);
- otherwise it raises :class:`~orchestrator.control.errors.StateConflict` naming the stale sections, with
  nothing written.

Why replaying is safe. A mutation carries values, not deltas computed from what was read: the
flips and weights to append, the override or machine to set, with the timestamps taken when the
block ran. Applied to a newer document, appends keep both commands' entries and sets leave the
later committer's value, exactly as if the block had run after the other command. That equivalence
holds as long as the block's decisions did not depend on anything the other command changed,
which is what the check of the read sections establishes (value equality, so a section changed
and changed back still counts as unchanged: the block's reads are then still true). A block that
only writes (every method called outside a transaction) therefore always replays; one that read
what another command wrote must be run again on the new state, and :meth:`StateStore.atomically`
does that. The result is serialisable: every commit is equivalent to running the blocks one
after the other, and no command's write is lost.

What a caller must not assume: that a transaction holds a lock (others run and commit meanwhile;
only the commit is checked); that a block runs once (with ``atomically`` it may run again, so
side effects in it must be idempotent: the control plane does no I/O in a step at all); that a
commit which raised StateConflict wrote anything (it wrote nothing), or that one which raised TransientError
did not (its last request may have landed with the answer lost: read the state again); that
entries appear in time order (``desired_weights`` is in commit order, and the last one committed
is the one in effect, whatever its timestamp); or that histories are complete (they keep the
newest :data:`~orchestrator.control.store.objectstore.MAX_FLIPS` and
:data:`~orchestrator.control.store.objectstore.MAX_DESIRED_WEIGHTS` entries).

A read costs two requests (stat for the token, then get): in that order, because a get that
returns a newer version than the token only makes the conditional write fail and retry, whereas
the reverse order could pair old content with a new token and overwrite a commit. A commit is one
more request. Each commit's ``version`` and random ``commit`` make every written document unique,
so an S3 ETag (an MD5 of the content) always changes, and the storage layer's check that a
retried write "already landed" can only ever recognise our own write. Transient failures are
retried by the storage layer (:mod:`orchestrator.core.storage.retry`); ``stats`` counts reads,
commits, conflicts, replays and stale transactions.

gcp-storage-emulator ignores preconditions, so it cannot test any of this; real GCS enforces
``ifGenerationMatch``, which we always send (``tests/control/store``).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Self

import orjson

from orchestrator.control.errors import StateConflict
from orchestrator.control.store.base import (
    BUSY_TIMEOUT,
    StateStore,
)
from orchestrator.control.store.document import (
    DOCUMENT_KIND,
    DOCUMENT_SCHEMA_VERSION,
    SECTIONS,
    Document,
    Section,
    decode,
)
from orchestrator.core.errors import NotFound, PreconditionFailed
from orchestrator.core.storage import Storage

__all__ = ["COMMIT_ATTEMPTS", "COMMIT_WAIT_INITIAL", "COMMIT_WAIT_MAX", "DOCUMENT_KEY", "OptimisticDocument"]

# Under the location's prefix. Namespaced, so a location at a bucket's root (shared with the
# models/ tree of `orchestrator sync`) cannot collide with anything else there.
DOCUMENT_KEY = "orchestrator/state.json"
# Tries of one commit that keeps losing races: a bound on top of the busy timeout, which is what
# normally ends the wait. Every lost race means another command committed, so some command always
# progresses, but not necessarily this one: a writer backing off can lose to fresh ones several
# times in a row while a burst lasts. With the waits below, 20 tries would wait about 8 s on
# average; the 5 s busy timeout ends the wait first, and still absorbs far more contention than a
# job per cloud and an operator create (a commit is a few requests, no network I/O happens inside
# a step); the tests drive four writers with no pause between commits.
COMMIT_ATTEMPTS = 20
# Backoff before re-reading after a lost race: full jitter, uniform in [0, min(MAX, INITIAL * 2**n)).
# 50 ms is about one read-modify-write round trip to a bucket in-region, so the first retry
# usually finds the winner's commit done; the cap of 1 s keeps a loser from sleeping through the
# quiet moment after a burst.
COMMIT_WAIT_INITIAL = 0.05
COMMIT_WAIT_MAX = 1.0

# One write of a transaction, as a function that (re-)applies it to any document.
_Mutation = Callable[[Document], None]


@dataclass(slots=True)
class _Transaction:
    base: Document  # as read, never modified: what the read sections are checked against
    token: str | None  # the version token read with it (None: the document did not exist)
    working: Document  # base with the mutations applied: what reads inside the block see
    mutations: list[_Mutation] = field(default_factory=list)
    reads: set[Section] = field(default_factory=set)


class OptimisticDocument(StateStore):
    """The state as one document in ``storage`` at ``key``, with the optimistic transactions the
    module docstring describes. Abstract: the state's sections are read and written by
    :class:`~orchestrator.control.store.objectstore.ObjectStoreStateStore`."""

    def __init__(
        self,
        storage: Storage,
        key: str = DOCUMENT_KEY,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        commit_attempts: int = COMMIT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        close_storage: bool = True,
    ) -> None:
        """Keep the state at ``key`` in ``storage``; :meth:`open` builds both from a URI. The
        store closes ``storage`` when it is closed, unless ``close_storage`` is False."""
        if commit_attempts < 1:
            raise ValueError(f"commit_attempts must be at least 1, not {commit_attempts}")
        self.storage = storage
        self.key = key
        self.location = storage.key_uri(key)
        self.stats: Counter[str] = Counter()
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._commit_attempts = commit_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311  # backoff jitter, not cryptography
        self._close_storage = close_storage
        # Threads sharing this store take turns; a transaction holds the lock from its read to
        # its commit, so another thread's calls cannot slip into it (as in SQLiteStateStore).
        self._lock = threading.RLock()
        self._tx: _Transaction | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def close(self) -> None:
        with self._lock:
            if self._close_storage:
                self.storage.close()

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        with self._lock:
            outer = self._tx
            if outer is not None:
                # Nested: undo only this block's writes if it raises. Its reads stay recorded,
                # since whatever it read may have shaped what the outer block does next.
                mark, snapshot = len(outer.mutations), outer.working.copy()
                try:
                    yield self
                except BaseException:
                    del outer.mutations[mark:]
                    outer.working = snapshot
                    raise
                return
            base, token = self._read()
            tx = _Transaction(base=base, token=token, working=base.copy())
            self._tx = tx
            try:
                yield self
                self._commit(tx)
            finally:
                self._tx = None

    def _commit(self, tx: _Transaction) -> None:
        if not tx.mutations:
            return  # read-only: nothing to write, and its reads were a consistent snapshot
        started = time.monotonic()
        base, token, document = tx.base, tx.token, tx.working
        for attempt in range(1, self._commit_attempts + 1):
            document.version = base.version + 1
            try:
                self.storage.put_if(self.key, self._encode(document), token=token)
            except PreconditionFailed as exc:
                self._count("conflicts")
                elapsed = time.monotonic() - started
                if attempt == self._commit_attempts or elapsed >= self._busy_timeout:
                    raise StateConflict(
                        f"gave up after {attempt} attempts in {elapsed:.1f} s: other orchestrator "
                        "commands kept writing the state at the same time; nothing of this step was "
                        "written, so run it again",
                        uri=self.location,
                        attempts=attempt,
                    ) from exc
                self._backoff(attempt)
                fresh, token = self._read()
                stale = tuple(s for s in SECTIONS if s in tx.reads and tx.base.section(s) != fresh.section(s))
                if stale:
                    self._count("stale")
                    raise StateConflict(
                        f"another orchestrator command changed {', '.join(stale)} while this step "
                        "used it, so the step's decisions may rest on old data; nothing of it was "
                        "written: run it again on the new state (StateStore.atomically does)",
                        uri=self.location,
                        stale=stale,
                        attempts=attempt,
                    ) from exc
                # Nothing this block read has changed: its writes, replayed in order on the newer
                # document, give what running the block after the other command would have.
                self._count("replays")
                base, document = fresh, fresh.copy()
                for mutation in tx.mutations:
                    mutation(document)
            else:
                self._count("commits")
                return

    def _backoff(self, attempt: int) -> None:
        """Full jitter: contenders that collided spread out instead of colliding again."""
        self._sleep(self._rng.uniform(0, min(COMMIT_WAIT_MAX, COMMIT_WAIT_INITIAL * 2 ** (attempt - 1))))

    def _before_rerun(self, attempt: int) -> None:
        # The commit loop backed off once before it found the step's reads stale; a step that
        # keeps colliding backs off further, as a commit that keeps losing does.
        self._backoff(attempt + 1)

    # --- internals -----------------------------------------------------------------------

    def _write(self, mutation: _Mutation) -> None:
        """Apply one write to the current transaction (opening one just for it if none is open)."""
        with self.transaction():
            tx = self._tx
            assert tx is not None  # set by transaction() for as long as the block runs
            mutation(tx.working)
            tx.mutations.append(mutation)

    def _view(self, section: Section) -> Document:
        """The document to read ``section`` from: the transaction's working copy (the section is
        then recorded as read), or outside a transaction the latest committed document. Call
        with the lock held, and copy what leaves the store."""
        if self._tx is not None:
            self._tx.reads.add(section)
            return self._tx.working
        return self._read()[0]

    def _read(self) -> tuple[Document, str | None]:
        """The committed document and its version token; an empty document and None if there is
        none yet. Stat first, then get: see the module docstring for why this order is safe."""
        self._count("reads")
        try:
            info = self.storage.stat(self.key)
        except NotFound:
            self._check_bucket()
            return Document(), None
        try:
            data = self.storage.get(self.key)
        except NotFound:
            return Document(), None  # deleted since the stat: absent, as a create-only write will check
        return decode(data, self.location), info.token

    def _check_bucket(self) -> None:
        """An absent document is an empty state, but an absent bucket is a mistake to report: a
        listing tells them apart (it raises NotFound only for the bucket). One request, only
        until the first commit."""
        try:
            next(iter(self.storage.list(self.key)), None)
        except NotFound as exc:
            detail = str(exc).removeprefix(f"{exc.uri}: ") if exc.uri else str(exc)
            raise NotFound(
                f"the bucket or container of the state does not exist ({detail}); create it "
                "first: it is not created on demand",
                uri=self.location,
            ) from exc

    def _encode(self, document: Document) -> bytes:
        return orjson.dumps(
            {
                "kind": DOCUMENT_KIND,
                "schema": DOCUMENT_SCHEMA_VERSION,
                "version": document.version,
                "updated_at": self._clock(),
                "commit": secrets.token_hex(8),
                "flips": document.flips,
                "overrides": document.overrides,
                "desired_weights": document.desired_weights,
                "machines": document.machines,
                "backends": document.backends,
                "leases": document.leases,
                "rollouts": document.rollouts,
            },
            option=orjson.OPT_SORT_KEYS,  # equal state, equal text: diffs and debugging stay simple
        )

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1
