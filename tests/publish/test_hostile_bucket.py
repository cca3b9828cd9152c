"""Whoever can write the bucket cannot make an endpoint delete files, serve another model, or stop
following LATEST: a scripted sequence of hostile pointers and manifests against one endpoint.

The endpoint follows ``models/iris/LATEST`` in an S3 bucket (moto) with a signing public key
configured and a 0.2 s reload interval. Every step writes objects straight into the bucket, as an
attacker with write access would (some signed with the publisher's own key, to show the checks
behind the signature hold too), waits until the endpoint has refused it, and checks that the last
good model still serves (readiness, version, predictions) and that nothing outside the cache
changed. At the end a good version, published properly, is picked up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.core.artifact.layout import pointer_key
from orchestrator.core.artifact.signing import (
    SignatureVerifier,
    generate_key_pair,
    load_public_key,
    sign_artifact,
)
from orchestrator.core.storage import Storage
from orchestrator.demo.emulators import MotoServer
from orchestrator.demo.processes import start_endpoint
from orchestrator.publish.sync import sync_artifact
from orchestrator.training.pipeline import TrainResult
from serving.cache import ModelCache
from tests.publish.conftest import sign_as_anyone, target

RELOAD_S = "0.2"


def put(storage: Storage, key: str, data: bytes) -> None:
    storage.put(key, data, sha256=hashlib.sha256(data).hexdigest())


def pointer(version: str, manifest_sha: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "version": version,
            "manifest_sha256": manifest_sha,
            "created_at": "2026-01-01T00:00:00+00:00",
            "published_at": "2026-01-01T00:00:00+00:00",
            "sequence": 99,
            **extra,
        }
    )


class Attacker:
    """Writes versions and pointers straight into the bucket."""

    def __init__(self, storage: Storage, base: Path, work: Path, keys: dict[str, tuple[Path, Path]]) -> None:
        self.storage, self.base, self.work, self.keys = storage, base, work, keys
        self.count = 0

    def version(
        self,
        version: str,
        *,
        manifest: Callable[[dict[str, Any]], None] | None = None,
        files: Callable[[Path], None] | None = None,
        raw_manifest: bytes | None = None,
        sign_with: str | None = "ours",
    ) -> str:
        """Upload a copy of the base artifact as ``version`` (changed as told, signed with a key or
        not), move LATEST to it; return the manifest's sha256."""
        self.count += 1
        root = self.work / f"v{self.count}"
        shutil.copytree(self.base, root)
        (root / "model.sig").unlink(missing_ok=True)
        if files is not None:
            files(root)
        data = json.loads((root / "manifest.json").read_text())
        data["version"] = version
        for entry in data["files"]:
            if (root / entry["path"]).is_file():
                content = (root / entry["path"]).read_bytes()
                entry["sha256"], entry["size"] = hashlib.sha256(content).hexdigest(), len(content)
        if manifest is not None:
            manifest(data)
        (root / "manifest.json").write_bytes(
            raw_manifest if raw_manifest is not None else json.dumps(data).encode()
        )
        if sign_with is not None:
            sign_as_anyone(root, self.keys[sign_with][0])
        prefix = f"models/iris/{version}/" if "/" not in version else f"models/iris/x{self.count}/"
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            put(self.storage, prefix + path.relative_to(root).as_posix(), path.read_bytes())
        sha = hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
        self.latest(pointer(version, sha))
        return sha

    def latest(self, raw: bytes) -> None:
        put(self.storage, pointer_key("iris"), raw)


def metrics_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlorch_model_load_failures_total{")
    )


