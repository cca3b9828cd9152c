"""The model artifact: a directory of files plus ``manifest.json`` that names each file's sha256.

An artifact is the unit that is trained, gated, synced to every cloud and served. Nothing in it is
trusted until :func:`verify_artifact` has hashed every file the manifest lists: the endpoint, the
sync and the verify command all go through it. The manifest itself is not listed in ``files`` (it
cannot hold its own hash); its sha256 is what the ``LATEST`` pointer carries.

Layout::

    <artifact>/
        manifest.json        this module's :class:`Manifest`
        model.onnx           the served model (ONNX: loading it executes no code)
        report.md            the human report, with the PNG plots beside it
        confusion_matrix.png
        roc_ovr.png
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ArtifactError

__all__ = [
    "MANIFEST_NAME",
    "MODEL_FILE",
    "Canary",
    "Features",
    "FileEntry",
    "Manifest",
    "hash_file",
    "iter_files",
    "load_manifest",
    "parse_manifest",
    "verify_artifact",
    "verify_bytes",
    "write_artifact",
]

MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.onnx"
SCHEMA_VERSION = 1
# 1 MiB reads keep hashing at disk speed without holding large files in memory.
_CHUNK = 1 << 20


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Frozen):
    path: str = Field(description="path relative to the artifact directory, '/'-separated")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Features(_Frozen):
    names: list[str]
    count: int = Field(ge=1)


class Canary(_Frozen):
    """Rows with the outputs the model must give for them; health checks replay them."""

    instances: list[list[float]]
    labels: list[str]
    probabilities: list[list[float]]


class Manifest(BaseModel):
    """Everything needed to verify, serve and audit one model version."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    version: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    created_at: str
    format: Literal["onnx"] = "onnx"
    model_file: str = MODEL_FILE
    framework: dict[str, str]
    features: Features
    classes: list[str]
    files: list[FileEntry]
    split: dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any]
    export: dict[str, Any] = Field(default_factory=dict)
    canary: Canary

    def file(self, path: str) -> FileEntry:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise ArtifactError(f"manifest lists no file {path!r}", path=path)

    def public(self) -> dict[str, Any]:
        """The part served on ``GET /v1/model``: all but the per-row test indices."""
        data = self.model_dump(mode="json")
        data["split"] = {k: v for k, v in self.split.items() if k != "test_indices"}
        return data

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def hash_file(path: Path) -> tuple[str, int]:
    """Return (sha256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under root except the manifest, in a stable order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_NAME:
            yield path


def parse_manifest(raw: bytes, *, source: str) -> Manifest:
    try:
        return Manifest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{source}: manifest is not valid JSON ({exc})", path=MANIFEST_NAME) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(
            f"{source}: manifest field {where!r}: {first['msg']}", path=MANIFEST_NAME
        ) from exc


def load_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{path}: no manifest (is this an artifact directory?)", path=MANIFEST_NAME
        ) from exc
    return parse_manifest(raw, source=str(path))


def verify_bytes(entry: FileEntry, data: bytes, *, source: str) -> None:
    """Check bytes already in memory against their manifest entry."""
    if len(data) != entry.size:
        raise ArtifactError(
            f"{source}: {entry.path} is {len(data)} bytes, manifest says {entry.size}", path=entry.path
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise ArtifactError(
            f"{source}: {entry.path} sha256 {actual[:12]}… does not match manifest {entry.sha256[:12]}…",
            path=entry.path,
        )


def verify_artifact(root: Path) -> Manifest:
    """Hash every file the manifest lists; raise ArtifactError naming the first one that differs.

    Files present on disk but not in the manifest are ignored: nothing reads them.
    """
    manifest = load_manifest(root)
    if not any(e.path == manifest.model_file for e in manifest.files):
        raise ArtifactError(
            f"{root}: manifest does not list the model file {manifest.model_file!r}", path=manifest.model_file
        )
    for entry in manifest.files:
        path = root / entry.path
        if not path.resolve().is_relative_to(root.resolve()):
            raise ArtifactError(f"{root}: manifest path {entry.path!r} escapes the artifact", path=entry.path)
        if not path.is_file():
            raise ArtifactError(f"{root}: {entry.path} is missing", path=entry.path)
        sha, size = hash_file(path)
        if size != entry.size:
            raise ArtifactError(
                f"{root}: {entry.path} is {size} bytes, manifest says {entry.size}", path=entry.path
            )
        if sha != entry.sha256:
            raise ArtifactError(
                f"{root}: {entry.path} sha256 {sha[:12]}… does not match manifest {entry.sha256[:12]}…",
                path=entry.path,
            )
    return manifest


def write_artifact(staging: Path, manifest_fields: dict[str, Any], out_dir: Path) -> tuple[Path, Manifest]:
    """Hash the files in ``staging``, write the manifest, and move the directory into place atomically.

    ``manifest_fields`` is every Manifest field except ``files``. The artifact lands at
    ``out_dir/<name>/<version>``; if that version already exists it is replaced as a whole, so a
    reader never sees a mix of two trainings.
    """
    files = []
    for path in iter_files(staging):
        sha, size = hash_file(path)
        files.append(FileEntry(path=path.relative_to(staging).as_posix(), sha256=sha, size=size))
    manifest = Manifest.model_validate({**manifest_fields, "files": files})
    (staging / MANIFEST_NAME).write_bytes(manifest.to_json())

    final = out_dir / manifest.name / manifest.version
    final.parent.mkdir(parents=True, exist_ok=True)
    # Rename is atomic within one filesystem; an existing version is moved aside first.
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.old-", dir=final.parent))
        final.replace(old / "a")
    staging.replace(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final, manifest
