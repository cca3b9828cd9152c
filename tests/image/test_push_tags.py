"""`orchestrator image push` tags by content and never moves a tag to other content, against
real registries on loopback and a real Docker engine (small images imported from a tar, so that
the cases do not need the endpoint image built)."""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from orchestrator import __version__
from orchestrator.core.errors import ConfigError
from orchestrator.image import ImageError, check_tag, content_tag, push
from tests.image.conftest import _engine

CLOUDS = ("aws", "gcp", "azure")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = _engine()
    yield client
    client.close()


@pytest.fixture
def make_image(engine: Any) -> Iterator[Callable[[], str]]:
    """Import a one-file image of unique content; returns its local name. Removed afterwards."""
    names: list[str] = []

    def make() -> str:
        name = f"push-test:{uuid.uuid4().hex[:12]}"
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            payload = uuid.uuid4().bytes
            info = tarfile.TarInfo("content")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        repository, tag = name.split(":")
        engine.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag)
        names.append(name)
        return name

    yield make
    for name in names:
        with contextlib.suppress(Exception):  # cleaning up: an image already gone is fine
            engine.images.remove(name, force=True)


def _registries(registry: str, clouds: tuple[str, ...] = CLOUDS) -> dict[str, str]:
    return {cloud: f"{registry}/{cloud}/ml-endpoint" for cloud in clouds}


def _tag_digest(registry: str, cloud: str, tag: str) -> str | None:
    answer = httpx.get(
        f"http://{registry}/v2/{cloud}/ml-endpoint/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    return answer.headers["Docker-Content-Digest"] if answer.status_code == 200 else None


def test_the_default_tag_is_the_content_and_one_digest_lands_in_every_registry(
    engine: Any, make_image: Callable[[], str], registry: str
) -> None:
    image = make_image()
    result = push(image, _registries(registry))
    image_id = engine.images.get(image).id
    assert result.tag == content_tag(image_id) == f"{__version__}-{image_id[7:19]}"
    assert result.digest is not None
    for cloud in CLOUDS:
        assert _tag_digest(registry, cloud, result.tag) == result.digest
        assert result.references[cloud] == f"{registry}/{cloud}/ml-endpoint@{result.digest}"
    assert result.already_present == []


def test_pushing_the_same_image_again_changes_nothing(make_image: Callable[[], str], registry: str) -> None:
    image = make_image()
    first = push(image, _registries(registry))
    again = push(image, _registries(registry))
    assert again.tag == first.tag
    assert again.digest == first.digest
    assert again.already_present == list(CLOUDS)


def test_two_builds_get_two_tags(make_image: Callable[[], str], registry: str) -> None:
    first = push(make_image(), _registries(registry))
    second = push(make_image(), _registries(registry))
    assert first.tag != second.tag
    assert first.digest != second.digest
    assert _tag_digest(registry, "aws", first.tag) == first.digest  # the first tag did not move


def test_a_given_tag_never_moves_to_other_content(make_image: Callable[[], str], registry: str) -> None:
    first = push(make_image(), _registries(registry), tag="release-1")
    with pytest.raises(ImageError, match=r"aws: .*:release-1 already names other content") as caught:
        push(make_image(), _registries(registry), tag="release-1")
    assert "nothing was pushed" in str(caught.value)
    for cloud in CLOUDS:
        assert _tag_digest(registry, cloud, "release-1") == first.digest


def test_a_conflict_in_one_registry_pushes_nothing_anywhere(
    make_image: Callable[[], str], registry: str
) -> None:
    push(make_image(), _registries(registry, ("azure",)), tag="release-2")  # only Azure holds it
    with pytest.raises(ImageError, match=r"azure: .*:release-2 already names other content"):
        push(make_image(), _registries(registry), tag="release-2")
    assert _tag_digest(registry, "aws", "release-2") is None  # nothing half-published
    assert _tag_digest(registry, "gcp", "release-2") is None


def test_a_registry_that_holds_the_tag_for_this_image_is_completed(
    make_image: Callable[[], str], registry: str
) -> None:
    # A push interrupted after the first registry: running it again finishes the others.
    image = make_image()
    partial = push(image, _registries(registry, ("aws",)), tag="release-3")
    result = push(image, _registries(registry), tag="release-3")
    assert result.already_present == ["aws"]
    assert result.digest == partial.digest
    assert {_tag_digest(registry, cloud, "release-3") for cloud in CLOUDS} == {partial.digest}


@pytest.mark.parametrize("tag", ["latest", "", ".hidden", "-dash", "a b", "a/b", "x" * 129, "tag:1"])
def test_tags_that_are_invalid_or_move_by_convention_are_refused(tag: str) -> None:
    with pytest.raises(ConfigError, match="--tag"):
        check_tag(tag)


def test_a_refused_tag_is_refused_before_the_engine_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ConfigError, match="--tag latest"):
        push("any", {"aws": "127.0.0.1:1/x"}, tag="latest")
