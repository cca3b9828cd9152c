"""The model artifact's manifest: a directory of files plus ``manifest.json`` that names each file's sha256.

An artifact is the unit that is trained, gated, synced to every cloud and served. Nothing in it is
trusted until :func:`~orchestrator.core.artifact.integrity.verify_artifact` has hashed every file
the manifest lists: the endpoint, the sync and the verify command all go through it. The manifest
itself is not listed in ``files`` (it cannot hold its own hash); its sha256 is what the ``LATEST``
pointer carries. This module owns the manifest's schema and its limits, and the canary's tolerance.

Layout::

    <artifact>/
        manifest.json        this module's :class:`Manifest`
        model.onnx           the served model (ONNX: loading it executes no code)
        report.md            the human report, with the PNG plots beside it
        confusion_matrix.png roc_ovr.png precision_recall.png reliability.png
        permutation_importance.png (coefficients.png partial_dependence.png: train's only)

Beyond the schema's fields, ``train`` and ``package`` write ``interpretation`` and, with
``--against``, ``gate`` (the champion–challenger comparison: ``gate.against.version`` is what
``sync`` checks against the version it replaces); readers ignore what they do not know.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.core.artifact.profile import ReferenceProfile
from orchestrator.core.errors import ArtifactError
from orchestrator.core.names import NAME_PATTERN

__all__ = [
    "CANARY_TOLERANCE",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "MODEL_FILE",
    "RESERVED_NAMES",
    "SCHEMA_VERSION",
    "SIGNATURE_NAME",
    "Canary",
    "Column",
    "Features",
    "FileEntry",
    "Manifest",
    "check_entry_path",
    "load_manifest",
    "parse_manifest",
    "profile_keys",
]

MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.onnx"
# The OpenSSF model signature (orchestrator.core.artifact.signing): it signs every file, the
# manifest included, so the manifest cannot list it.
SIGNATURE_NAME = "model.sig"
# Names a manifest entry may not take: the manifest itself and the signature.
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
# 2 (issue 15): features describe their columns (kind, categories, ONNX input) and the input
# layout; canary rows of a "columns" model are objects keyed by column. Version 1 manifests (no
# columns) read as an all-numeric "matrix" model, exactly what they were.
SCHEMA_VERSION = 2
# A manifest is read whole into memory before anything else is trusted. Ours are about 80 kB
# (digits, with 450 test indices, 10x10 confusion matrices, per-class reliability bins and the
# interpretation); 4 MiB is fifty times that and still bounds what a hostile one can make the
# endpoint parse.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Bounds on what one manifest may describe: far above any artifact train writes (5 files, a few
# rows of canary), low enough that a hostile manifest cannot make a reload download or replay much.
MAX_FILES = 1000
MAX_CANARY_ROWS = 100
MAX_CLASSES = 10_000
MAX_FEATURES = 100_000
# Categories recorded per categorical column (what the endpoint counts unknown values against):
# one-hot encoding beyond this many is not a model this project trains or packages sensibly.
MAX_CATEGORIES = 10_000
# A feature or category name: one line of at most this many characters (a label's bound too).
MAX_NAME = 256
# A path segment: a letter, digit or '_' first (so no '.', '..', hidden or reserved '.~' names),
# then letters, digits, '.', '_', '+', '-'; 8 levels deep. At most 200 characters: a download is
# written beside its file as '.<name>.<8 random>.part', which must still fit a file name (255).
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")
_MAX_DEPTH = 8
_MAX_PATH = 1024
# The canary's probabilities must be reproduced this closely, by the endpoint when it loads a model
# and by every health probe. The exported model runs in float64 end to end, so honest differences
# are ~1e-15 (batching changes the summation order: ~1e-16); 1e-6 leaves room for another CPU's
# rounding and still catches any model that is not the one the manifest describes.
CANARY_TOLERANCE = 1e-6


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def check_entry_path(path: str) -> str:
    """``path`` if it is a safe relative file path inside an artifact, else ValueError saying why.

    Refused: absolute paths, empty, ``.`` or ``..`` segments (``x//y``, ``./x``, ``a/../b``), hidden
    or reserved segments, backslashes, NUL and any character outside the segment grammar, more than
    8 levels, more than 1024 characters, and the manifest's and signature's own names.
    """
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH:
        raise ValueError(f"path {path!r} must be 1 to {_MAX_PATH} characters")
    segments = path.split("/")
    if len(segments) > _MAX_DEPTH:
        raise ValueError(f"path {path!r} is more than {_MAX_DEPTH} levels deep")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"path {path!r}: segment {segment!r} is not a plain file name "
                "(letters, digits, '.', '_', '+', '-'; not starting with '.' or '-'; no empty segment)"
            )
    if path in RESERVED_NAMES:
        raise ValueError(f"path {path!r} is reserved: the manifest cannot list itself or the signature")
    return path


class FileEntry(_Frozen):
    """One file of an artifact: its path (see :func:`check_entry_path`), sha256 (hex) and size (bytes)."""

    path: str = Field(description="path relative to the artifact directory, '/'-separated")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        return check_entry_path(value)


ColumnKind = Literal["numeric", "categorical"]
Layout = Literal["matrix", "columns"]


class Column(_Frozen):
    """One input column of the model, in the order of ``Features.names``.

    ``numeric`` columns take numbers (float64; missing = NaN, imputed inside the graph),
    ``categorical`` columns take text (missing = the empty string; a value outside ``categories``
    is an unknown category, which the graph's one-hot encoder ignores and the endpoint counts).
    ``input`` is the ONNX graph input that receives the column in the ``columns`` layout (the name
    sanitised to a valid ONNX name), None in the ``matrix`` layout.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME)
    kind: ColumnKind = "numeric"
    input: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
    categories: list[str] = Field(default_factory=list, max_length=MAX_CATEGORIES)

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.kind == "numeric" and self.categories:
            raise ValueError(f"column {self.name!r} is numeric but lists categories")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"column {self.name!r}: categories must be distinct")
        return self


