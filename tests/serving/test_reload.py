"""The reload loop and the cache, without a server: backoff, exceptions of any kind, confinement."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import pytest

from orchestrator.core.artifact.layout import parse_model_uri
from orchestrator.core.errors import ArtifactError, ConfigError, TransientError
from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.demo.emulators import MotoServer
from orchestrator.training.pipeline import TrainResult
from serving.cache import ModelCache
from serving.loader import make_loader
from serving.model import Predictor, load_verified
from serving.reload import MAX_STALLED, LoadOutcome, ModelHolder, keep_loaded, next_delay
from serving.telemetry import Metrics


@pytest.mark.parametrize(
    ("interval", "outcome", "failures", "delay"),
    [
        (None, LoadOutcome.SERVING, 0, None),
        (None, LoadOutcome.FAILED, 1, 1.0),
        (None, LoadOutcome.FAILED, 4, 8.0),
        (None, LoadOutcome.FAILED, 30, 16.0),  # capped at 16 x the base
        (60.0, LoadOutcome.SERVING, 0, 60.0),
        (60.0, LoadOutcome.FAILED, 2, 120.0),
        (60.0, LoadOutcome.FAILED, 10, 300.0),  # and at 5 minutes
        (0.2, LoadOutcome.FAILED, 100, 3.2),
        (0.2, LoadOutcome.STILL_REFUSED, 0, 0.2),  # a cheap repeat: no growth
        (600.0, LoadOutcome.FAILED, 3, 600.0),  # never below the interval itself
    ],
)
def test_backoff_is_bounded_exponential_and_reset_by_success(
    interval: float | None, outcome: LoadOutcome, failures: int, delay: float | None
) -> None:
    assert next_delay(interval, outcome, failures) == delay


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (IndexError("index 3 is out of bounds"), "internal"),
        (ValueError("invalid storage key 'x//y'"), "internal"),
        (MemoryError(), "internal"),
        (RecursionError(), "internal"),
        (ArtifactError("bad manifest"), "artifact"),
        (TransientError("timeout", uri="s3://b/k"), "storage"),
        (ConfigError("bad"), "config"),
    ],
)
def test_the_holder_never_raises_and_counts_by_reason(exc: BaseException, reason: str) -> None:
    def loader(_: Predictor | None) -> Predictor:
        raise exc

    metrics = Metrics()
    holder = ModelHolder(loader=loader, metrics=metrics)
    assert holder.load() is LoadOutcome.FAILED
    assert holder.last_error
    assert holder.reason.startswith("model refused")
    assert metrics.load_failures.labels(reason)._value.get() == 1


def test_the_loop_goes_on_after_failures_and_picks_up_a_good_model(digits_model: TrainResult) -> None:
    good = load_verified(digits_model.path)
    calls: list[str] = []

    def loader(current: Predictor | None) -> Predictor:
        calls.append("x")
        if len(calls) < 4:
            raise [IndexError, KeyError, ArtifactError][len(calls) - 1]("hostile")
        return good

    holder = ModelHolder(loader=loader, metrics=Metrics())

    async def run() -> None:
        task = asyncio.create_task(keep_loaded(holder, 0.01))
        while holder.current is None:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 30))
    assert holder.current is good
    assert holder.last_error is None
    assert len(calls) >= 4


def test_a_reload_that_overruns_its_deadline_is_abandoned_and_its_late_answer_ignored(
    digits_model: TrainResult,
) -> None:
    """Storage that answers one byte a second must not hold the loop: past the deadline the reload
    is given up (counted, shown), the next one starts, and the stalled one's late answer is never
    served."""
    stale, fresh = load_verified(digits_model.path), load_verified(digits_model.path)
    release = threading.Event()
    calls: list[int] = []

    def loader(current: Predictor | None) -> Predictor:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)  # a download that never ends (within the test)
            return stale
        return fresh

    metrics = Metrics()
    holder = ModelHolder(loader=loader, metrics=metrics)
    errors: list[str] = []
    record = holder.fail
    holder.fail = lambda reason, message, error_type: (
        errors.append(message)
        or record(  # type: ignore[method-assign]
            reason, message, error_type
        )
    )

    async def run() -> None:
        task = asyncio.create_task(keep_loaded(holder, 0.01, timeout_s=0.2))
        while holder.current is None:
            await asyncio.sleep(0.01)
        release.set()  # the stalled reload answers at last
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 30))
    assert holder.current is fresh
    assert errors == [
        "reload did not finish within 0.2 s (the storage is too slow, or stalled); it was given up"
    ]
    assert metrics.load_failures.labels("timeout")._value.get() == 1


def test_stalled_reloads_are_bounded(digits_model: TrainResult) -> None:
    """While reloads stay stalled, at most MAX_STALLED of them wait at once; the loop says so and
    goes on, and once storage answers, the next reload serves."""
    good = load_verified(digits_model.path)
    release = threading.Event()
    calls: list[int] = []

    def loader(current: Predictor | None) -> Predictor:
        calls.append(1)
        release.wait(30)
        return good

    holder = ModelHolder(loader=loader, metrics=Metrics())

    async def run() -> None:
        task = asyncio.create_task(keep_loaded(holder, 0.01, timeout_s=0.05))
        while not (holder.last_error and "still waiting" in holder.last_error):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # several more passes: none starts another reload
        assert len(calls) == MAX_STALLED
        release.set()
        while holder.current is None:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 30))
    assert holder.current is good


def test_a_version_installed_meanwhile_by_another_loader_is_kept(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache")
    final = cache.entry("iris", "v1")
    staging = cache.staging("iris", "v1")
    (staging / "manifest.json").write_text("ours")
    final.mkdir()  # another endpoint sharing the cache (or a stalled reload) got there first
    (final / "manifest.json").write_text("theirs")
    cache.install(staging, final)
    assert (final / "manifest.json").read_text() in ("ours", "theirs")


# --- the cache --------------------------------------------------------------------------------------


def test_cache_paths_come_from_validated_parts(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache")
    assert cache.entry("iris", "abc123") == cache.root / "iris" / "abc123"
    cases = [("iris", "../x"), ("iris", "/etc"), ("..", "v1"), ("iris", "LATEST"), ("iris", "v1\n"),
             ("iris", "a" * 64), ("iris", "vé"), ("iris", "v\x00")]  # fmt: skip
    for name, version in cases:
        with pytest.raises(ArtifactError, match="is not valid"):
            cache.entry(name, version)


def test_a_planted_symlink_is_unlinked_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    cache = ModelCache(tmp_path / "cache")
    (cache.root / "iris").mkdir()
    (cache.root / "iris" / "v1").symlink_to(outside)
    entry = cache.entry("iris", "v1")  # the link is removed, the target untouched
    assert not entry.exists()
    assert (outside / "precious").read_text() == "keep"

    (cache.root / "digits").symlink_to(outside)  # a model directory that is a link
    assert cache.model_dir("digits").is_dir()
    assert not (cache.root / "digits").is_symlink()
    assert (outside / "precious").exists()

    (cache.root / "iris" / "v2").symlink_to(outside)
    cache.remove(cache.root / "iris" / "v2")
    assert (outside / "precious").exists()


def test_remove_refuses_paths_outside_the_cache(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = ModelCache(tmp_path / "cache")
    for path in (outside, cache.root / ".." / "outside", Path("/")):
        with pytest.raises(ArtifactError, match="outside the cache"):
            cache.remove(path)
    assert outside.is_dir()


@pytest.mark.parametrize(
    "uri",
    [
        "s3://b/models/../x/LATEST",
        "s3://b/models/iris/..",
        "s3://b/models/Iris/LATEST",
        "s3://b/models/iris/v1?x=1",
        "s3://b/models/iris/v%2F1",
    ],
)
def test_model_uris_outside_the_grammar_are_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="MODEL_URI"):
        parse_model_uri(uri)


def test_a_cache_directory_that_is_not_a_cache_is_refused(tmp_path: Path) -> None:
    """MODEL_CACHE_DIR=/ and a model named usr made /usr/<version> a cache entry: a pointer naming
    version "bin" would have had /usr/bin removed as a damaged entry. A directory that is not empty
    is used only if it carries the cache's marker, which the cache writes into directories it
    creates or finds empty."""
    home = tmp_path / "home"
    (home / "usr" / "bin").mkdir(parents=True)
    (home / "usr" / "bin" / "python").write_text("keep")
    with pytest.raises(ConfigError, match=r"MODEL_CACHE_DIR .*not empty"):
        ModelCache(home)
    assert (home / "usr" / "bin" / "python").read_text() == "keep"
    cache = ModelCache(tmp_path / "cache")
    (cache.root / "iris" / "v1").mkdir(parents=True)
    assert ModelCache(tmp_path / "cache").root == cache.root  # its own marker: reopened
    empty = tmp_path / "empty"
    empty.mkdir()
    ModelCache(empty)
    assert (empty / ".model-cache").is_file()


def test_the_endpoint_exits_2_on_a_cache_directory_that_is_not_a_cache(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "other" / "files").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--model", "s3://b/models/iris/LATEST"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MODEL_CACHE_DIR": str(tmp_path / "other"), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "MODEL_CACHE_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_local_model_uri_naming_a_file_is_a_clear_error(tmp_path: Path) -> None:
    """file:///.../models/NAME/LATEST of a local bucket: a pointer file, not an artifact directory.
    It was retried forever with '[Errno 20] Not a directory: .../LATEST/manifest.json'."""
    pointer = tmp_path / "bucket" / "models" / "iris" / "LATEST"
    pointer.parent.mkdir(parents=True)
    pointer.write_text("{}")
    for uri in (f"file://{pointer}", str(pointer)):
        with pytest.raises(ConfigError, match="is a file, not an artifact directory"):
            make_loader(uri)


def test_a_pointer_too_large_to_read_is_refused_once_until_it_changes(
    moto_server: MotoServer, digits_model: TrainResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """LATEST of 100 kB is refused by its size, unread. It was not remembered (a refusal is
    remembered by the bytes it read), so every reload logged and counted it again; it is remembered
    by the object's version token, and a pointer written over it is read again."""
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = moto_server.create_bucket()
    storage = open_storage(moto_server.uri(bucket), settings=moto_server.settings, retry=NO_WAIT_RETRY)
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(b" " * 100_000)
    small.write_bytes(b"{}")
    storage.put("models/digits/LATEST", big, sha256=hashlib.sha256(big.read_bytes()).hexdigest())
    loader = make_loader(f"{storage.uri}/models/digits/LATEST", cache_dir=tmp_path / "cache")
    holder = ModelHolder(loader=loader, metrics=Metrics())
    assert holder.load() is LoadOutcome.FAILED
    assert "is not a pointer" in (holder.last_error or "")
    assert holder.load() is LoadOutcome.STILL_REFUSED, "the same object: not counted or logged again"
    storage.put("models/digits/LATEST", small, sha256=hashlib.sha256(b"{}").hexdigest())
    assert holder.load() is LoadOutcome.FAILED
    assert "not a valid pointer" in (holder.last_error or "")


def test_cancelling_the_reload_loop_always_ends_it(digits_model: TrainResult) -> None:
    """The server cancels the loop at shutdown; a cancellation that lands while a reload's answer
    arrives must end the loop too (with asyncio.wait_for on Python 3.11 it was swallowed about one
    time in two with instant reloads, and shutdown hung). Cancelled at many points of its cycle."""
    model = load_verified(digits_model.path)
    holder = ModelHolder(loader=lambda current: model, metrics=Metrics())
    survivors: list[int] = []

    async def run() -> None:
        for attempt in range(60):
            task = asyncio.create_task(keep_loaded(holder, 0.0005, timeout_s=5))
            await asyncio.sleep(0.0003 * (attempt % 9))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            if not done:
                survivors.append(attempt)
                task.cancel()  # give it another chance, so that the test itself ends

    asyncio.run(run())
    assert survivors == [], f"the loop survived its cancellation at attempts {survivors}"
