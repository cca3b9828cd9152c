"""The file routing backend: the routing table as one JSON file, replaced atomically.

For development, and for any proxy or load balancer that reads its upstream weights from a file
(Envoy, HAProxy and nginx can all be driven this way by a small watcher). ``path`` holds::

    {"version": 7, "updated_at": "2026-05-01T12:00:00.123456+00:00", "reason": "...",
     "weights": {"aws": 70, "gcp": 30, "azure": 0},
     "targets": {"aws": "https://...", "gcp": "https://...", "azure": "https://..."}}

``epoch`` is the highest leader epoch a fenced write carried (:meth:`FileBackend.apply`'s
``fence``): a write with a lower one is refused under the lock, so a stale leader cannot overwrite
a newer one's decision. ``version`` grows by one per apply, so a reader can tell a new table from
one it has seen; ``targets`` are the full endpoint URLs. A reader never sees half a file: each
apply writes a temporary file in the same directory, fsyncs it, and ``os.replace``s it over
``path`` (a rename within one filesystem is atomic: a reader opens either the old file or the new
one), then fsyncs the directory so the rename itself survives a crash. Writers take an flock on a
sidecar ``.<name>.lock`` so that two concurrent applies cannot hand out the same version. Clouds
absent from ``weights`` keep their entries from the previous table. A table that is missing,
cannot be parsed, or holds other weights or targets than the decision is what
:meth:`FileBackend.compare` reports, and the next reconciliation rewrites it (a table we cannot
parse was not written by us). A ``path`` that is a symbolic link (to a proxy's own configuration
directory, say) is followed at every read and write: the table is replaced where the link points,
and the link stays.

Settings: ``path`` (required; parent directories are created).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from orchestrator.control.errors import Fenced
from orchestrator.control.routing.backends import (
    AppliedRouting,
    Comparison,
    check_settings,
    checked_weights,
    fence_difference,
    untargeted_zero,
)
from orchestrator.core.errors import StorageError

__all__ = ["FileBackend", "open_from_settings"]


def open_from_settings(settings: Mapping[str, str]) -> FileBackend:
    """The backend described by ``settings`` (``path``; ``~`` expanded); ConfigError otherwise."""
    check_settings("file", settings, required={"path"}, optional=set())
    return FileBackend(Path(settings["path"]).expanduser())


class FileBackend:
    """A JSON routing table at ``path``."""

    kind = "file"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.location = f"routing file {path}"
        self._clock = clock

    def __repr__(self) -> str:
        return f"FileBackend({str(self.path)!r})"

    def __enter__(self) -> FileBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""

    def apply(
        self,
        weights: Mapping[str, int],
        targets: Mapping[str, str],
        *,
        reason: str = "",
        fence: int | None = None,
    ) -> AppliedRouting:
        checked = checked_weights(weights, targets, kind=self.kind)
        try:
            path = self._resolved()
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                previous = self._read_or_empty(path)
                epoch = _epoch(previous)
                if fence is not None and fence < epoch:
                    raise Fenced(
                        f"{self.location}: a newer leader (epoch {epoch}) wrote it; this write "
                        f"carries epoch {fence} and is refused",
                        held=epoch,
                        offered=fence,
                    )
                held = previous.get("weights", {})
                at = self._clock()
                table: dict[str, Any] = {
                    "epoch": max(epoch, fence or 0),
                    "version": int(previous.get("version", 0)) + 1,
                    "updated_at": datetime.fromtimestamp(at, tz=UTC).isoformat(),
                    "reason": reason,
                    "weights": {
                        **held,
                        **{
                            c: w
                            for c, w in checked.items()
                            if c in held or not untargeted_zero(c, w, targets)
                        },
                    },
                    "targets": {
                        **previous.get("targets", {}),
                        **{c: targets[c] for c in checked if c in targets},
                    },
                }
                data = orjson.dumps(table, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
                self._replace(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write the routing table: {exc}", uri=str(self.path)) from exc
        return AppliedRouting(
            backend=self.kind,
            location=self.location,
            weights=dict(table["weights"]),
            targets=dict(table["targets"]),
            change_id=str(table["version"]),
            at=at,
        )

    def current(self) -> dict[str, int]:
        return dict(self.read().get("weights", {}))

    def compare(
        self, weights: Mapping[str, int], targets: Mapping[str, str], *, fence: int | None = None
    ) -> Comparison:
        try:
            table = self.read()
        except StorageError as exc:
            detail = str(exc).removeprefix(f"{exc.uri}: ") if exc.uri else str(exc)
            return Comparison({}, (f"unreadable: {detail}",))
        if not table:
            return Comparison({}, ("no routing table",))
        held: dict[str, int] = dict(table["weights"])
        aimed = table.get("targets")
        aimed = aimed if isinstance(aimed, dict) else {}
        differences = []
        for cloud, weight in weights.items():
            if cloud not in held and untargeted_zero(cloud, weight, targets):
                continue
            if cloud not in held:
                differences.append(f"{cloud}: no entry")
            elif held[cloud] != weight:
                differences.append(f"{cloud}: weight {held[cloud]}, decided {weight}")
            if cloud in targets and aimed.get(cloud) != targets[cloud]:
                differences.append(f"{cloud}: another target")
        return Comparison(held, tuple(differences) + fence_difference(_epoch(table), fence))

    def read(self, path: Path | None = None) -> dict[str, Any]:
        """The whole table as stored ({} if there is no file yet); StorageError if unreadable."""
        try:
            data = (path or self._resolved()).read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read the routing table: {exc}", uri=str(self.path)) from exc
        return _parse(data, str(self.path))

    # --- internals -----------------------------------------------------------------------

    def _resolved(self) -> Path:
        """Where the table is: ``path``, or where the link at ``path`` points (resolved anew each
        time: the link may be changed); OSError for a loop of links."""
        if not self.path.is_symlink():
            return self.path
        try:
            return self.path.resolve()
        except RuntimeError as exc:  # Python 3.11 reports a loop of links as RuntimeError
            raise OSError(f"{exc} at {self.path}") from None

    def _read_or_empty(self, path: Path) -> dict[str, Any]:
        # A table we cannot parse was not written by us (we never leave half a file); the new
        # one replaces it rather than blocking a failover, and its version starts over.
        try:
            return self.read(path)
        except StorageError:
            return {}

    def _replace(self, path: Path, data: bytes) -> None:
        directory = path.parent
        tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
        # O_EXCL: never write through someone else's file; 0o666 & umask, unlike mkstemp's 0o600,
        # so a proxy running as another user can read the table.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)  # os.replace: atomic within one filesystem
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(directory)

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _parse(data: bytes, where: str) -> dict[str, Any]:
    try:
        table = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StorageError(f"not a routing table (invalid JSON: {exc})", uri=where) from None
    weights = table.get("weights") if isinstance(table, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in weights.values()
    ):
        raise StorageError("not a routing table (no integer 'weights' object)", uri=where)
    result: dict[str, Any] = table
    return result


def _epoch(table: Mapping[str, Any]) -> int:
    """The highest leader epoch the table records (0: no fenced write yet, or not a number)."""
    epoch = table.get("epoch", 0)
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else 0


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
