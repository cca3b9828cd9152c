"""From Pulumi stack outputs to ``orchestrator.yaml``: the one contract between infra/ and the rest.

Every endpoint stack exports the same keys (``cloud``, ``region``, ``endpoint_url``, ``model_uri``,
``registry``, ``image``, ``cpu``, ``memory``, ``min_instances``, ``max_instances``, and also
``concurrency`` and the bucket's ``storage_settings``); the DNS stack exports the Route 53
``record_name`` and ``zone_id``, the records' ``ttl`` and the ``health_check_ids`` it attached
(by cloud). ``pulumi stack output --json`` prints them; this module turns one file per stack into
a configuration, validated like a hand-written one. No Pulumi CLI is needed to run it.

Two keys say how the probes reach the endpoints (:mod:`orchestrator.control.config_access`):
``endpoint.public_name`` is the stacks' ``public_name`` (the same in every stack, and the dns
stack's ``record_name``); ``auth.token`` is ``env://API_TOKEN`` when the stacks store an API token
(``api_token_secrets``): each cloud's health job gets the token from its own cloud's secret store
in that variable, by reference. An operator running the commands elsewhere sets ``API_TOKEN``, or
points ``auth.token`` at a store (``aws-sm://<the aws stack's api_token_secrets.current>``).

Stack outputs may hold secrets, so no error message here quotes an output's value: it names the
file and the output key, and says what was expected. ``pulumi stack output --json`` prints a
secret output as ``"[secret]"`` unless given ``--show-secrets``; such a masked value is refused
(naming the output), never written to the configuration as if it were the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from orchestrator.control.config import Config, check_together, validate
from orchestrator.core.artifact.layout import ModelLocation, parse_model_uri
from orchestrator.core.contract import CLOUDS, ENV_API_TOKEN, POINTER
from orchestrator.core.errors import ConfigError

__all__ = ["ENDPOINT_KEYS", "MASKED_SECRET", "TOKEN_REFERENCE", "config_from_outputs", "load_outputs"]

# The outputs an endpoint stack must have (infra/__main__.py exports them all); the others are optional.
ENDPOINT_KEYS = ("cloud", "region", "endpoint_url", "model_uri", "cpu", "memory", "max_instances")
DNS_KEYS = ("zone_id", "record_name")
# What `pulumi stack output --json` prints for a secret output without --show-secrets.
MASKED_SECRET = "[secret]"  # noqa: S105  # a placeholder Pulumi prints, not a password
# A stack's outputs are a few kilobytes; anything far larger is not `pulumi stack output --json`.
MAX_OUTPUTS_BYTES = 1024 * 1024
# The capacity written for each vCPU of each instance, a deliberately conservative planning figure:
# benchmarks/serving.py measures ~7,600 one-row requests/s on one idle core, but real requests
# arrive through TLS and a load balancer and the SLO needs headroom. Measure, then set capacity_rps.
REQUESTS_PER_INSTANCE = 100.0
# Where every cloud's health job finds the API token: the stacks put it there by reference to the
# job's own cloud's secret store (infra/components/*_health_job.py).
TOKEN_REFERENCE = f"env://{ENV_API_TOKEN}"


def load_outputs(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    """Read ``pulumi stack output --json`` files; each must hold a JSON object. A masked secret
    anywhere in one is a ConfigError naming the file and the output."""
    outputs = []
    for path in paths:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_OUTPUTS_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(f"{path}: stack outputs file not found") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the stack outputs: {exc.strerror or exc}") from None
        if len(raw) > MAX_OUTPUTS_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_OUTPUTS_BYTES // 1024} KiB: not stack outputs")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = str(exc).split(":")[0]  # orjson's reason, without the document it quotes
            raise ConfigError(f"{path}: not JSON (expected `pulumi stack output --json`): {reason}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of stack outputs")
        for key, value in _leaves(data):
            if value == MASKED_SECRET:
                raise ConfigError(
                    f"{path}: stack output {key!r} is a masked secret ({MASKED_SECRET!r}); run "
                    "`pulumi stack output --json --show-secrets` to export its value"
                )
        outputs.append((str(path), data))
    return outputs


def config_from_outputs(outputs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The configuration (as a plain mapping, ready for YAML) the stacks describe; ConfigError
    names the file and the output key at fault, never the value."""
    clouds: dict[str, Any] = {}
    origins: dict[str, tuple[str, str]] = {}  # configuration key -> (file, output key)
    names: set[str] = set()
    routing: dict[str, Any] = {"backend": "file"}
    for source, out in outputs:
        if "zone_id" in out or "record_name" in out:
            routing = _dns(source, out, origins)
            continue
        cloud, settings = _endpoint(source, out, origins, names)
        if cloud in clouds:
            raise ConfigError(f"{source}: a second stack for cloud {cloud!r}")
        clouds[cloud] = settings
    if not clouds:
        raise ConfigError(
            "no endpoint stack among the outputs (each must export 'cloud', 'endpoint_url', ...)"
        )
    models = {n.partition("/")[0] for n in names}
    channels = {n.partition("/")[2] for n in names}
    if len(models) != 1:
        raise ConfigError(f"the stacks serve different models: {', '.join(sorted(models))}")
    if len(channels) != 1:
        raise ConfigError(f"the stacks' endpoints follow different channels: {', '.join(sorted(channels))}")
    model, channel = models.pop(), channels.pop()
    config: dict[str, Any] = {"model": {"name": model}, "clouds": clouds, "routing": routing}
    if channel != POINTER:
        config["model"]["channel"] = channel
    public_name = _public_name(outputs, routing)
    if public_name is not None:
        config["endpoint"] = {"public_name": public_name}
        origins["endpoint.public_name"] = next(
            (source, "public_name") for source, out in outputs if out.get("public_name")
        )
    if any(_has_token(source, out) for source, out in outputs if "cloud" in out):
        config["auth"] = {"token": TOKEN_REFERENCE}
    _validate(config, outputs, origins)
    return config


