"""What only the local backend has to get right: its sidecars, its bookkeeping files, its
directory-as-bucket rule, filesystem key clashes, and put_if between processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson
import pytest

from orchestrator.core.errors import NotFound, PreconditionFailed, StorageError
from orchestrator.core.storage import NO_RETRY, Storage, open_storage


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def storage(root: Path) -> Storage:
    return open_storage(str(root), retry=NO_RETRY)


def test_layout_is_plain_files_plus_hidden_sidecars(storage: Storage, root: Path) -> None:
    storage.put("models/m/1/model.onnx", b"onnx", sha256=sha(b"onnx"), content_type="application/x-onnx")

    directory = root / "models" / "m" / "1"
    assert (directory / "model.onnx").read_bytes() == b"onnx"
    assert sorted(p.name for p in directory.iterdir()) == [".~lock", ".~meta.model.onnx.json", "model.onnx"]
    meta = orjson.loads((directory / ".~meta.model.onnx.json").read_bytes())
    assert meta["sha256"] == sha(b"onnx")
    assert meta["content_type"] == "application/x-onnx"
    assert [info.key for info in storage.list()] == ["models/m/1/model.onnx"]


def test_a_file_put_there_by_hand_is_listed_without_sha256(storage: Storage, root: Path) -> None:
    (root / "manual.txt").write_bytes(b"hand made")

    (info,) = storage.list()

    assert (info.key, info.size, info.sha256) == ("manual.txt", 9, None)
    assert storage.stat("manual.txt").sha256 is None
    assert storage.get("manual.txt") == b"hand made"


def test_a_sidecar_that_no_longer_matches_its_file_is_ignored(storage: Storage, root: Path) -> None:
    storage.put("k", b"same size", sha256=sha(b"same size"))
    path = root / "k"
    stat = path.stat()
    path.write_bytes(b"SAME SIZE")  # same size, new bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))

    assert storage.stat("k").sha256 is None
    assert next(storage.list()).sha256 is None


def test_a_corrupt_sidecar_reads_as_no_sha256(storage: Storage, root: Path) -> None:
    storage.put("k", b"v", sha256=sha(b"v"))
    (root / ".~meta.k.json").write_bytes(b"{not json")

    assert storage.stat("k").sha256 is None


def test_bookkeeping_files_are_never_listed_or_left_behind(storage: Storage, root: Path) -> None:
    (root / ".~tmp.leftover-from-a-crash").write_bytes(b"partial")
    storage.put("a/b", b"1", sha256=sha(b"1"))
    storage.put_if("a/p", b"2", token=None)
    storage.delete("a/b")

    assert [info.key for info in storage.list()] == ["a/p"]
    assert sorted(p.name for p in (root / "a").iterdir()) == [".~lock", ".~meta.p.json", "p"]


def test_the_root_directory_is_the_bucket_and_is_never_created(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "nope"), retry=NO_RETRY)

    for attempt in (lambda: storage.put("k", b"v", sha256=sha(b"v")), lambda: list(storage.list())):
        with pytest.raises(NotFound, match="root directory does not exist"):
            attempt()
    assert not (tmp_path / "nope").exists()


def test_a_key_cannot_be_both_an_object_and_a_directory(storage: Storage, root: Path) -> None:
    storage.put("a", b"1", sha256=sha(b"1"))
    storage.put("x/y", b"2", sha256=sha(b"2"))

    with pytest.raises(StorageError, match="parent of this key is an object"):
        storage.put("a/b", b"3", sha256=sha(b"3"))
    with pytest.raises(StorageError, match="directory of other keys"):
        storage.put("x", b"4", sha256=sha(b"4"))
    with pytest.raises(NotFound):
        storage.stat("x")  # a directory is not an object
    assert list(root.glob(".~tmp*")) == []


def test_stored_files_get_the_umask_permissions_not_private_ones(storage: Storage, root: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    storage.put("k", b"v", sha256=sha(b"v"))

    assert (root / "k").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_put_from_a_path_is_a_copy(storage: Storage, root: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"content")
    storage.put("copy.bin", source, sha256=sha(b"content"))
    source.write_bytes(b"changed afterwards")

    assert storage.get("copy.bin") == b"content"
    assert storage.stat("copy.bin").sha256 == sha(b"content")


def _increment(uri: str, times: int) -> int:
    """Read-modify-write a counter with put_if, retrying on conflict; returns conflicts seen."""
    conflicts = 0
    with open_storage(uri, retry=NO_RETRY) as storage:
        for _ in range(times):
            while True:
                info = storage.stat("counter")
                value = int(storage.get("counter"))
                try:
                    storage.put_if("counter", str(value + 1).encode(), token=info.token)
                    break
                except PreconditionFailed:
                    conflicts += 1
    return conflicts


def test_put_if_is_a_compare_and_swap_between_processes(storage: Storage, root: Path) -> None:
    storage.put_if("counter", b"0", token=None)
    workers, times = 4, 25
    # spawn, not fork: the test process has threads (pytest-timeout, emulator clients).
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_increment, [str(root)] * workers, [times] * workers))

    # A lost update (two writers both succeeding from the same version) would leave it short.
    assert storage.get("counter") == str(workers * times).encode()


def _create_only(uri: str, data: bytes) -> bool:
    with open_storage(uri, retry=NO_RETRY) as storage:
        try:
            storage.put_if("LATEST", data, token=None)
        except PreconditionFailed:
            return False
        return True


def test_exactly_one_process_creates(root: Path) -> None:
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        won = list(pool.map(_create_only, [str(root)] * 8, [f"writer {i}".encode() for i in range(8)]))

    assert won.count(True) == 1
