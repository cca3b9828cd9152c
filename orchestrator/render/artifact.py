"""What ``train`` and ``package`` print once an artifact is written: JSON for automation, or a
summary for a person followed by the artifact's path, plain and last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.render.output import emit_json

if TYPE_CHECKING:  # the manifest's module loads pydantic: not for `orchestrator --help`
    from orchestrator.core.artifact.manifest import Manifest

__all__ = ["artifact_written"]


def artifact_written(
    path: Path,
    manifest: Manifest,
    *,
    signed: bool,
    json_output: bool,
    summary: Callable[[], None],
    extra: dict[str, Any] | None = None,
) -> None:
    """Report a written artifact. With ``json_output``: one JSON object (path, name, version,
    ``extra``'s keys, metrics, signed). Otherwise ``summary()`` prints for a person, then the
    resolved path alone on the last line, unwrapped, so ``path=$(orchestrator train ... | tail -n1)``
    works."""
    path = path.resolve()
    if json_output:
        emit_json(
            {
                "path": str(path),
                "name": manifest.name,
                "version": manifest.version,
                **(extra or {}),
                "metrics": manifest.metrics,
                "signed": signed,
            }
        )
        return
    summary()
    # print(), not the console: never wrapped, never decorated.
    print(path, flush=True)