def _public_name(outputs: Sequence[tuple[str, Mapping[str, Any]]], routing: Mapping[str, Any]) -> str | None:
    """The stacks' one public name (None when no stack has one); ConfigError naming the file of a
    stack whose name differs from another's, or from the dns stack's record name."""
    named: dict[str, str] = {}  # file -> the name it exports, lower case, no trailing dot
    for source, out in outputs:
        if "cloud" not in out:
            continue
        value = out.get("public_name")
        if value is not None:
            named[source] = _text(value, source, "public_name").strip().lower().removesuffix(".")
    if not named:
        return None
    first_source, name = next(iter(named.items()))
    for source, other in named.items():
        if other != name:
            raise ConfigError(
                f"{source}: stack output 'public_name' differs from {first_source}'s: every cloud "
                "must answer the same public name"
            )
    record = (routing.get("route53") or {}).get("record_name")
    if isinstance(record, str) and record.strip().lower().removesuffix(".") != name:
        raise ConfigError(
            f"stack output 'record_name' (dns) is not the cloud stacks' public_name ({first_source})"
        )
    return name


def _has_token(source: str, out: Mapping[str, Any]) -> bool:
    secrets = out.get("api_token_secrets")
    if secrets in (None, {}):
        return False
    if not isinstance(secrets, dict):
        raise ConfigError(f"{source}: stack output 'api_token_secrets' is not an object (slot to reference)")
    return bool(secrets.get("current"))


def _endpoint(
    source: str, out: Mapping[str, Any], origins: dict[str, tuple[str, str]], names: set[str]
) -> tuple[str, dict[str, Any]]:
    for key in ENDPOINT_KEYS:
        _need(out, key, source)
    cloud = out["cloud"]
    if cloud not in CLOUDS:
        raise ConfigError(f"{source}: stack output 'cloud' is not one of {', '.join(CLOUDS)}")
    location = _follows_latest(out["model_uri"], source)
    names.add(f"{location.name}/{location.ref}")  # the model and the channel its endpoint follows
    vcpu = _number(out["cpu"], source, "cpu")
    instances = _number(out["max_instances"], source, "max_instances")
    prefix = f"clouds.{cloud}"
    for key, output in (
        ("endpoint", "endpoint_url"), ("storage", "model_uri"), ("region", "region"),
        ("capacity_rps", "max_instances"), ("size.vcpu", "cpu"), ("size.memory_gib", "memory"),
        ("size.concurrency", "concurrency"), ("registry", "registry"),
        ("storage_settings", "storage_settings"),
    ):  # fmt: skip
        origins[f"{prefix}.{key}"] = (source, output)
    origins["model.name"] = origins["model.channel"] = (source, "model_uri")
    config: dict[str, Any] = {
        "endpoint": _text(out["endpoint_url"], source, "endpoint_url").rstrip("/"),
        "storage": location.root,
        "region": _text(out["region"], source, "region"),
        "capacity_rps": REQUESTS_PER_INSTANCE * vcpu * instances,
        "size": {"vcpu": vcpu, "memory_gib": _gib(out["memory"], source)},
    }
    if out.get("registry"):
        config["registry"] = _text(out["registry"], source, "registry")
    if out.get("concurrency"):
        concurrency = _number(out["concurrency"], source, "concurrency")
        if concurrency != int(concurrency):
            raise ConfigError(f"{source}: stack output 'concurrency' is not a whole number")
        config["size"]["concurrency"] = int(concurrency)
    settings = out.get("storage_settings")
    if settings is not None:
        if not isinstance(settings, dict):
            raise ConfigError(f"{source}: stack output 'storage_settings' is not an object")
        config["storage_settings"] = {
            str(k): _text(v, source, f"storage_settings.{k}") for k, v in settings.items()
        }
    return str(cloud), config


