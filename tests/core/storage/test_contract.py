"""The storage contract: every test here runs unchanged against local, S3, GCS and Azure.

What a backend must do is what sync, verify and the endpoint rely on: round trips of bytes and
of large files (really multipart), our own sha256 in stat and (where possible) in listings,
listing by prefix with pagination, NotFound for missing objects and buckets, idempotent delete,
conditional writes with create-only and version-token semantics, no retries of 4xx answers, and
a request counter that reports what was actually sent.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestrator.core.errors import NotFound, PreconditionFailed, StorageError
from orchestrator.core.storage import ObjectInfo, RetryPolicy, Storage
from orchestrator.demo.emulators import Azurite, MotoServer
from tests.core.storage.conftest import SMALL_PART, Backend

GCS_NO_PRECONDITIONS = (
    "gcp-storage-emulator ignores preconditions (docs/development.md), so a conflicting write "
    "succeeds there; real GCS enforces ifGenerationMatch, and test_gcs_requests.py checks we send it"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(storage: Storage, key: str, data: bytes) -> ObjectInfo:
    return storage.put(key, data, sha256=sha(data))


# --- round trips ------------------------------------------------------------------------


def test_put_bytes_then_get_and_stat(storage: Storage) -> None:
    data = b"model bytes \x00\xff" * 100
    written = put(storage, "models/m/1/model.onnx", data)

    assert written.key == "models/m/1/model.onnx"
    assert written.size == len(data)
    assert written.sha256 == sha(data)
    assert written.token
    assert storage.get("models/m/1/model.onnx") == data
    stat = storage.stat("models/m/1/model.onnx")
    assert (stat.key, stat.size, stat.sha256, stat.token) == (
        written.key,
        len(data),
        sha(data),
        written.token,
    )
    assert stat.modified is not None
    assert stat.modified.tzinfo is not None


def test_empty_object_and_unusual_key(storage: Storage) -> None:
    put(storage, "empty", b"")
    key = "dir with space/ünïcode+plus=equals.txt"
    put(storage, key, b"x")

    assert storage.get("empty") == b""
    assert storage.stat("empty").size == 0
    assert storage.get(key) == b"x"
    assert [info.key for info in storage.list("dir with space/")] == [key]


def test_large_file_is_uploaded_in_parts_and_keeps_our_sha256(backend: Backend, tmp_path: Path) -> None:
    storage = backend.open(part_size=str(SMALL_PART))
    source = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024)  # three parts of 5 MiB (the last one shorter)
    source.write_bytes(data)

    written = storage.put("big.bin", source, sha256=sha(data), content_type="application/x-test")
    stat = storage.stat("big.bin")

    assert written.sha256 == stat.sha256 == sha(data)  # ours, from metadata
    assert stat.size == len(data)
    assert stat.token != sha(data)
    if isinstance(backend.emulator, MotoServer):
        # A multipart ETag is md5-of-part-md5s plus "-<parts>": proof it was multipart, and
        # proof it is no content hash.
        assert backend.emulator.etag(backend.bucket, "data/big.bin").endswith('-3"')
    if isinstance(backend.emulator, Azurite):
        assert backend.emulator.block_count(backend.bucket, "data/big.bin") == 3
    target = tmp_path / "out" / "big.bin"
    storage.download("big.bin", target)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha(data)
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # no temporary file left behind


def test_small_file_from_path(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "small.json"
    source.write_bytes(b'{"a": 1}')

    written = storage.put("small.json", source, sha256=sha(b'{"a": 1}'), content_type="application/json")

    assert written.size == 8
    assert storage.get("small.json") == b'{"a": 1}'
    assert storage.stat("small.json").sha256 == sha(b'{"a": 1}')


def test_overwrite_changes_token_and_sha256(storage: Storage) -> None:
    first = put(storage, "k", b"one")
    second = put(storage, "k", b"two")

    assert second.token != first.token
    assert storage.stat("k").sha256 == sha(b"two")
    assert storage.get("k") == b"two"


def test_put_refuses_bytes_that_do_not_match_sha256(storage: Storage) -> None:
    with pytest.raises(ValueError, match="does not have sha256"):
        storage.put("k", b"data", sha256=sha(b"other"))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        storage.put("k", b"data", sha256="ABC")
    assert storage.stats["put"] == 0  # nothing was sent


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/", ".~meta.x", "d/.~lock"])
def test_invalid_keys_are_refused_before_any_request(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        storage.stat(key)
    assert sum(storage.stats.values()) == 0


# --- listing ----------------------------------------------------------------------------


def test_list_by_prefix_recursive_sorted_and_relative(backend: Backend) -> None:
    storage = backend.open()
    outside = backend.open(prefix="")  # the bucket root, where "data/" is just a prefix
    put(outside, "elsewhere/x", b"not under data/")
    put(outside, "database", b"shares the string prefix 'data' but not 'data/'")
    keys = ["a/1", "a/b/2", "a/b/c/3", "ab/4", "b/5"]
    for key in keys:
        put(storage, key, key.encode())

    assert [i.key for i in storage.list()] == keys
    assert [i.key for i in storage.list("a/")] == ["a/1", "a/b/2", "a/b/c/3"]
    assert [i.key for i in storage.list("a")] == ["a/1", "a/b/2", "a/b/c/3", "ab/4"]  # a string prefix
    assert [i.key for i in storage.list("a/b/c/3")] == ["a/b/c/3"]
    assert list(storage.list("zzz/")) == []
    assert [i.size for i in storage.list("a/b/")] == [5, 7]


def test_list_paginates_one_request_per_page(backend: Backend) -> None:
    storage = backend.open(page_size="3")
    keys = [f"k/{i:02d}" for i in range(7)]
    for key in keys:
        put(storage, key, b"x")

    assert [i.key for i in storage.list("k/")] == keys
    if backend.honours_page_size:
        assert storage.stats["list"] == 3  # 3 + 3 + 1
    else:  # gcp-storage-emulator returns everything in one page whatever maxResults says
        assert storage.stats["list"] == 1


def test_list_returns_sha256_or_documents_that_stat_must(storage: Storage) -> None:
    data = {"x/1": b"one", "x/2": b"two"}
    written = {key: put(storage, key, value) for key, value in data.items()}

    listed = {info.key: info for info in storage.list("x/")}

    for key, value in data.items():
        info = listed[key]
        assert info.size == len(value)
        # The token from a listing is the same as from stat or put: usable for put_if and for
        # "unchanged since I last verified it" checks without a stat.
        assert info.token == written[key].token == storage.stat(key).token
        if storage.list_includes_sha256:
            assert info.sha256 == sha(value)
        else:
            assert info.sha256 is None  # S3: ListObjectsV2 returns no metadata
            assert storage.stat(key).sha256 == sha(value)


def test_one_listing_costs_one_request_and_nothing_else(storage: Storage) -> None:
    for i in range(5):
        put(storage, f"m/{i}", b"x")
    before = dict(storage.stats)

    infos = list(storage.list("m/"))

    assert len(infos) == 5
    after = dict(storage.stats)
    assert {op: after[op] - before.get(op, 0) for op in after if after[op] != before.get(op, 0)} == {
        "list": 1
    }


# --- missing things ---------------------------------------------------------------------


def test_missing_object_is_not_found_and_not_retried(backend: Backend, tmp_path: Path) -> None:
    storage = backend.open(retry=RetryPolicy(attempts=5, wait_initial=0, wait_max=0, wait_jitter=0))

    with pytest.raises(NotFound, match="data/nope"):
        storage.stat("nope")
    with pytest.raises(NotFound, match="data/nope"):
        storage.get("nope")
    with pytest.raises(NotFound, match="data/nope"):
        storage.download("nope", tmp_path / "dl" / "nope")

    assert storage.stats == {"stat": 1, "get": 2}
    assert list((tmp_path / "dl").iterdir()) == []  # neither the file nor a temporary one


def test_missing_bucket_is_not_found(backend: Backend) -> None:
    storage = backend.open_missing_bucket()

    with pytest.raises(NotFound) as listing:
        list(storage.list())
    assert storage.uri in str(listing.value)
    with pytest.raises(NotFound):
        storage.stat("k")
    with pytest.raises(NotFound):
        storage.get("k")
    with pytest.raises(NotFound):
        put(storage, "k", b"x")
    assert storage.stats["list"] == 1  # not retried


def test_delete_is_idempotent(storage: Storage) -> None:
    put(storage, "d/k", b"x")

    storage.delete("d/k")
    storage.delete("d/k")
    storage.delete("never/existed")

    with pytest.raises(NotFound):
        storage.stat("d/k")
    assert list(storage.list()) == []


# --- conditional writes -----------------------------------------------------------------


def test_put_if_absent_creates(storage: Storage) -> None:
    info = storage.put_if("LATEST", b'{"version": "1"}', token=None)

    assert info.token
    assert info.sha256 == sha(b'{"version": "1"}')
    assert storage.get("LATEST") == b'{"version": "1"}'
    assert storage.stat("LATEST").sha256 == info.sha256


def test_put_if_absent_refuses_an_existing_object(backend: Backend, storage: Storage) -> None:
    if not backend.enforces_preconditions:
        pytest.skip(GCS_NO_PRECONDITIONS)
    storage.put_if("LATEST", b"first", token=None)

    with pytest.raises(PreconditionFailed, match="data/LATEST"):
        storage.put_if("LATEST", b"second", token=None)

    assert storage.get("LATEST") == b"first"
    assert storage.stats["put"] == 2  # the refusal was not retried


def test_put_if_with_current_token_succeeds_and_stale_token_fails(backend: Backend, storage: Storage) -> None:
    first = storage.put_if("LATEST", b"v1", token=None)
    second = storage.put_if("LATEST", b"v2", token=first.token)
    assert second.token != first.token
    assert storage.get("LATEST") == b"v2"
    # The token a listing gives works as well as the one put_if returned.
    (listed,) = storage.list("LATEST")
    third = storage.put_if("LATEST", b"v3", token=listed.token)
    assert storage.get("LATEST") == b"v3"
    if not backend.enforces_preconditions:
        pytest.skip(GCS_NO_PRECONDITIONS)

    puts_before = storage.stats["put"]
    with pytest.raises(PreconditionFailed):
        storage.put_if("LATEST", b"stale", token=second.token)

    assert storage.get("LATEST") == b"v3"
    assert storage.stats["put"] == puts_before + 1
    assert storage.stat("LATEST").token == third.token


def test_put_if_with_a_token_on_an_absent_object_fails(backend: Backend, storage: Storage) -> None:
    if not backend.enforces_preconditions:
        pytest.skip(GCS_NO_PRECONDITIONS)
    token = put(storage, "gone", b"x").token
    storage.delete("gone")

    with pytest.raises(PreconditionFailed):
        storage.put_if("gone", b"y", token=token)
    with pytest.raises(NotFound):
        storage.stat("gone")


# --- counters, errors, tampering --------------------------------------------------------


def test_stats_count_requests_sent(storage: Storage, tmp_path: Path) -> None:
    put(storage, "a", b"1")
    storage.stat("a")
    storage.get("a")
    storage.download("a", tmp_path / "a")
    list(storage.list())
    storage.put_if("p", b"x", token=None)
    storage.delete("a")

    assert storage.stats == {"put": 2, "stat": 1, "get": 2, "list": 1, "delete": 1}


def test_errors_are_storage_errors_naming_the_object(storage: Storage) -> None:
    with pytest.raises(StorageError) as caught:
        storage.get("models/m/9/missing.bin")
    assert caught.value.uri == f"{storage.uri}/models/m/9/missing.bin"
    assert str(caught.value).startswith(storage.uri)


def test_bytes_changed_behind_our_back_keep_the_recorded_sha256(backend: Backend, storage: Storage) -> None:
    # What `verify --deep` exists for: metadata still claims the old hash.
    put(storage, "m.bin", b"original")
    if backend.emulator is None:
        (Path(backend.bucket) / "data" / "m.bin").write_bytes(b"tampered")
        # Local: the sidecar no longer matches the file, so the hash is reported unknown.
        assert storage.stat("m.bin").sha256 is None
    else:
        backend.emulator.tamper(backend.bucket, "data/m.bin", b"tampered")
        assert storage.stat("m.bin").sha256 == sha(b"original")
    assert storage.get("m.bin") == b"tampered"
