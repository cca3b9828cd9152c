"""Publishing, beyond the happy path: signatures, ordering by sequence, and repairing a bucket.

Against the emulators (moto, gcp-storage-emulator, Azurite), with real key pairs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.layout import Pointer, pointer_key, read_pointer
from orchestrator.core.artifact.signing import (
    SignatureError,
    SignatureVerifier,
    generate_key_pair,
    load_public_key,
    sign_artifact,
)
from orchestrator.core.errors import ArtifactError
from orchestrator.publish.sync import SyncEvent, Target, sync_artifact
from orchestrator.publish.verify import verify_targets
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.publish.conftest import bucket_of, sign_as_anyone


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {"ours": generate_key_pair(root, "ours"), "theirs": generate_key_pair(root, "theirs")}


def verifier(public: Path) -> SignatureVerifier:
    return SignatureVerifier(load_public_key(str(public), where="test"))


@pytest.fixture
def signed(iris_v1: TrainResult, tmp_path: Path, keys) -> Path:
    copy = tmp_path / "signed"
    shutil.copytree(iris_v1.path, copy)
    sign_artifact(copy, keys["ours"][0])
    return copy


# --- signatures -------------------------------------------------------------------------------------


def test_train_signs_before_the_artifact_lands(tmp_path: Path, keys) -> None:
    result = train(TrainOptions(dataset="iris", out=tmp_path, signing_key=keys["ours"][0]))
    assert result.signed
    assert (result.path / "model.sig").is_file()
    assert "model.sig" not in {e.path for e in result.manifest.files}, "the signature signs the manifest"
    verifier(keys["ours"][1]).verify(result.path, source="artifact")
    with pytest.raises(SignatureError, match="does not verify"):
        verifier(keys["theirs"][1]).verify(result.path, source="artifact")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: (root / "report.md").write_text("# rewritten"), "changed since signing: report.md"),
        (lambda root: (root / "extra.bin").write_bytes(b"x"), "not signed: extra.bin"),
        (lambda root: (root / "roc_ovr.png").unlink(), "signed but missing: roc_ovr.png"),
        (lambda root: (root / "model.sig").write_text("{}"), "does not verify"),
        (lambda root: (root / "model.sig").unlink(), "unsigned"),
    ],
)
def test_any_change_to_a_signed_artifact_fails_its_signature(
    signed: Path, keys, change, message: str
) -> None:
    change(signed)
    with pytest.raises(SignatureError, match=message):
        verifier(keys["ours"][1]).verify(signed, source="s3://b/models/iris/v")


def test_a_manifest_rewritten_with_honest_checksums_is_refused_by_the_signature(signed: Path, keys) -> None:
    """The attack sha256 alone cannot stop: new bytes, a manifest recomputed to match them."""
    data = b"# an attacker's report\n"
    (signed / "report.md").write_bytes(data)
    manifest = json.loads((signed / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "report.md":
            entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (signed / "manifest.json").write_text(json.dumps(manifest))
    verify_artifact(signed)  # integrity holds...
    with pytest.raises(SignatureError):  # ...authenticity does not
        verifier(keys["ours"][1]).verify(signed, source="artifact")
    sign_artifact(signed, keys["theirs"][0])  # re-signed with another key: still not ours
    with pytest.raises(SignatureError, match="does not verify"):
        verifier(keys["ours"][1]).verify(signed, source="artifact")


def test_sync_uploads_the_signature_before_the_commit_marker(
    three_clouds: list[Target], signed: Path, keys
) -> None:
    order: dict[str, list[str]] = {}

    def record(event: SyncEvent) -> None:
        if event.kind == "upload":
            order.setdefault(event.target, []).append(event.key)

    results = sync_artifact(signed, three_clouds, verifier=verifier(keys["ours"][1]), on_event=record)
    assert all(r.ok for r in results), [r.error for r in results]
    for keys_uploaded in order.values():
        assert "model.sig" in keys_uploaded
        assert keys_uploaded[-1] == "manifest.json"
    checked, drift = verify_targets(three_clouds, "iris", deep=True, verifier=verifier(keys["ours"][1]))
    assert drift == []
    assert all(c.ok for c in checked), [str(d) for c in checked for d in c.drift]
    wrong, _ = verify_targets(three_clouds, "iris", verifier=verifier(keys["theirs"][1]))
    assert all(d.key.endswith("model.sig") and "does not verify" in d.problem for c in wrong for d in c.drift)


@pytest.mark.parametrize("key", ["theirs", None])
def test_sync_with_a_public_key_sends_nothing_unless_the_signature_verifies(
    three_clouds: list[Target], iris_v1: TrainResult, signed: Path, keys, key: str | None
) -> None:
    artifact = signed if key else iris_v1.path  # wrongly signed, or unsigned
    if key:
        sign_artifact(artifact, keys[key][0])
    with pytest.raises(SignatureError):
        sync_artifact(artifact, three_clouds, verifier=verifier(keys["ours"][1]))
    for t in three_clouds:
        assert list(t.storage.list("")) == []


def test_a_signature_must_cover_exactly_what_sync_publishes(
    three_clouds: list[Target], signed: Path, keys
) -> None:
    """A stray file in the artifact directory when it was signed: sync published the version (the
    local check passed) and every endpoint refused it, since only the manifest's files are published.
    sign refuses such a directory; sync refuses such a signature, and sends nothing."""
    (signed / "notes.txt").write_text("a stray file")
    with pytest.raises(ArtifactError, match=r"notes\.txt"):
        sign_artifact(signed, keys["ours"][0])
    sign_as_anyone(signed, keys["ours"][0])  # signed elsewhere, around our check
    with pytest.raises(SignatureError, match=r"signed but not in the manifest: notes\.txt"):
        sync_artifact(signed, three_clouds, verifier=verifier(keys["ours"][1]))
    for t in three_clouds:
        assert list(t.storage.list("")) == []


def test_verify_names_an_unsigned_version(three_clouds: list[Target], iris_v1: TrainResult, keys) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    checked, _ = verify_targets(three_clouds, "iris", verifier=verifier(keys["ours"][1]))
    prefix = f"models/iris/{iris_v1.manifest.version}/"
    for c in checked:
        assert [(d.key, d.problem.split(":")[0]) for d in c.drift] == [(prefix + "model.sig", "missing")]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def test_the_sign_command_and_its_errors(iris_v1: TrainResult, tmp_path: Path, keys) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(iris_v1.path, copy)
    done = run_cli(
        "sign", "--model", str(copy), "--json", env={"ORCHESTRATOR_SIGNING_KEY": str(keys["ours"][0])}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signature"] == str(copy / "model.sig")
    verifier(keys["ours"][1]).verify(copy, source="artifact")

    not_a_key = tmp_path / "bad.key"
    not_a_key.write_text("hello")
    bad = run_cli("sign", "--model", str(copy), "--key", str(not_a_key))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert str(not_a_key) in bad.stderr
    (copy / "report.md").write_text("changed")
    tampered = run_cli("sign", "--model", str(copy), "--key", str(keys["ours"][0]))
    assert tampered.returncode == 1, "an artifact that fails its own manifest is never signed"
    assert "report.md" in tampered.stderr


def test_serve_with_a_bad_public_key_exits_2_naming_the_variable(
    iris_v1: TrainResult, tmp_path: Path
) -> None:
    for value in ("/no/such/key.pem", "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----"):
        done = run_cli("serve", env={"MODEL_URI": str(iris_v1.path), "MODEL_SIGNING_PUBLIC_KEY": value})
        assert done.returncode == 2, done.stderr
        assert "MODEL_SIGNING_PUBLIC_KEY" in done.stderr
        assert "Traceback" not in done.stderr


# --- ordering by the publisher's sequence --------------------------------------------------------------


def with_created_at(artifact: Path, dest: Path, created_at: str, version: str) -> Path:
    shutil.copytree(artifact, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["created_at"], manifest["version"] = created_at, version
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_a_far_future_created_at_orders_nothing(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult, tmp_path: Path
) -> None:
    future = with_created_at(
        iris_v1.path, tmp_path / "future", "2999-01-01T00:00:00+00:00", "from-the-future"
    )
    assert all(r.ok for r in sync_artifact(future, three_clouds))
    later = sync_artifact(iris_v2.path, three_clouds)
    assert all(r.ok and r.pointer == "moved" for r in later), [r.error for r in later]


def test_two_trainings_in_the_same_second_publish_in_order(
    three_clouds: list[Target], iris_v1: TrainResult, tmp_path: Path
) -> None:
    same = "2030-01-01T00:00:00+00:00"
    a = with_created_at(iris_v1.path, tmp_path / "a", same, "same-second-a")
    b = with_created_at(iris_v1.path, tmp_path / "b", same, "same-second-b")
    sequences = []
    for artifact in (a, b):
        results = sync_artifact(artifact, three_clouds)
        assert all(r.ok and r.pointer == "moved" for r in results)
        sequences.append(results[0].sequence)
    assert sequences == [1, 2]
    for t in three_clouds:
        pointer, _ = read_pointer(t.storage, "iris")
        assert pointer is not None
        assert (pointer.version, pointer.previous, pointer.history) == (
            "same-second-b",
            "same-second-a",
            ("same-second-a",),
        )
    again = sync_artifact(b, three_clouds)  # no ping-pong: nothing moves
    assert all(r.pointer == "unchanged" for r in again)


def test_a_pointer_of_the_previous_release_reads_as_sequence_0(
    three_clouds: list[Target], iris_v1: TrainResult, iris_v2: TrainResult
) -> None:
    aws = three_clouds[0]
    old = {
        "version": iris_v1.manifest.version,
        "manifest_sha256": "0" * 64,
        "created_at": "x",
        "published_at": "2026-01-01T00:00:00+00:00",
    }
    raw = orjson.dumps(old)
    aws.storage.put(pointer_key("iris"), raw, sha256=hashlib.sha256(raw).hexdigest())
    pointer, _ = read_pointer(aws.storage, "iris")
    assert pointer is not None
    assert (pointer.sequence, pointer.history) == (0, ())
    (result,) = sync_artifact(iris_v2.path, [aws])
    assert (result.ok, result.sequence) == (True, 1)


def test_pointers_compare_by_sequence_then_version() -> None:
    def p(version: str, sequence: int) -> Pointer:
        return Pointer(
            version=version,
            manifest_sha256="0" * 64,
            created_at="",
            published_at="2026-01-01T00:00:00+00:00",
            sequence=sequence,
        )

    assert max([p("zzz", 1), p("aaa", 2)], key=Pointer.order).version == "aaa"
    assert max([p("aaa", 2), p("bbb", 2)], key=Pointer.order).version == "bbb"


@pytest.mark.parametrize(
    "pointer",
    [
        {"version": "../digits/x"},
        {"version": "/some/dir"},
        {"version": "LATEST"},
        {"version": "v1\n"},
        {"previous": "../x"},
        {"history": ["ok", "../../etc"]},
        {"sequence": -1},
        {"sequence": 2**53},  # beyond what every JSON reader holds exactly
        {"sequence": 2**64 - 1},  # sync crashed adding 1 (orjson writes at most 64 bits)
        {"published_at": "not a date"},  # the health job crashed reading it
        {"published_at": 1.5},
    ],
)
def test_a_pointer_outside_the_grammar_is_refused(three_clouds: list[Target], pointer: dict) -> None:
    aws = three_clouds[0]
    raw = orjson.dumps(
        {
            "version": "v1",
            "manifest_sha256": "0" * 64,
            "created_at": "",
            "published_at": "2026-01-01T00:00:00+00:00",
            **pointer,
        }
    )
    aws.storage.put(pointer_key("iris"), raw, sha256=hashlib.sha256(raw).hexdigest())
    with pytest.raises(ArtifactError, match="not a valid pointer"):
        read_pointer(aws.storage, "iris")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00garbage",
        b'{"version": "../x"}',
        b'{"version": "v1", "manifest_sha256": "' + b"0" * 64 + b'", "created_at": "", '
        b'"published_at": "2026-01-01T00:00:00+00:00", "sequence": 18446744073709551615}',
        b'{"pad": "' + b"x" * 70_000 + b'"}',  # over the 64 kB a pointer may be
        b'{"version": "v1", "manifest_sha256": "' + b"0" * 64 + b'", "created_at": "", '
        b'"published_at": "2026-01-01T00:00:00+00:00", "sequence": 9007199254740991}',  # the last
    ],
)
def test_sync_replaces_a_pointer_it_cannot_continue_only_with_force(
    three_clouds: list[Target], iris_v1: TrainResult, raw: bytes
) -> None:
    """A LATEST that is garbage, outside the grammar, oversized or at the last sequence: nothing in
    the product could repair it (sync crashed on one, refused the others even with --force). Plain
    sync still refuses, naming --force; with --force it replaces the pointer (sequence 1)."""
    aws = three_clouds[0]
    aws.storage.put(pointer_key("iris"), raw, sha256=hashlib.sha256(raw).hexdigest())
    (refused,) = sync_artifact(iris_v1.path, [aws])
    assert not refused.ok
    assert "--force" in (refused.error or ""), refused.error
    assert aws.storage.get(pointer_key("iris")) == raw, "nothing moved without --force"
    (forced,) = sync_artifact(iris_v1.path, [aws], force=True)
    assert (forced.ok, forced.pointer, forced.sequence) == (True, "replaced", 1), forced
    pointer, _ = read_pointer(aws.storage, "iris")
    assert pointer is not None
    assert pointer.version == iris_v1.manifest.version


# --- repairing what was published --------------------------------------------------------------------


def test_sync_deep_repairs_bytes_replaced_at_the_same_size(
    three_clouds: list[Target], iris_v1: TrainResult, moto_server, gcs_emulator, azurite
) -> None:
    """The issue's example: verify --deep saw it, sync skipped everything, --force did not help."""
    emulators = {"aws": moto_server, "gcp": gcs_emulator, "azure": azurite}
    sync_artifact(iris_v1.path, three_clouds)
    key = f"models/iris/{iris_v1.manifest.version}/model.onnx"
    original = (iris_v1.path / "model.onnx").read_bytes()
    for t in three_clouds:
        emulators[t.name].tamper(bucket_of(t), key, bytes([original[0] ^ 0xFF]) + original[1:])
    shallow = sync_artifact(iris_v1.path, three_clouds)
    assert all(r.uploaded == [] for r in shallow), "metadata still claims the old sha256"
    deep = sync_artifact(iris_v1.path, three_clouds, deep=True)
    for r in deep:
        assert r.ok, r.error
        assert r.uploaded == ["model.onnx", "manifest.json"]
        assert r.pointer == "refreshed", "endpoints that refused the damaged version read it again"
    checked, _ = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked), [str(d) for c in checked for d in c.drift]


