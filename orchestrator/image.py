"""Building the endpoint image once and pushing the same bytes to every cloud's registry.

``build`` runs ``serving/Dockerfile`` through the Docker engine (the Docker SDK for Python, so the
engine is found the usual way: ``DOCKER_HOST`` or the local socket). ``push`` tags that one image
for each registry and pushes it; each registry answers with the manifest digest it stored, and the
digests must all be equal: the same image, byte for byte, in every cloud, so each stack can pin the
same ``@sha256:`` reference. A registry that reports a different digest is an error naming it.

Credentials come from each cloud's usual source, through Docker's own configuration
(``~/.docker/config.json`` credential helpers): ``docker-credential-ecr-login`` for ECR,
``gcloud auth configure-docker`` for Artifact Registry, ``az acr login`` for ACR. Nothing here
handles a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.core.errors import ConfigError, OrchestratorError

__all__ = ["BuiltImage", "ImageError", "PushResult", "build", "push"]

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "serving/Dockerfile"
DEFAULT_REPOSITORY = "ml-endpoint"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImageError(OrchestratorError):
    """The Docker engine refused a build or a push; the message quotes it."""


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    size_bytes: int


@dataclass
class PushResult:
    digest: str | None
    references: dict[str, str] = field(default_factory=dict)  # cloud -> registry/repo@sha256:...
    digests: dict[str, str] = field(default_factory=dict)  # cloud -> what that registry reported

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "references": self.references, "digests": self.digests}


def _client() -> Any:
    try:
        import docker
    except ImportError:
        raise ConfigError("the Docker SDK is not installed: pip install 'ml-orchestrator[image]'") from None
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise ImageError(f"no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock): {exc}") from None


def build(
    tag: str | None = None,
    *,
    context: Path = ROOT,
    dockerfile: str = DOCKERFILE,
    on_log: Callable[[str], None] | None = None,
) -> BuiltImage:
    """Build the endpoint image; ``tag`` defaults to ``ml-endpoint:<package version>``."""
    import docker

    client = _client()
    tag = tag or f"{DEFAULT_REPOSITORY}:{__version__}"
    try:
        # network_mode host: the build's pip install reaches the package index the host reaches.
        image, logs = client.images.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs={"VERSION": __version__},
            network_mode="host",
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream", "")) for chunk in list(exc.build_log)[-15:])
        raise ImageError(f"docker build of {dockerfile} failed: {exc.msg}\n{tail}") from None
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build of {dockerfile} failed: {exc}") from None
    if on_log:
        for chunk in logs:
            if text := chunk.get("stream"):
                on_log(str(text))
    return BuiltImage(id=image.id, tag=tag, size_bytes=int(image.attrs.get("Size", 0)))


def push(image: str, registries: Mapping[str, str], *, tag: str = __version__) -> PushResult:
    """Push ``image`` to every registry (cloud -> ``host[:port]/repository``); digests must agree."""
    import docker

    if not registries:
        raise ConfigError(
            "no registry to push to: configure clouds.<cloud>.registry or pass --to CLOUD=REGISTRY"
        )
    client = _client()
    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ImageError(f"no local image {image!r}: run `orchestrator image build` first") from None
    result = PushResult(digest=None)
    for cloud, repository in registries.items():
        local.tag(repository, tag=tag)
        digest = _push_one(client, cloud, repository, tag)
        result.digests[cloud] = digest
        result.references[cloud] = f"{repository}@{digest}"
    distinct = set(result.digests.values())
    if len(distinct) != 1:
        listed = ", ".join(f"{cloud}: {digest}" for cloud, digest in result.digests.items())
        raise ImageError(f"registries stored different digests for the same image ({listed})")
    result.digest = distinct.pop()
    return result


def _push_one(client: Any, cloud: str, repository: str, tag: str) -> str:
    digest = None
    for line in client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise ImageError(f"{cloud}: push to {repository} failed: {line.get('error')}")
        aux = line.get("aux") or {}
        if isinstance(aux, dict) and _DIGEST.fullmatch(str(aux.get("Digest", ""))):
            digest = str(aux["Digest"])
    if digest is None:
        raise ImageError(f"{cloud}: {repository} reported no digest for the push")
    return digest
