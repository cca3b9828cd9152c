"""Writing an artifact: hash the staged files, write the manifest, move the directory into place.

Training is the only writer; the layout it produces is :mod:`orchestrator.core.artifact.manifest`'s.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core.artifact.integrity import hash_file, iter_files
from orchestrator.core.artifact.manifest import MANIFEST_NAME, FileEntry, Manifest

__all__ = ["write_artifact"]


def write_artifact(
    staging: Path,
    manifest_fields: dict[str, Any],
    out_dir: Path,
    *,
    sign: Callable[[Path], None] | None = None,
) -> tuple[Path, Manifest]:
    """Hash the files in ``staging``, write the manifest, and move the directory into place atomically.

    ``sign`` (e.g. :func:`orchestrator.core.artifact.signing.sign_artifact` with a key) is called
    on the staging directory once the manifest is written, before the move.

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
    if sign is not None:
        sign(staging)

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