class Features(_Frozen):
    """The model's input: ``count`` features per row, named (in order) or not (``names`` empty).

    ``layout`` is how the ONNX graph takes them: ``matrix`` (one float64 input ``input`` of shape
    ``[N, count]``: every column numeric, the only layout of schema 1) or ``columns`` (one input per
    column, ``[N, 1]``, float64 for numeric and string for categorical columns, named by
    ``columns[i].input``). ``columns`` is empty only for a schema 1 manifest (all numeric).
    """

    names: list[str] = Field(max_length=MAX_FEATURES)
    count: int = Field(ge=1, le=MAX_FEATURES)
    layout: Layout = "matrix"
    columns: list[Column] = Field(default_factory=list, max_length=MAX_FEATURES)

    @model_validator(mode="after")
    def _consistent(self) -> Features:
        if self.names and len(self.names) != self.count:
            raise ValueError(f"{len(self.names)} feature names for count {self.count}")
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be distinct")
        if not self.columns:
            if self.layout == "columns":
                raise ValueError("the columns layout needs features.columns")
            return self
        if [c.name for c in self.columns] != self.names:
            raise ValueError("features.columns must name the features in the order of features.names")
        if self.layout == "matrix":
            if any(c.kind != "numeric" or c.input is not None for c in self.columns):
                raise ValueError("the matrix layout takes numeric columns only, without per-column inputs")
        else:
            inputs = [c.input for c in self.columns]
            if None in inputs or len(set(inputs)) != len(inputs):
                raise ValueError("the columns layout needs one distinct ONNX input per column")
        return self

    @property
    def kinds(self) -> list[ColumnKind]:
        """Each feature's kind, in order (all numeric for a schema 1 manifest)."""
        return [c.kind for c in self.columns] if self.columns else ["numeric"] * self.count


def _finite(rows: list[list[float]], what: str) -> None:
    for i, row in enumerate(rows):
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{what} row {i} holds a value that is not a finite number")


