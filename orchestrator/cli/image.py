"""`orchestrator image build | push`: one image, the same digest in every cloud's registry."""

from __future__ import annotations

import typer

from orchestrator.cli import app

image_app = typer.Typer(
    help="Build the endpoint image and push it to every cloud's registry.", no_args_is_help=True
)
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    tag: str = typer.Option(None, "--tag", help="Image tag (default: ml-endpoint:<version>)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Build serving/Dockerfile with the local Docker engine."""
    from orchestrator.image import build
    from orchestrator.render.output import console, emit_json

    with console.status("docker build (serving/Dockerfile)"):
        built = build(tag)
    if json_out:
        emit_json({"id": built.id, "tag": built.tag, "size_bytes": built.size_bytes})
    else:
        console.print(f"[green]✓[/] built {built.tag} ({built.id[:19]}, {built.size_bytes / 1e6:.0f} MB)")


@image_app.command("push")
def image_push(
    to: list[str] = typer.Option(
        ...,
        "--to",
        help="Clouds (aws,gcp,azure: registries from the config) or CLOUD=REGISTRY/REPO; repeatable.",
    ),
    image: str = typer.Option(None, "--image", help="Local image to push (default: ml-endpoint:<version>)."),
    tag: str = typer.Option(
        None,
        "--tag",
        help="Tag in every registry (default: <version>-<12 hex of the image id>); "
        "never moved to other content.",
    ),
    config: str = typer.Option(None, "--config", help="Configuration file with clouds.<cloud>.registry."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Push the image to each registry and check every registry stored the same digest.

    A tag that already names other content in any registry refuses the push before anything is
    pushed (exit 1); the same image pushed again is left in place and reported.
    """
    from orchestrator import __version__
    from orchestrator.image import DEFAULT_REPOSITORY, push
    from orchestrator.render.output import console, emit_json

    registries = _registries(to, config)
    result = push(image or f"{DEFAULT_REPOSITORY}:{__version__}", registries, tag=tag)
    if json_out:
        emit_json(result.as_dict())
        return
    for cloud, reference in result.references.items():
        there = " (already there)" if cloud in result.already_present else ""
        console.print(f"[green]✓[/] {cloud}: {reference} (tag {result.tag}){there}", soft_wrap=True)
    console.print(
        f"digest {result.digest} (pin it as ml-orchestrator:endpoint.image in each stack)", soft_wrap=True
    )


def _registries(to: list[str], config: str | None) -> dict[str, str]:
    from orchestrator.control.config import load_config
    from orchestrator.control.targets import parse_clouds
    from orchestrator.core.errors import ConfigError

    registries: dict[str, str] = {}
    named: list[str] = []
    for item in to:
        for part in item.split(","):
            cloud, sep, registry = part.strip().partition("=")
            if sep:
                parse_clouds(cloud)
                registries[cloud] = registry
            elif cloud:
                named.append(cloud)
    if named:
        parse_clouds(",".join(named))
        cfg = load_config(config)
        for cloud in named:
            configured = cfg.cloud(cloud).registry
            if not configured:
                raise ConfigError(
                    f"{cfg.source}: clouds.{cloud}.registry is missing (or pass --to {cloud}=REGISTRY)"
                )
            registries[cloud] = configured
    return registries
