"""Writing an artifact from memory: staged beside its destination, moved into place in one rename.

Shared by ``train`` and ``package``: everything is computed and checked in memory first, so the
only thing that can fail here is the disk. Any error removes the staging directory and the output
directories this write created, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core.artifact.manifest import MODEL_FILE, Manifest
from orchestrator.core.artifact.write import write_artifact

__all__ = ["write_staged"]


def write_staged(
    out: Path,
    fields: dict[str, Any],
    model: bytes,
    *,
    extra: Callable[[Path], None] | None = None,
    signing_key: Path | None = None,
) -> tuple[Path, Manifest]:
    """Write ``model.onnx``, whatever ``extra`` writes (the report) and the manifest built from
    ``fields`` under ``out/<name>/<version>``; signed with ``signing_key`` (an EC private key, PEM)
    before the move, so no unsigned copy of a signed version ever exists."""
    created = _make_dirs(out)
    # Staged inside `out` so the final move is a rename on one filesystem; the dot keeps it out
    # of listings of artifact names.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        # mkdtemp makes the directory private (0700); the artifact is meant to be read by others
        # (a serving user, a sync job), like any directory mkdir would create.
        staging.chmod(0o755)
        (staging / MODEL_FILE).write_bytes(model)
        if extra is not None:
            extra(staging)
        sign = None
        if signing_key is not None:
            from orchestrator.core.artifact.signing import sign_artifact

            key = signing_key

            def sign(root: Path) -> None:
                sign_artifact(root, key)

        return write_artifact(staging, fields, out, sign=sign)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in created:
            _remove_if_empty(directory)
        raise


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created, deepest first (for cleanup on failure)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(directory: Path) -> None:
    # Not empty means something else wrote there meanwhile: leave it.
    with contextlib.suppress(OSError):
        directory.rmdir()