class Canary(_Frozen):
    """Rows with the outputs the model must give for them; health checks replay them.

    Never empty, one label and one probability row per instance, probabilities finite. An instance
    is a row of ``features.count`` finite numbers in the ``matrix`` layout, and an object keyed by
    every column name in the ``columns`` layout (numbers for numeric columns, text for categorical
    ones, null for a missing value): what a client of the endpoint sends. :class:`Manifest`, which
    knows the layout, the columns and the classes, checks the instances' shape and the labels.
    """

    instances: list[Any] = Field(min_length=1, max_length=MAX_CANARY_ROWS)
    labels: list[str]
    probabilities: list[list[float]]

    @model_validator(mode="after")
    def _shape(self) -> Canary:
        n = len(self.instances)
        if len(self.labels) != n or len(self.probabilities) != n:
            raise ValueError(
                f"{n} instances, {len(self.labels)} labels and {len(self.probabilities)} probability "
                "rows: one of each per row"
            )
        _finite(self.probabilities, "probabilities")
        return self


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_instances(instances: list[Any], features: Features) -> None:
    """ValueError naming the first canary row that is not what a client would send."""
    if features.layout == "matrix":
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != features.count:
                raise ValueError(f"canary: every instance must have {features.count} features")
            if not all(_is_number(v) for v in row):
                raise ValueError(f"canary: instances row {i} holds a value that is not a finite number")
        return
    names = set(features.names)
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or set(row) != names:
            raise ValueError(f"canary: instance {i} must be an object keyed by exactly the feature names")
        for column in features.columns:
            value = row[column.name]
            ok = _is_number(value) if column.kind == "numeric" else isinstance(value, str)
            if value is not None and not ok:
                raise ValueError(
                    f"canary: instance {i} column {column.name!r} must be "
                    f"{'a finite number' if column.kind == 'numeric' else 'text'} or null"
                )


def profile_keys(features: Features) -> list[str]:
    """The reference profile's feature keys, in order: the feature names, else ``"0"``, ``"1"``, ..."""
    return list(features.names) if features.names else [str(i) for i in range(features.count)]


def _check_profile(profile: ReferenceProfile, features: Features, classes: list[str]) -> None:
    """ValueError unless ``profile`` describes exactly these features (each of its kind) and classes."""
    keys = profile_keys(features)
    if set(profile.features) != set(keys):  # a JSON object: manifest.json is written with keys sorted
        missing = sorted(set(keys) - set(profile.features))[:3]
        extra = sorted(set(profile.features) - set(keys))[:3]
        raise ValueError(
            "reference_profile.features must describe exactly the features "
            f"(missing {missing}, unknown {extra})"
        )
    for key, kind in zip(keys, features.kinds, strict=True):
        if profile.features[key].kind != kind:
            raise ValueError(
                f"reference_profile.features[{key!r}] is {profile.features[key].kind}, not {kind}"
            )
    if len(profile.prediction.frequencies) != len(classes):
        raise ValueError(
            f"reference_profile.prediction: {len(profile.prediction.frequencies)} frequencies for "
            f"{len(classes)} classes"
        )


