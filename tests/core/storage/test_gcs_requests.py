"""What the GCS backend sends where gcp-storage-emulator cannot tell: it ignores preconditions
and page sizes, so a small recording server stands in for GCS's JSON API here and answers the
way real GCS does (412 on a failed ifGenerationMatch, nextPageToken on long listings, 503)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator.core.errors import PreconditionFailed
from orchestrator.core.storage import NO_WAIT_RETRY, Storage, open_storage

BUCKET = "recorded"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class FakeGcs:
    """Answers from ``answers`` (a status per request, popped in order; 200 when empty)."""

    endpoint: str = ""
    requests: list[Request] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)


def _object(name: str, generation: int = 7) -> dict[str, object]:
    return {
        "kind": "storage#object",
        "bucket": BUCKET,
        "name": name,
        "generation": str(generation),
        "metageneration": "1",
        "size": "2",
        "updated": "2026-01-01T00:00:00.000Z",
        "metadata": {"sha256": hashlib.sha256(name.encode()).hexdigest()},
    }


@pytest.fixture
def fake_gcs() -> Iterator[FakeGcs]:
    fake = FakeGcs()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            fake.requests.append(Request(self.command, parts.path, query))
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status = fake.answers.pop(0) if fake.answers else 200
            body: dict[str, object]
            if status != 200:
                body = {"error": {"code": status, "message": f"status {status}"}}
            elif self.command == "GET" and parts.path.endswith("/o"):  # a listing: two pages
                token = query.get("pageToken")
                names = ["data/c"] if token else ["data/a", "data/b"]
                body = {"kind": "storage#objects", "items": [_object(n) for n in names]}
                if not token:
                    body["nextPageToken"] = "page-2"
            else:
                body = _object("data/p", generation=8)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def storage(fake_gcs: FakeGcs) -> Iterator[Storage]:
    with open_storage(
        f"gs://{BUCKET}/data",
        settings={"endpoint_url": fake_gcs.endpoint, "page_size": "2"},
        retry=NO_WAIT_RETRY,
    ) as opened:
        yield opened


def test_put_if_absent_sends_if_generation_match_0(fake_gcs: FakeGcs, storage: Storage) -> None:
    info = storage.put_if("p", b"v1", token=None)

    (upload,) = fake_gcs.requests
    assert (upload.method, upload.path) == ("POST", f"/upload/storage/v1/b/{BUCKET}/o")
    assert upload.query["ifGenerationMatch"] == "0"
    assert info.token == "8"


def test_put_if_with_token_sends_that_generation(fake_gcs: FakeGcs, storage: Storage) -> None:
    storage.put_if("p", b"v2", token="7")

    assert fake_gcs.requests[0].query["ifGenerationMatch"] == "7"


def test_a_412_is_precondition_failed_and_not_retried(fake_gcs: FakeGcs, storage: Storage) -> None:
    fake_gcs.answers = [412]

    with pytest.raises(PreconditionFailed, match="gs://recorded/data/p"):
        storage.put_if("p", b"v2", token="6")

    assert len(fake_gcs.requests) == 1


def test_a_token_that_is_not_a_generation_is_refused_without_a_request(
    fake_gcs: FakeGcs, storage: Storage
) -> None:
    with pytest.raises(PreconditionFailed, match="not a GCS generation"):
        storage.put_if("p", b"v2", token='"0x8DC"')
    assert fake_gcs.requests == []


def test_listing_sends_the_page_size_and_follows_page_tokens(fake_gcs: FakeGcs, storage: Storage) -> None:
    infos = list(storage.list())

    assert [i.key for i in infos] == ["a", "b", "c"]
    assert all(i.sha256 is not None and i.token == "7" for i in infos)
    first, second = fake_gcs.requests
    assert first.query["maxResults"] == "2"
    assert first.query["prefix"] == "data/"
    assert "pageToken" not in first.query
    assert second.query["pageToken"] == "page-2"
    assert storage.stats["list"] == 2


def test_a_503_is_retried(fake_gcs: FakeGcs, storage: Storage) -> None:
    fake_gcs.answers = [503, 503]

    info = storage.stat("p")

    assert info.token == "8"
    assert len(fake_gcs.requests) == 3
    assert storage.stats["stat"] == 3