def test_plain_sync_checks_each_objects_stored_sha256(
    three_clouds: list[Target], iris_v1: TrainResult
) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    key = f"models/iris/{iris_v1.manifest.version}/report.md"
    size = (iris_v1.path / "report.md").stat().st_size
    other = b"x" * size  # same size, honest metadata of its own
    for t in three_clouds:
        t.storage.put(key, other, sha256=hashlib.sha256(other).hexdigest())
    results = sync_artifact(iris_v1.path, three_clouds)
    for r in results:
        assert r.ok, r.error
        assert r.uploaded == ["report.md", "manifest.json"]
    checked, _ = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked)


def test_sync_removes_objects_the_manifest_does_not_list(
    three_clouds: list[Target], iris_v1: TrainResult
) -> None:
    """verify reported objects added to a published version (a writer's, or a file deleted from the
    artifact since) as drift, and no sync could remove them: nothing in the product repaired it."""
    sync_artifact(iris_v1.path, three_clouds)
    prefix = f"models/iris/{iris_v1.manifest.version}/"
    for t in three_clouds:
        for key in ("evil.onnx", "model.onnx/shadow", "deep/er/x"):
            t.storage.put(prefix + key, b"x", sha256=hashlib.sha256(b"x").hexdigest())
    checked, _ = verify_targets(three_clouds, "iris")
    assert all(len(c.drift) == 3 for c in checked), [str(d) for c in checked for d in c.drift]
    dry = sync_artifact(iris_v1.path, three_clouds, dry_run=True)
    assert all(r.removed == ["deep/er/x", "evil.onnx", "model.onnx/shadow"] for r in dry)
    assert all(len(list(t.storage.list(prefix))) == len(iris_v1.manifest.files) + 4 for t in three_clouds)
    results = sync_artifact(iris_v1.path, three_clouds)
    for r in results:
        assert r.ok, r.error
        assert r.removed == ["deep/er/x", "evil.onnx", "model.onnx/shadow"]
        assert r.uploaded == []
    checked, _ = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked), [str(d) for c in checked for d in c.drift]


def test_sync_rewrites_a_deleted_commit_marker(three_clouds: list[Target], iris_v1: TrainResult) -> None:
    sync_artifact(iris_v1.path, three_clouds)
    key = f"models/iris/{iris_v1.manifest.version}/manifest.json"
    for t in three_clouds:
        t.storage.delete(key)
    for r in sync_artifact(iris_v1.path, three_clouds):
        assert r.ok, r.error
        assert r.uploaded == ["manifest.json"]
    checked, _ = verify_targets(three_clouds, "iris", deep=True)
    assert all(c.ok for c in checked)
