"""Building the endpoint image once and pushing the same bytes to every cloud's registry.

``build`` runs ``serving/Dockerfile`` through the Docker engine (the Docker SDK for Python, so the
engine is found the usual way: ``DOCKER_HOST`` or the local socket). ``push`` tags that one image
for each registry and pushes it; each registry answers with the manifest digest it stored, and the
digests must all be equal: the same image, byte for byte, in every cloud, so each stack can pin the
same ``@sha256:`` reference. A registry that reports a different digest is an error naming it.

Tags are never reused for other content (the stacks create their repositories with immutable
tags, and a tag that moved would make two deployments of "the same" tag differ):

- the default tag is the image's content: ``<package version>-<12 hex digits of the image id>``
  (the id is the digest of the image's configuration, which names every layer), so a new build
  gets a new tag and pushing the same image again is a no-op that reports the same digest;
- a tag given with ``--tag`` is checked the same way: before anything is pushed, each registry is
  asked what the tag names; a tag that already names other content in any registry refuses the
  whole push (nothing is pushed anywhere), naming the registry; one that names this very image
  (the engine recorded that digest when it pushed it) is left as it is.

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

__all__ = ["BuiltImage", "ImageError", "PushResult", "build", "check_tag", "content_tag", "push"]

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "serving/Dockerfile"
DEFAULT_REPOSITORY = "ml-endpoint"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The OCI distribution specification's tag grammar (at most 128 characters).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Hex digits of the image id in the default tag: 48 bits, as git's short hashes, make a collision
# within one repository's history negligible, and the reuse check refuses one anyway.
CONTENT_TAG_HEX = 12


class ImageError(OrchestratorError):
    """The Docker engine refused a build or a push; the message quotes it."""


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    size_bytes: int


@dataclass
class PushResult:
    """What a push left in the registries: the one ``digest``, the ``tag`` pushed, and per cloud
    the pinned reference, the digest that registry reported, and whether it was already there."""

    digest: str | None
    tag: str = ""
    references: dict[str, str] = field(default_factory=dict)  # cloud -> registry/repo@sha256:...
    digests: dict[str, str] = field(default_factory=dict)  # cloud -> what that registry reported
    already_present: list[str] = field(default_factory=list)  # clouds that held this image's tag

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "tag": self.tag,
            "references": self.references,
            "digests": self.digests,
            "already_present": self.already_present,
        }


def content_tag(image_id: str) -> str:
    """The default tag of the image whose id is ``image_id`` (``sha256:<hex>``):
    ``<package version>-<first 12 hex digits>``."""
    return f"{__version__}-{image_id.removeprefix('sha256:')[:CONTENT_TAG_HEX]}"


def check_tag(tag: str) -> str:
    """``tag`` if a registry accepts it and it can stay immutable; ConfigError otherwise (the OCI
    grammar, and ``latest``, which by convention moves)."""
    if not _TAG.fullmatch(tag):
        raise ConfigError(
            "--tag: a tag is 1 to 128 of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    if tag == "latest":
        raise ConfigError("--tag latest: the registries' tags are immutable; tag by content or by release")
    return tag


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


def push(image: str, registries: Mapping[str, str], *, tag: str | None = None) -> PushResult:
    """Push ``image`` to every registry (cloud -> ``host[:port]/repository``) under ``tag``
    (default: :func:`content_tag`); the digests must agree. ImageError, before anything is
    pushed, when the tag already names other content in a registry (see the module docstring)."""
    import docker

    if not registries:
        raise ConfigError(
            "no registry to push to: configure clouds.<cloud>.registry or pass --to CLOUD=REGISTRY"
        )
    if tag is not None:
        check_tag(tag)
    client = _client()
    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ImageError(f"no local image {image!r}: run `orchestrator image build` first") from None
    tag = tag or content_tag(str(local.id))
    result = PushResult(digest=None, tag=tag)
    known = set(local.attrs.get("RepoDigests") or ())  # repository@digest this engine pushed
    present: dict[str, str] = {}
    for cloud, repository in registries.items():  # every registry checked before any push
        existing = _remote_digest(client, cloud, repository, tag)
        if existing is None:
            continue
        if f"{repository}@{existing}" not in known:
            raise ImageError(
                f"{cloud}: {repository}:{tag} already names other content ({existing}); tags are "
                "immutable: push under another --tag (nothing was pushed)"
            )
        present[cloud] = existing
    for cloud, repository in registries.items():
        if cloud in present:
            digest = present[cloud]
            result.already_present.append(cloud)
        else:
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


def _remote_digest(client: Any, cloud: str, repository: str, tag: str) -> str | None:
    """The manifest digest ``repository:tag`` names in its registry, or None if it names none."""
    import docker

    try:
        data = client.images.get_registry_data(f"{repository}:{tag}")
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        text = str(exc).lower()
        if "manifest unknown" in text or "not found" in text:
            return None
        raise ImageError(f"{cloud}: cannot ask {repository} what {tag} names: {exc}") from None
    digest = str(data.id)
    return digest if _DIGEST.fullmatch(digest) else None


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