@pytest.mark.slow
def test_an_endpoint_survives_a_hostile_bucket_and_then_picks_up_the_next_good_version(
    moto_server: MotoServer, iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    keys = {
        "ours": generate_key_pair(tmp_path / "keys", "ours"),
        "theirs": generate_key_pair(tmp_path / "keys", "theirs"),
    }
    verifier = SignatureVerifier(load_public_key(str(keys["ours"][1]), where="test"))
    good_v1, good_v2 = tmp_path / "good-v1", tmp_path / "good-v2"
    for src, dest in ((iris_v1, good_v1), (iris_v2, good_v2)):
        shutil.copytree(src.path, dest)
        sign_artifact(dest, keys["ours"][0])
    t = target(moto_server, "aws")
    assert sync_artifact(good_v1, [t], verifier=verifier)[0].ok

    # What must survive: a directory outside the cache, and another model's entry inside it.
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "data.txt").write_text("precious")
    cache = ModelCache(tmp_path / "cache").root  # a cache another endpoint shares
    other = cache / "digits" / "abc123"
    other.mkdir(parents=True)
    (other / "model.onnx").write_bytes(b"another model")
    before = {p: p.read_bytes() for p in [outside / "keep" / "data.txt", other / "model.onnx"]}

    ep = start_endpoint(
        f"{t.storage.uri}/models/iris/LATEST",
        log_path=tmp_path / "endpoint.log",
        env={
            **moto_server.env,
            "MODEL_CACHE_DIR": str(cache),
            "MODEL_SIGNING_PUBLIC_KEY": keys["ours"][1].read_text(),  # PEM text, as a stack passes it
        },
        extra_args=["--reload-interval", RELOAD_S],
    )
    attacker = Attacker(t.storage, good_v1, tmp_path / "attack", keys)
    v1 = iris_v1.manifest.version
    canary = iris_v1.manifest.canary
    try:
        ready = ep.wait_ready().process and httpx.get(f"{ep.url}/readyz").json()
        assert ready["version"] == v1
        assert ready["source"] == f"{t.storage.uri}/models/iris/{v1}", "the bucket object, not a local path"

        def v1_still_serves(expect: str, step: str, failures_before: float) -> None:
            deadline = time.monotonic() + 30
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                state = httpx.get(f"{ep.url}/readyz").json()
                # This step's refusal: one more failure counted, and its message.
                if metrics_total(ep.url) > failures_before and expect in (state.get("last_error") or ""):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"{step}: never refused with {expect!r}; last state {state}")
            assert httpx.get(f"{ep.url}/readyz").status_code == 200, step
            assert state["ready"] is True, step
            assert state["version"] == v1, step
            answer = httpx.post(f"{ep.url}/v1/predict", json={"instances": canary.instances}).json()
            assert (answer["version"], answer["predictions"]) == (v1, canary.labels), step
            for path, content in before.items():
                assert path.read_bytes() == content, f"{step}: {path} changed"
            assert not any(p.name.startswith(".") for p in (cache / "iris").iterdir()), (
                f"{step}: staging left"
            )

        sha_other = hashlib.sha256(b"{}").hexdigest()
        steps: list[tuple[str, Callable[[], Any], str]] = [
            (
                "absolute version",
                lambda: attacker.latest(pointer(str(outside / "keep"), sha_other)),
                "not a valid pointer",
            ),
            (
                "another model's version",
                lambda: attacker.latest(pointer("../digits/abc123", sha_other)),
                "not a valid pointer",
            ),
            ("version LATEST", lambda: attacker.latest(pointer("LATEST", sha_other)), "not a valid pointer"),
            ("trailing newline", lambda: attacker.latest(pointer("v1\n", sha_other)), "not a valid pointer"),
            (
                "traversal in history",
                lambda: attacker.latest(pointer(v1, sha_other, history=["../../x"])),
                "not a valid pointer",
            ),
            ("pointer not JSON", lambda: attacker.latest(b"\x00garbage"), "not a valid pointer"),
            (
                "pointer of 100 kB",
                lambda: attacker.latest(pointer("big", sha_other, pad="x" * 100_000)),
                "is not a pointer",
            ),
            ("manifest sha mismatch", lambda: attacker.latest(pointer(v1, sha_other)), "that LATEST names"),
            (
                "manifest version differs",
                lambda: attacker.version("evil-a", manifest=lambda m: m.update(version="other")),
                "as the URI and pointer say",
            ),
            (
                "manifest of another model",
                lambda: attacker.version("evil-b", manifest=lambda m: m.update(name="digits")),
                "as the URI and pointer say",
            ),
            ("unsigned", lambda: attacker.version("evil-c", sign_with=None), "unsigned"),
            (
                "signed by another key",
                lambda: attacker.version("evil-d", sign_with="theirs"),
                "does not verify",
            ),
            (
                "entry x//y",
                lambda: attacker.version(
                    "evil-e", manifest=lambda m: m["files"].append({**m["files"][0], "path": "x//y"})
                ),
                "not a plain file name",
            ),
            (
                "entry ../../outside",
                lambda: attacker.version(
                    "evil-f",
                    manifest=lambda m: m["files"].append(
                        {**m["files"][0], "path": "../../outside/keep/data.txt"}
                    ),
                ),
                "not a plain file name",
            ),
            (
                "entry manifest.json",
                lambda: attacker.version(
                    "evil-g", manifest=lambda m: m["files"].append({**m["files"][0], "path": "manifest.json"})
                ),
                "reserved",
            ),
            (
                "duplicate entry",
                lambda: attacker.version("evil-h", manifest=lambda m: m["files"].append(m["files"][0])),
                "listed twice",
            ),
            (
                "classes shorter than outputs",
                lambda: attacker.version(
                    "evil-i",
                    manifest=lambda m: (
                        m.update(classes=m["classes"][:2]),
                        m.pop("reference_profile", None),  # consistent: the outputs must catch it
                        m["canary"].update(
                            labels=[m["classes"][0], m["classes"][1]] * 2 + [m["classes"][0]],
                            probabilities=[p[:2] for p in m["canary"]["probabilities"]],
                        ),
                    ),
                ),
                "probabilities per row",
            ),
            (
                "ragged canary",
                lambda: attacker.version(
                    "evil-j", manifest=lambda m: m["canary"]["instances"][0].append(1.0)
                ),
                "canary",
            ),
            (
                "canary of one class",
                lambda: attacker.version(
                    "evil-k",
                    manifest=lambda m: m["canary"].update(
                        labels=[m["canary"]["labels"][0]] * len(m["canary"]["labels"])
                    ),
                ),
                "at least two classes",
            ),
            (
                "empty canary",
                lambda: attacker.version(
                    "evil-l", manifest=lambda m: m["canary"].update(instances=[], labels=[], probabilities=[])
                ),
                "canary",
            ),
            (
                "NaN in the canary",
                lambda: attacker.version(
                    "evil-m",
                    raw_manifest=json.dumps(
                        json.loads((good_v1 / "manifest.json").read_text()) | {"version": "evil-m"}
                    )
                    .replace("[[", "[[NaN, ", 1)
                    .encode(),
                ),
                "not valid JSON",
            ),
            (
                "model not ONNX",
                lambda: attacker.version(
                    "evil-n", files=lambda root: (root / "model.onnx").write_bytes(b"not a model")
                ),
                "not a loadable ONNX model",
            ),
            (
                "wrong canary answers",
                lambda: attacker.version(
                    "evil-o",
                    manifest=lambda m: m["canary"].update(labels=list(reversed(m["canary"]["labels"]))),
                ),
                "canary labels",
            ),
            (
                "object larger than listed",
                lambda: attacker.version("evil-p", manifest=lambda m: m["files"][0].update(size=1)),
                "the manifest says 1",
            ),
            (
                "manifest of 5 MB",
                lambda: attacker.version("evil-q", manifest=lambda m: m.update(padding="x" * 5_000_000)),
                "more than the",
            ),
        ]
        for step, act, expect in steps:
            failures_before = metrics_total(ep.url)
            act()
            v1_still_serves(expect, step, failures_before)

        # A refused version is not downloaded again while the pointer stays the same.
        failures = metrics_total(ep.url)
        time.sleep(1.5)  # several reload intervals
        assert metrics_total(ep.url) == failures, "the unchanged refused pointer was tried again"
        metrics = httpx.get(f"{ep.url}/metrics").text
        assert 'mlorch_model_load_failures_total{reason="signature"}' in metrics
        assert 'mlorch_model_load_failures_total{reason="artifact"}' in metrics

        # The next good version, published properly, is picked up.
        assert sync_artifact(good_v2, [t], verifier=verifier, force=True)[0].ok
        deadline = time.monotonic() + 30
        while httpx.get(f"{ep.url}/readyz").json().get("version") != iris_v2.manifest.version:
            assert time.monotonic() < deadline, httpx.get(f"{ep.url}/readyz").json()
            time.sleep(0.1)
        state = httpx.get(f"{ep.url}/readyz").json()
        assert state["last_error"] is None
        assert state["source"] == f"{t.storage.uri}/models/iris/{iris_v2.manifest.version}"
        for path, content in before.items():
            assert path.read_bytes() == content
        log = [
            json.loads(line)
            for line in (tmp_path / "endpoint.log").read_text().splitlines()
            if line.startswith("{")
        ]
        refused = [line for line in log if line.get("event") == "model refused"]
        assert len(refused) == len(steps), "one JSON line per refusal, none per repeat"
    finally:
        ep.stop()