class Manifest(BaseModel):
    """Everything needed to verify, serve and audit one model version."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1, 2] = 2
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    created_at: str
    format: Literal["onnx"] = "onnx"
    model_file: str = MODEL_FILE
    framework: dict[str, str]
    features: Features
    classes: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    files: list[FileEntry] = Field(min_length=1, max_length=MAX_FILES)
    split: dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any]
    export: dict[str, Any] = Field(default_factory=dict)
    canary: Canary
    # The drift monitor's reference (orchestrator.core.artifact.profile); None in artifacts made
    # before it, which are served without a reference.
    reference_profile: ReferenceProfile | None = None

    @field_validator("model_file")
    @classmethod
    def _model_path(cls, value: str) -> str:
        return check_entry_path(value)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        if any(not c or len(c) > 256 for c in value):
            raise ValueError("every class must be 1 to 256 characters")
        if len(set(value)) != len(value):
            raise ValueError("classes must be distinct")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        seen: set[str] = set()
        for entry in self.files:
            key = entry.path.casefold()  # two names one case-insensitive filesystem would merge
            if key in seen:
                raise ValueError(f"files: {entry.path!r} is listed twice")
            seen.add(key)
        for entry in self.files:
            parts = entry.path.casefold().split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in seen:
                    raise ValueError(f"files: {entry.path!r} lies under another listed file")
        if self.model_file.casefold() not in seen:
            raise ValueError(f"files does not list the model file {self.model_file!r}")
        canary, classes = self.canary, set(self.classes)
        if self.schema_version == 1 and (self.features.columns or self.features.layout != "matrix"):
            raise ValueError("schema_version 1 describes no feature columns: write schema_version 2")
        _check_instances(canary.instances, self.features)
        if any(len(row) != len(self.classes) for row in canary.probabilities):
            raise ValueError(f"canary: every probability row must have {len(self.classes)} values")
        if unknown := sorted(set(canary.labels) - classes):
            raise ValueError(f"canary: labels {unknown[:5]} are not classes")
        if len(set(canary.labels)) < 2:
            raise ValueError(
                "canary: its labels must cover at least two classes (a constant model would pass one)"
            )
        if self.reference_profile is not None:
            _check_profile(self.reference_profile, self.features, self.classes)
        return self

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``; ArtifactError if the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise ArtifactError(f"manifest lists no file {path!r}", path=path)

    def public(self) -> dict[str, Any]:
        """The part served on ``GET /v1/model``: all but the per-row test indices and the reference
        profile (the training data's deciles are not for anyone who asks; ``GET /v1/model/drift``
        serves the comparison)."""
        data = self.model_dump(mode="json", exclude={"reference_profile"})
        data["split"] = {k: v for k, v in self.split.items() if k != "test_indices"}
        return data

    def published_digests(self, manifest_sha256: str) -> dict[str, str]:
        """What is published, and what a signature must cover exactly: path → sha256 (hex) of the
        manifest itself (``manifest_sha256``, of its bytes) and of every file it lists."""
        return {MANIFEST_NAME: manifest_sha256} | {entry.path: entry.sha256 for entry in self.files}

    def to_json(self) -> bytes:
        """The manifest as written to ``manifest.json``: indented, keys sorted (stable bytes)."""
        # An artifact without a profile is written as before this field existed (no null key).
        data = self.model_dump(
            mode="json", exclude={"reference_profile"} if self.reference_profile is None else None
        )
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def parse_manifest(raw: bytes, *, source: str) -> Manifest:
    """Parse and validate a manifest; ArtifactError naming ``source`` and the field at fault.

    Refused before parsing: more than :data:`MAX_MANIFEST_BYTES`. Every other rule is the
    :class:`Manifest` model's (names, file paths, classes, canary).
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ArtifactError(
            f"{source}: manifest is {len(raw)} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
            path=MANIFEST_NAME,
        )
    try:
        return Manifest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{source}: manifest is not valid JSON ({exc})", path=MANIFEST_NAME) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"manifest field {where!r}" if where else "manifest"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ArtifactError(f"{source}: {field}: {message}", path=MANIFEST_NAME) from exc


def load_manifest(root: Path) -> Manifest:
    """Read and validate ``root/manifest.json``; ArtifactError naming it if it is missing, larger
    than :data:`MAX_MANIFEST_BYTES` or invalid (:func:`parse_manifest`)."""
    path = root / MANIFEST_NAME
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ArtifactError(
                f"{path}: manifest is {path.stat().st_size} bytes, more than the {MAX_MANIFEST_BYTES} "
                "accepted",
                path=MANIFEST_NAME,
            )
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{path}: no manifest (is this an artifact directory?)", path=MANIFEST_NAME
        ) from exc
    return parse_manifest(raw, source=str(path))
