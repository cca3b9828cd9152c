"""Weighted DNS in front of the clouds: Route 53 health checks and one weighted record per cloud.

:class:`WeightedDns` reads each cloud stack through a ``StackReference`` (its ``endpoint_url``
and ``readiness_path`` outputs) and creates, per cloud:

- a Route 53 health check on that endpoint's host, port and scheme, asking its readiness path;
- one weighted CNAME record: name = the configured record, SetIdentifier = the cloud key
  (``aws``, ``gcp``, ``azure``), value = the endpoint's host, the group's low TTL, the initial
  weight from configuration, the health check attached.

These are exactly the records the orchestrator's ``route53`` backend UPSERTs afterwards (same
name, type, SetIdentifier and TTL): once created, the orchestrator owns the weights, so Pulumi
ignores later weight changes instead of resetting them on the next ``pulumi up``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from infra.specs.weighted_dns import DnsSpec

__all__ = ["Target", "WeightedDns", "parse_target"]


@dataclass(frozen=True)
class Target:
    """Where Route 53 sends a health check and the CNAME points: an endpoint URL's parts."""

    https: bool
    host: str
    port: int


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint_url {url!r} is not an http(s) URL")
    if parts.path not in ("", "/"):
        # DNS can carry only a host: clients must reach every cloud with the same path.
        raise ValueError(f"endpoint_url {url!r} has a path; a weighted record can only name a host")
    https = parts.scheme == "https"
    return Target(https=https, host=parts.hostname, port=parts.port or (443 if https else 80))


class WeightedDns(pulumi.ComponentResource):
    """Health checks and weighted records for the clouds in ``spec.weights``."""

    record_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    health_check_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, spec: DnsSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ml-orchestrator:infra:WeightedDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.health_check_ids = {}
        for cloud in spec.clouds:
            stack = pulumi.StackReference(f"{name}-{cloud}", stack_name=spec.stacks[cloud], opts=child)
            target = stack.require_output("endpoint_url").apply(lambda url: parse_target(str(url)))
            host = target.apply(lambda t: t.host)
            check = aws.route53.HealthCheck(
                f"{name}-{cloud}",
                type=target.apply(lambda t: "HTTPS" if t.https else "HTTP"),
                fqdn=host,
                port=target.apply(lambda t: t.port),
                # The endpoint's own readiness: 200 only while a verified model serves.
                resource_path=stack.require_output("readiness_path").apply(str),
                # Cloud Run and Container Apps pick the certificate and the app by SNI.
                enable_sni=target.apply(lambda t: t.https),
                request_interval=spec.request_interval_s,
                failure_threshold=spec.failure_threshold,
                tags={"Name": f"{spec.record_name} {cloud}"},
                opts=child,
            )
            aws.route53.Record(
                f"{name}-{cloud}",
                zone_id=spec.zone_id,
                name=spec.record_name,
                type="CNAME",
                ttl=spec.ttl,
                set_identifier=cloud,
                weighted_routing_policies=[{"weight": spec.weights[cloud]}],
                records=[host],
                health_check_id=check.id,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The orchestrator moves weights (`route`, `failover`); Pulumi sets them once.
                    ignore_changes=["weightedRoutingPolicies"],
                ),
            )
            self.health_check_ids[cloud] = check.id
        self.record_name = pulumi.Output.from_input(spec.record_name)
        self.zone_id = pulumi.Output.from_input(spec.zone_id)
        self.register_outputs(
            {
                "record_name": self.record_name,
                "zone_id": self.zone_id,
                "health_check_ids": self.health_check_ids,
            }
        )
