"""The local filesystem backend: ``file:///abs/path`` or a bare path.

The root directory plays the bucket: it must exist (NotFound otherwise) and is never created;
directories below it are created as keys need them. Beside each object ``dir/name``::

    dir/name               the content: written to a temp file, fsynced, renamed into place
    dir/.~meta.name.json   sidecar: sha256 and content type, plus the inode, mtime_ns and size
                           of the content file it describes
    dir/.~lock             flock()ed around every write in ``dir``: put_if's compare-and-swap
                           is safe between threads and processes, and the lock dies with them
    dir/.~tmp.*            writes in flight; only a crash leaves one behind; never listed

A sidecar counts only while the content file's inode, mtime and size still match it, so a file
changed behind our back (or a crash between the two renames) reads as "no sha256", never as a
stale one. ``list()`` reads one small sidecar per object and hashes nothing. The version token
is the content file's inode, mtime and size: every write renames a new file into place.

Limits the clouds do not have: a key cannot be both an object and a "directory" of other keys
(``a`` and ``a/b``), and a segment is limited to about 240 bytes (the sidecar name is longer).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from orchestrator.core.errors import NotFound, PermissionDenied, PreconditionFailed, StorageError
from orchestrator.core.storage.base import (
    DEFAULT_CONTENT_TYPE,
    RESERVED_SEGMENT_PREFIX,
    ObjectInfo,
    Storage,
    valid_sha256,
)
from orchestrator.core.storage.retry import RetryPolicy
from orchestrator.core.storage.uri import StorageURI

__all__ = ["LocalStorage"]

_META_PREFIX = RESERVED_SEGMENT_PREFIX + "meta."
_TMP_PREFIX = RESERVED_SEGMENT_PREFIX + "tmp."
_LOCK_NAME = RESERVED_SEGMENT_PREFIX + "lock"
# 1 MiB copies keep a large file streaming at disk speed without holding it in memory.
_CHUNK = 1 << 20


class LocalStorage(Storage):
    """Objects as files under a root directory, with sha256 in a sidecar per object."""

    scheme = "file"

    def __init__(self, location: StorageURI, *, settings: Mapping[str, str], retry: RetryPolicy) -> None:
        # Keys map straight to paths under the root, so object names carry no prefix.
        super().__init__(location, settings=settings, retry=retry, name_prefix="")
        self.root = Path(location.prefix)

    # --- hooks ---------------------------------------------------------------------------

    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        self._require_root()
        start = prefix.rpartition("/")[0]
        keys = sorted(
            key
            for key in self._walk(start)
            if key.startswith(prefix) and (page_token is None or key > page_token)
        )
        page_size = self.transfer.page_size
        more = page_size is not None and len(keys) > page_size
        if page_size is not None:
            keys = keys[:page_size]
        infos = []
        for key in keys:
            path = self.root / key
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted while we listed: it is simply not there
                continue
            if stat.S_ISREG(st.st_mode):  # sockets, FIFOs and devices are not objects
                infos.append(self._info(key, path, st))
        return infos, (keys[-1] if more else None)

    def _stat(self, name: str) -> ObjectInfo:
        self._require_root()
        path = self.root / name
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise NotFound("no such object (a directory is not an object)", uri=self._uri_of(name))
        return self._info(name, path, st)

    def _get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def _download(self, name: str, dest: Path) -> None:
        shutil.copyfile(self.root / name, dest)

    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo:
        return self._publish(name, sha256, content_type, lambda out: out.write(data))

    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo:
        def copy(out: BinaryIO) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)

        return self._publish(name, sha256, content_type, copy)

    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        target = self._uri_of(name)

        def check(current: ObjectInfo | None) -> None:
            if token is None and current is not None:
                raise PreconditionFailed("object already exists (create-only write refused)", uri=target)
            if token is not None and current is None:
                raise PreconditionFailed(f"object is absent, expected version {token}", uri=target)
            if token is not None and current is not None and current.token != token:
                raise PreconditionFailed(
                    f"object is at version {current.token}, expected {token}", uri=target
                )

        return self._publish(name, sha256, DEFAULT_CONTENT_TYPE, lambda out: out.write(data), check)

    def _delete(self, name: str) -> None:
        self._require_root()
        path = self.root / name
        if not path.parent.is_dir():
            return
        with _locked(path.parent):
            if path.is_file():
                path.unlink(missing_ok=True)
            _sidecar(path).unlink(missing_ok=True)

    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
            if not self.root.is_dir():
                return NotFound(_NO_ROOT, uri=self.uri)
            return NotFound("no such object", uri=target)
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"permission denied: {exc.filename}", uri=target)
        if isinstance(exc, OSError):
            return StorageError(f"{exc.strerror or exc}: {exc.filename}", uri=target)
        return None

    # --- helpers -------------------------------------------------------------------------

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise NotFound(_NO_ROOT, uri=self.uri)

    def _walk(self, start: str) -> Iterator[str]:
        top = self.root / start if start else self.root
        if not top.is_dir():
            return

        def fail(err: OSError) -> None:
            raise err

        for dirpath, dirnames, filenames in os.walk(top, onerror=fail):
            # Keys never contain reserved segments, so no object lives below such a directory.
            dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_SEGMENT_PREFIX)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for filename in filenames:
                if not filename.startswith(RESERVED_SEGMENT_PREFIX):
                    yield filename if rel == "." else f"{rel}/{filename}"

    def _info(self, key: str, path: Path, st: os.stat_result) -> ObjectInfo:
        sha256 = None
        try:
            meta = orjson.loads(_sidecar(path).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            meta = None
        if isinstance(meta, dict) and [meta.get("ino"), meta.get("mtime_ns"), meta.get("size")] == [
            st.st_ino,
            st.st_mtime_ns,
            st.st_size,
        ]:
            sha256 = valid_sha256(meta.get("sha256"))
        return _object_info(key, st, sha256)

    def _publish(
        self,
        name: str,
        sha256: str,
        content_type: str,
        write: Callable[[BinaryIO], object],
        check: Callable[[ObjectInfo | None], None] | None = None,
    ) -> ObjectInfo:
        self._require_root()
        path = self.root / name
        target = self._uri_of(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StorageError(
                _KEY_CLASH.format(what="a parent of this key is an object"), uri=target
            ) from None
        if path.is_dir():
            raise StorageError(_KEY_CLASH.format(what="this key is a directory of other keys"), uri=target)
        data_tmp = _write_temp(path.parent, write)
        meta_tmp: Path | None = None
        try:
            st = data_tmp.stat()  # a rename keeps inode and mtime: the sidecar can name them now
            meta = {
                "sha256": sha256,
                "content_type": content_type,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "ino": st.st_ino,
            }
            meta_tmp = _write_temp(path.parent, lambda out: out.write(orjson.dumps(meta)))
            with _locked(path.parent):
                if check is not None:
                    check(self._current(name, path))
                # Sidecar first: if we die between the renames, it names an inode that is not
                # the content file's, so it reads as "no sha256" instead of a wrong one.
                meta_tmp.replace(_sidecar(path))
                data_tmp.replace(path)
        finally:
            data_tmp.unlink(missing_ok=True)
            if meta_tmp is not None:
                meta_tmp.unlink(missing_ok=True)
        return _object_info(name, st, sha256)

    def _current(self, name: str, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return self._info(name, path, st)


_NO_ROOT = (
    "storage root directory does not exist; create it first (like a bucket, it is not created on demand)"
)
_KEY_CLASH = "cannot store this key: {what}, and a filesystem cannot hold both 'a' and 'a/b'"


def _object_info(key: str, st: os.stat_result, sha256: str | None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        sha256=sha256,
        token=f"{st.st_ino:x}.{st.st_mtime_ns:x}.{st.st_size:x}",
        modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC),
    )


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{_META_PREFIX}{path.name}.json")


def _write_temp(directory: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A new fsynced file in ``directory``, created with the umask's permissions (unlike mkstemp,
    which would make every stored object private to its writer)."""
    tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
