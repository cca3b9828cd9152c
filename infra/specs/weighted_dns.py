"""The dns stack's configuration: the weighted record in front of the clouds (``ml-orchestrator:dns``).

:class:`DnsSpec` names the Route 53 zone and record, the initial weight of each cloud (the
orchestrator owns the weights afterwards), the cloud stacks to read each endpoint from, the
record's TTL and the health checks' timing. :class:`infra.components.weighted_dns.WeightedDns`
deploys it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from infra.specs.fields import ConfigError, ConfigObject, check_cloud, check_hostname, check_zone_id
from orchestrator.core.contract import CLOUDS, CloudName

__all__ = ["DnsSpec", "parse_dns_spec"]

# Route 53 weights are 0..255; a record set's TTL should stay low enough that a weight change
# reaches clients within the orchestrator's failover budget (AWS advises <= 60 s with health checks).
MAX_WEIGHT: Final = 255
MAX_DNS_TTL: Final = 300
DEFAULT_DNS_TTL: Final = 10  # the orchestrator's route53 backend default (DEFAULT_TTL)
# Route 53 health checks probe every 30 s (standard) or 10 s (fast, billed extra).
HEALTH_CHECK_INTERVALS: Final = (10, 30)


@dataclass(frozen=True)
class DnsSpec:
    """The weighted record in front of the clouds (``ml-orchestrator:dns``)."""

    zone_id: str
    record_name: str  # without the trailing dot
    weights: Mapping[CloudName, int]  # initial weights; the orchestrator owns them afterwards
    stacks: Mapping[CloudName, str]  # fully qualified stack names for StackReference
    ttl: int = DEFAULT_DNS_TTL
    request_interval_s: int = 30
    failure_threshold: int = 3

    @property
    def clouds(self) -> tuple[CloudName, ...]:
        """The clouds with a weight, in the order of ``CLOUDS``."""
        return tuple(sorted(self.weights, key=CLOUDS.index))


def parse_dns_spec(raw: object, *, namespace: str, organization: str, project: str) -> DnsSpec:
    """The dns stack from ``ml-orchestrator:dns``; a cloud's stack defaults to
    ``organization/project/<cloud>``. Pure; raises ConfigError naming the key."""
    obj = ConfigObject(f"{namespace}:dns", raw)
    zone_id = check_zone_id(obj.sub("zone_id"), obj.required("zone_id"))
    record_name = check_hostname(obj.sub("record_name"), obj.required("record_name"))
    ttl = obj.integer("ttl", DEFAULT_DNS_TTL, low=1, high=MAX_DNS_TTL)
    raw_weights = obj.mapping("weights")
    raw_stacks = obj.mapping("stacks")
    interval = obj.integer("request_interval_s", 30, low=10, high=30)
    failure_threshold = obj.integer("failure_threshold", 3, low=1, high=10)
    obj.done()
    if interval not in HEALTH_CHECK_INTERVALS:
        raise ConfigError(obj.sub("request_interval_s"), f"Route 53 probes every 10 or 30 s, not {interval}")
    if not raw_weights:
        raise ConfigError(
            obj.sub("weights"), "must give an initial weight to at least one of aws, gcp, azure"
        )
    weights: dict[CloudName, int] = {}
    for name, weight in raw_weights.items():
        key = f"{obj.sub('weights')}.{name}"
        cloud = check_cloud(key, name)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ConfigError(key, f"must be an integer from 0 to {MAX_WEIGHT}, not {weight!r}")
        weights[cloud] = weight
    if not any(weights.values()):
        # Route 53 answers all-zero groups with every record alike: never the intent.
        raise ConfigError(obj.sub("weights"), "cannot all be 0")
    stacks: dict[CloudName, str] = {}
    for cloud in weights:
        name = raw_stacks.get(cloud) or f"{organization}/{project}/{cloud}"
        if not isinstance(name, str) or name.count("/") != 2:
            raise ConfigError(f"{obj.sub('stacks')}.{cloud}", f"{name!r} is not ORGANIZATION/PROJECT/STACK")
        stacks[cloud] = name
    for listed in raw_stacks:
        if listed not in weights:
            raise ConfigError(f"{obj.sub('stacks')}.{listed}", "names a stack without a weight")
    return DnsSpec(
        zone_id=zone_id,
        record_name=record_name,
        weights=MappingProxyType(weights),
        stacks=MappingProxyType(stacks),
        ttl=ttl,
        request_interval_s=interval,
        failure_threshold=failure_threshold,
    )
