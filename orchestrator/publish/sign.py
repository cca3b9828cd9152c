"""Signing a local artifact for publication: only one that matches its own manifest."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import Manifest
from orchestrator.core.artifact.signing import sign_artifact

__all__ = ["sign_verified"]


def sign_verified(root: Path, private_key: Path) -> tuple[Manifest, Path]:
    """Verify the artifact directory ``root`` against its manifest (ArtifactError naming the first
    file that differs), then sign it with the EC private key in ``private_key``
    (:func:`~orchestrator.core.artifact.signing.sign_artifact`): its manifest and ``model.sig``."""
    manifest = verify_artifact(root)  # never sign what does not match its own manifest
    return manifest, sign_artifact(root, private_key)
