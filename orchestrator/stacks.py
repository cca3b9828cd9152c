"""From Pulumi stack outputs to ``orchestrator.yaml``: the one contract between infra/ and the rest.

Every endpoint stack exports the same keys (``cloud``, ``region``, ``endpoint_url``, ``model_uri``,
``registry``, ``image``, ``cpu``, ``memory``, ``min_instances``, ``max_instances``, and also
``concurrency`` and the bucket's ``storage_settings``); the DNS stack exports the Route 53
``record_name`` and ``zone_id``. ``pulumi stack output --json`` prints them; this
module turns one file per stack into a configuration, validated like a hand-written one. No Pulumi
CLI is needed to run it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from orchestrator.config import Config
from orchestrator.errors import ConfigError
from orchestrator.types import CLOUDS

__all__ = ["ENDPOINT_KEYS", "config_from_outputs", "load_outputs"]

ENDPOINT_KEYS = ("cloud", "region", "endpoint_url", "model_uri", "cpu", "memory", "max_instances")
# A model URI names the registry's pointer: <bucket URI>/models/<name>/LATEST.
_MODEL_URI = re.compile(r"^(?P<root>(s3|gs|az)://.+?)/models/(?P<name>[^/]+)/LATEST$")
# The capacity written for each vCPU of each instance, a deliberately conservative planning figure:
# benchmarks/serving.py measures ~7,600 one-row requests/s on one idle core, but real requests
# arrive through TLS and a load balancer and the SLO needs headroom. Measure, then set capacity_rps.
REQUESTS_PER_INSTANCE = 100.0


def load_outputs(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    """Read ``pulumi stack output --json`` files; each must hold a JSON object."""
    outputs = []
    for path in paths:
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{path}: stack outputs file not found") from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not JSON (expected `pulumi stack output --json`): {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of stack outputs")
        outputs.append((str(path), data))
    return outputs


def config_from_outputs(outputs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The configuration (as a plain mapping, ready for YAML) the stacks describe."""
    clouds: dict[str, Any] = {}
    names: set[str] = set()
    routing: dict[str, Any] = {"backend": "file"}
    for source, out in outputs:
        if "zone_id" in out or "record_name" in out:
            zone, record = _need(out, "zone_id", source), _need(out, "record_name", source)
            routing = {"backend": "route53", "route53": {"hosted_zone_id": zone, "record_name": record}}
            continue
        for key in ENDPOINT_KEYS:
            _need(out, key, source)
        cloud = str(out["cloud"])
        if cloud not in CLOUDS:
            raise ConfigError(f"{source}: output 'cloud' is {cloud!r}; expected one of {', '.join(CLOUDS)}")
        if cloud in clouds:
            raise ConfigError(f"{source}: a second stack for cloud {cloud!r}")
        match = _MODEL_URI.match(str(out["model_uri"]))
        if not match:
            raise ConfigError(
                f"{source}: output 'model_uri' {out['model_uri']!r} is not <bucket URI>/models/<name>/LATEST"
            )
        names.add(match["name"])
        vcpu = _number(out["cpu"], source, "cpu")
        instances = _number(out["max_instances"], source, "max_instances")
        clouds[cloud] = {
            "endpoint": str(out["endpoint_url"]).rstrip("/"),
            "storage": match["root"],
            "region": str(out["region"]),
            "capacity_rps": REQUESTS_PER_INSTANCE * vcpu * instances,
            "size": {"vcpu": vcpu, "memory_gib": _gib(out["memory"], source)},
        }
        if out.get("registry"):
            clouds[cloud]["registry"] = str(out["registry"])
        if out.get("concurrency"):
            clouds[cloud]["size"]["concurrency"] = int(_number(out["concurrency"], source, "concurrency"))
        if isinstance(out.get("storage_settings"), dict):
            clouds[cloud]["storage_settings"] = {k: str(v) for k, v in out["storage_settings"].items()}
    if not clouds:
        raise ConfigError(
            "no endpoint stack among the outputs (each must export 'cloud', 'endpoint_url', ...)"
        )
    if len(names) != 1:
        raise ConfigError(f"the stacks serve different models: {', '.join(sorted(names))}")
    config = {"model": {"name": names.pop()}, "clouds": clouds, "routing": routing}
    Config.model_validate(config)  # the same validation as a hand-written file
    return config


def _need(out: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in out or out[key] in (None, ""):
        raise ConfigError(f"{source}: stack output {key!r} is missing")
    return out[key]


def _number(value: Any, source: str, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: stack output {key!r} is {value!r}, not a number") from None


def _gib(value: Any, source: str) -> float:
    """Memory as GiB from the forms clouds use: 2, "2Gi", "2048Mi", "2GB", "2 GiB", 2048 (MiB)."""
    text = str(value).strip().replace(" ", "")
    match = re.fullmatch(r"(?P<n>\d+(\.\d+)?)(?P<unit>Gi|GiB|G|GB|Mi|MiB|M|MB)?", text, flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"{source}: stack output 'memory' is {value!r}; expected e.g. 2Gi or 2048Mi")
    n = float(match["n"])
    unit = (match["unit"] or "").lower()
    if unit.startswith("m") or (not unit and n > 64):  # a bare number above 64 can only be MiB
        return n / 1024
    return n