def _dns(source: str, out: Mapping[str, Any], origins: dict[str, tuple[str, str]]) -> dict[str, Any]:
    zone, record = (_text(_need(out, key, source), source, key) for key in DNS_KEYS)
    route53: dict[str, Any] = {"hosted_zone_id": zone, "record_name": record}
    if out.get("ttl") is not None:
        ttl = _number(out["ttl"], source, "ttl")
        if ttl != int(ttl):
            raise ConfigError(f"{source}: stack output 'ttl' is not a whole number of seconds")
        route53["ttl"] = int(ttl)
    checks = out.get("health_check_ids")
    if checks:
        if not isinstance(checks, dict):
            raise ConfigError(f"{source}: stack output 'health_check_ids' is not an object (cloud to id)")
        route53["health_check_ids"] = {
            str(cloud): _text(check, source, f"health_check_ids.{cloud}") for cloud, check in checks.items()
        }
    for key, output in (
        ("hosted_zone_id", "zone_id"), ("record_name", "record_name"), ("ttl", "ttl"),
        ("health_check_ids", "health_check_ids"),
    ):  # fmt: skip
        origins[f"routing.route53.{key}"] = (source, output)
    return {"backend": "route53", "route53": route53}


def _validate(
    config: dict[str, Any],
    outputs: Sequence[tuple[str, Mapping[str, Any]]],
    origins: Mapping[str, tuple[str, str]],
) -> None:
    """The same validation as a hand-written file (each key, then what keys check together), with
    errors pointed back at the outputs and every output value taken out of the message (but the
    cloud keys, which are the vocabulary of the messages, not values anyone keeps secret)."""
    try:
        check_together(validate(Config, config, "stack outputs"), "stack outputs")
    except ConfigError as exc:
        message = str(exc).removeprefix("stack outputs: ")
        key, _, detail = message.partition(": ")
        values = {v for _, out in outputs for _, v in _leaves(out) if isinstance(v, str)} - set(CLOUDS)
        for value in sorted(values, key=len, reverse=True):
            if len(value) >= 3:
                detail = detail.replace(value, "<value>")
        origin = next(
            (
                origins[k]
                for k in sorted(origins, key=len, reverse=True)
                if key == k or key.startswith(f"{k}.")
            ),
            None,
        )
        if origin is None:
            raise ConfigError(f"the stack outputs make an invalid configuration: {key}: {detail}") from None
        source, output = origin
        raise ConfigError(f"{source}: stack output {output!r} is not valid ({key}): {detail}") from None


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _need(out: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in out or out[key] in (None, ""):
        raise ConfigError(f"{source}: stack output {key!r} is missing")
    return out[key]


def _text(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: stack output {key!r} is not a string")
    return value


def _number(value: Any, source: str, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{source}: stack output {key!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: stack output {key!r} is not a number") from None
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{source}: stack output {key!r} is not a finite positive number")
    return number


def _gib(value: Any, source: str) -> float:
    """Memory as GiB from the forms clouds use: 2, "2Gi", "2048Mi", "2GB", "2 GiB", 2048 (MiB)."""
    text = str(value).strip().replace(" ", "") if isinstance(value, str | int | float) else ""
    match = re.fullmatch(
        r"(?P<n>\d{1,9}(\.\d{1,9})?)(?P<unit>Gi|GiB|G|GB|Mi|MiB|M|MB)?", text, flags=re.IGNORECASE
    )
    if isinstance(value, bool) or not match:
        raise ConfigError(f"{source}: stack output 'memory' is not a size such as 2Gi or 2048Mi")
    n = float(match["n"])
    unit = (match["unit"] or "").lower()
    if unit.startswith("m") or (not unit and n > 64):  # a bare number above 64 can only be MiB
        return n / 1024
    return n


def _follows_latest(uri: object, source: str) -> ModelLocation:
    """The endpoint's model URI, which must name a channel's pointer: <bucket URI>/models/<name>/LATEST
    or another channel (the grammar of :func:`~orchestrator.core.artifact.layout.parse_model_uri`)."""
    try:
        location = parse_model_uri(uri, where="model_uri") if isinstance(uri, str) else None
    except ConfigError:
        location = None
    if location is None or not location.follows_latest:
        raise ConfigError(
            f"{source}: stack output 'model_uri' is not <bucket URI>/models/<name>/LATEST "
            "(or another channel)"
        )
    return location
