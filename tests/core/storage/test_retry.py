"""The retry policy: transient failures are retried with bounded attempts and time, 4xx never.

The shared machinery is tested with an in-memory backend whose provider calls fail as scripted
(the fake transport), so attempts are counted exactly and nothing sleeps. Then every cloud
backend is pointed at a closed port: the SDKs' own retries must be off, and the give-up message
must name the endpoint.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from orchestrator.core.errors import (
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorageError,
    TransientError,
)
from orchestrator.core.storage import (
    DEFAULT_RETRY,
    NO_RETRY,
    NO_WAIT_RETRY,
    ObjectInfo,
    RetryPolicy,
    Storage,
    StorageURI,
    open_storage,
)
from orchestrator.demo.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    MotoServer,
    closed_port,
    start_moto,
    unique_bucket_name,
)

# --- the fake transport -------------------------------------------------------------------


class FlakyStorage(Storage):
    """In-memory objects; ``script[op]`` lists what each provider call does in turn: None to
    succeed, or an exception to raise (ConnectionResetError stands for a dropped connection)."""

    scheme = "s3"

    def __init__(self, retry: RetryPolicy = NO_WAIT_RETRY, **script: list[Exception | None]) -> None:
        super().__init__(StorageURI("s3", "fake", "root"), settings={"page_size": "2"}, retry=retry)
        self.objects: dict[str, tuple[bytes, str, int]] = {}
        self.script = script
        self.version = 0
        self.lose_next_put_if_response = False
        # Bytes another writer lands between our lost response and our retry.
        self.then_someone_writes: bytes | None = None

    def _step(self, op: str) -> None:
        queue = self.script.get(op)
        if queue:
            fault = queue.pop(0)
            if fault is not None:
                raise fault

    def _info(self, name: str) -> ObjectInfo:
        if name not in self.objects:
            raise KeyError(name)
        data, sha256, version = self.objects[name]
        return ObjectInfo(self._key(name), len(data), sha256, str(version))

    def _write(self, name: str, data: bytes, sha256: str) -> ObjectInfo:
        self.version += 1
        self.objects[name] = (data, sha256, self.version)
        return self._info(name)

    def _list_page(self, prefix: str, page_token: str | None) -> tuple[Sequence[ObjectInfo], str | None]:
        self._step("list")
        names = sorted(
            n for n in self.objects if n.startswith(prefix) and (page_token is None or n > page_token)
        )
        page = names[:2]
        return [self._info(n) for n in page], (page[-1] if len(names) > 2 else None)

    def _stat(self, name: str) -> ObjectInfo:
        self._step("stat")
        return self._info(name)

    def _get(self, name: str) -> bytes:
        self._step("get")
        return self.objects[name][0]

    def _download(self, name: str, dest: Path) -> None:
        self._step("get")
        dest.write_bytes(self.objects[name][0])

    def _put_bytes(self, name: str, data: bytes, sha256: str, content_type: str) -> ObjectInfo:
        self._step("put")
        return self._write(name, data, sha256)

    def _put_file(self, name: str, path: Path, size: int, sha256: str, content_type: str) -> ObjectInfo:
        self._step("put")
        return self._write(name, path.read_bytes(), sha256)

    def _put_if(self, name: str, data: bytes, sha256: str, token: str | None) -> ObjectInfo:
        self._step("put")
        current = self.objects.get(name)
        if (token is None and current is not None) or (
            token is not None and (current is None or str(current[2]) != token)
        ):
            raise PreconditionFailed("version moved", uri=self._uri_of(name))
        info = self._write(name, data, sha256)
        if self.lose_next_put_if_response:
            self.lose_next_put_if_response = False
            if self.then_someone_writes is not None:
                self._write(name, self.then_someone_writes, sha(self.then_someone_writes))
            raise ConnectionResetError("response lost after the write landed")
        return info

    def _delete(self, name: str) -> None:
        self._step("delete")
        self.objects.pop(name, None)

    def _translate(self, exc: Exception, target: str) -> StorageError | None:
        if isinstance(exc, ConnectionError):
            return TransientError(f"connection dropped: {exc}", uri=target)
        if isinstance(exc, KeyError):
            return NotFound("no such object", uri=target)
        return None


def drop() -> ConnectionResetError:
    return ConnectionResetError("connection reset by peer")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the policy ---------------------------------------------------------------------------


def test_transient_failures_are_retried_until_success() -> None:
    storage = FlakyStorage(get=[drop(), drop()])
    storage.put("k", b"v", sha256=sha(b"v"))

    assert storage.get("k") == b"v"
    assert storage.stats["get"] == 3  # two failures, then the success


def test_retries_stop_after_the_policy_attempts_and_say_so() -> None:
    storage = FlakyStorage(retry=RetryPolicy(attempts=3, wait_initial=0, wait_max=0, wait_jitter=0))
    storage.script["stat"] = [drop() for _ in range(10)]

    with pytest.raises(TransientError, match=r"gave up after 3 attempts") as caught:
        storage.stat("k")

    assert storage.stats["stat"] == 3
    assert caught.value.uri == "s3://fake/root/k"
    assert "connection reset by peer" in str(caught.value)


def test_retries_stop_at_the_policy_time_budget() -> None:
    policy = RetryPolicy(attempts=1000, timeout=0.3, wait_initial=0.05, wait_max=0.05, wait_jitter=0)
    storage = FlakyStorage(retry=policy, stat=[drop() for _ in range(1000)])

    started = time.monotonic()
    with pytest.raises(TransientError, match="gave up"):
        storage.stat("k")

    assert time.monotonic() - started < 1.0
    assert 2 <= storage.stats["stat"] < 20


@pytest.mark.parametrize(
    "error",
    [
        NotFound("no such object"),
        PermissionDenied("denied"),
        PreconditionFailed("moved"),
        StorageError("400 bad request"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_answers_are_never_retried(error: StorageError) -> None:
    storage = FlakyStorage(stat=[error, None])

    with pytest.raises(type(error)):
        storage.stat("k")

    assert storage.stats["stat"] == 1


def test_an_unknown_exception_is_a_bug_and_propagates_unretried() -> None:
    storage = FlakyStorage(stat=[ZeroDivisionError("bug"), None])

    with pytest.raises(ZeroDivisionError):
        storage.stat("k")

    assert storage.stats["stat"] == 1


def test_no_retry_policy_makes_one_attempt() -> None:
    storage = FlakyStorage(retry=NO_RETRY, get=[drop(), None])
    storage.put("k", b"v", sha256=sha(b"v"))

    with pytest.raises(TransientError) as caught:
        storage.get("k")

    assert "gave up" not in str(caught.value)
    assert storage.stats["get"] == 1


def test_a_failed_list_page_is_retried_without_repeating_earlier_pages() -> None:
    storage = FlakyStorage(list=[None, drop(), None, None])
    for i in range(5):
        storage.put(f"k{i}", b"x", sha256=sha(b"x"))

    assert [info.key for info in storage.list()] == [f"k{i}" for i in range(5)]
    assert storage.stats["list"] == 4  # pages of 2, 2 and 1, one of them sent twice


def test_put_if_whose_response_was_lost_recognises_its_own_write() -> None:
    storage = FlakyStorage()
    storage.lose_next_put_if_response = True

    info = storage.put_if("LATEST", b"v1", token=None)

    assert info.sha256 == sha(b"v1")
    assert storage.get("LATEST") == b"v1"
    # The retry met "already exists"; a stat showed that the object holds exactly our bytes.
    assert storage.stats["put"] == 2
    assert storage.stats["stat"] == 1


def test_put_if_lost_response_then_someone_else_wrote_is_a_conflict() -> None:
    storage = FlakyStorage()
    first = storage.put_if("LATEST", b"v1", token=None)
    storage.lose_next_put_if_response = True
    storage.then_someone_writes = b"theirs"

    with pytest.raises(PreconditionFailed):
        storage.put_if("LATEST", b"v2", token=first.token)

    assert storage.get("LATEST") == b"theirs"


def test_stats_are_exact_under_threads() -> None:
    storage = FlakyStorage()
    storage.put("k", b"v", sha256=sha(b"v"))

    def work() -> None:
        for _ in range(200):
            storage.stat("k")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert storage.stats["stat"] == 1600


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(wait_max=-1)


# --- real SDKs against a closed port --------------------------------------------------------


def _closed_endpoint_settings(cloud: str, port: int) -> tuple[str, dict[str, str]]:
    endpoint = f"http://127.0.0.1:{port}"
    if cloud == "s3":
        return "s3://some-bucket/p", {"endpoint_url": endpoint}
    if cloud == "gs":
        return "gs://some-bucket/p", {"endpoint_url": endpoint}
    return "az://some-container/p", {
        "connection_string": (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
        )
    }


@pytest.mark.parametrize("cloud", ["s3", "gs", "az"])
@pytest.mark.parametrize("operation", ["stat", "put", "list"])
def test_a_closed_port_is_transient_retried_and_named(cloud: str, operation: str) -> None:
    port = closed_port()
    uri, settings = _closed_endpoint_settings(cloud, port)

    calls: dict[str, Callable[[Storage], object]] = {
        "stat": lambda s: s.stat("k"),
        "put": lambda s: s.put("k", b"v", sha256=sha(b"v")),
        "list": lambda s: list(s.list()),
    }

    started = time.monotonic()
    with open_storage(uri, settings=settings, retry=NO_WAIT_RETRY) as storage:
        with pytest.raises(TransientError) as caught:
            calls[operation](storage)
        elapsed = time.monotonic() - started

    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert f"gave up after {NO_WAIT_RETRY.attempts} attempts" in message
    assert message.startswith(uri)
    # Exactly our attempts reached the wire: the SDK's own retries are off (with them on,
    # google-cloud-storage alone would keep going for 120 s).
    assert storage.stats[operation] == NO_WAIT_RETRY.attempts
    assert elapsed < 3


@pytest.mark.emulator
def test_a_killed_emulator_fails_within_seconds_with_the_default_policy(tmp_path: Path) -> None:
    # What the "kill an emulator mid-sync" test relies on: real backoff, bounded.
    server: MotoServer = start_moto(tmp_path)
    try:
        bucket = server.create_bucket(unique_bucket_name())
        with open_storage(f"s3://{bucket}", settings=server.settings, retry=DEFAULT_RETRY) as storage:
            storage.put("k", b"v", sha256=sha(b"v"))
            server.kill()

            started = time.monotonic()
            with pytest.raises(TransientError, match=f"cannot connect to {server.endpoint}"):
                storage.stat("k")
            elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert storage.stats["stat"] == DEFAULT_RETRY.attempts
    assert 0.5 < elapsed < 6  # it backed off, then gave up within a few seconds
