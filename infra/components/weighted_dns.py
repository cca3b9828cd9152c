"""Weighted DNS in front of the clouds: Route 53 health checks, one weighted record per cloud, and
the records each cloud needs in the zone to answer the public name.

:class:`WeightedDns` reads each cloud stack through a ``StackReference`` and creates, per cloud:

- the records the cloud stack asks for (its ``dns_records`` output: GCP's load balancer address
  under ``gcp.<public name>`` and its certificate's DNS authorizations, Azure's ``asuid`` domain
  verification and its managed certificate's ``_dnsauth`` token), each only if it lies under the
  public name and is an A, CNAME or TXT record: a cloud stack cannot write elsewhere in the zone;
- a Route 53 HTTPS health check of the public name's path: when the cloud has a fixed entry
  address (``health_check_ip``: GCP's load balancer, Azure's environment), the check connects to
  it and sends the public name as Host and SNI, so a cloud whose ingress does not answer the
  public name is not counted healthy; otherwise (AWS: a load balancer has no fixed address) it
  resolves the entry's own name (``aws.<public name>``), which the same listener rule and
  certificate serve. Route 53 does not validate certificates; the orchestrator's probes do.
- one weighted CNAME record: name = the configured record (the public name), SetIdentifier = the
  cloud key (``aws``, ``gcp``, ``azure``), value = the host of the cloud's ``endpoint_url``, the
  group's low TTL, the initial weight from configuration, the health check attached.

A cloud stack that does not export the same public name as this stack's record (or none) is
refused: a weighted answer pointing at a cloud that cannot serve the name over TLS is the fault
this stack exists to prevent.

The weighted records are exactly those the orchestrator's ``route53`` backend UPSERTs afterwards
(same name, type, SetIdentifier and TTL): once created, the orchestrator owns the weights, so
Pulumi ignores later weight changes instead of resetting them on the next ``pulumi up``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from infra.specs.weighted_dns import DnsSpec

__all__ = ["RECORD_TYPES", "Target", "WeightedDns", "check_records", "parse_target"]

# What a cloud stack may ask for: addresses, aliases and verification texts.
RECORD_TYPES = ("A", "CNAME", "TXT")
# Verification records never change once written; a few minutes of caching is harmless.
VERIFICATION_TTL_S = 300


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


def check_public_name(cloud: str, exported: object, *, record_name: str) -> str:
    """The cloud stack's ``public_name`` output if it is this stack's record; ValueError otherwise."""
    if exported != record_name:
        found = "none" if not exported else repr(exported)
        raise ValueError(
            f"the {cloud} stack answers public name {found}, not {record_name}: set "
            f"ml-orchestrator:endpoint.public_name: {record_name} in Pulumi.{cloud}.yaml and `pulumi up -s "
            f"{cloud}` first (a weighted answer must reach a cloud that serves the name over TLS)"
        )
    return record_name


def check_records(cloud: str, records: object, record_name: str) -> list[dict[str, str]]:
    """The cloud stack's ``dns_records`` output, each checked: a mapping of name, type and
    value, an A, CNAME or TXT record at or under ``record_name``; ValueError naming the cloud."""
    if records is None:
        return []
    if not isinstance(records, Sequence) or isinstance(records, str):
        raise ValueError(f"the {cloud} stack's dns_records output is not a list")
    checked = []
    for record in records:
        if not isinstance(record, Mapping) or not all(
            isinstance(record.get(k), str) for k in ("name", "type", "value")
        ):
            raise ValueError(f"the {cloud} stack's dns_records holds an entry without name, type and value")
        name = str(record["name"]).lower().rstrip(".")
        if name != record_name and not name.endswith(f".{record_name}"):
            raise ValueError(f"the {cloud} stack asks for {name}, outside {record_name}: refused")
        if record["type"] not in RECORD_TYPES:
            raise ValueError(f"the {cloud} stack asks for a {record['type']} record at {name}: refused")
        if not record["value"]:
            raise ValueError(f"the {cloud} stack asks for {name} with no value yet")
        checked.append({"name": name, "type": str(record["type"]), "value": str(record["value"])})
    return checked


class WeightedDns(pulumi.ComponentResource):
    """Records, health checks and weighted records for the clouds in ``spec.weights``."""

    record_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    health_check_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, spec: DnsSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ml-orchestrator:infra:WeightedDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.health_check_ids = {}
        for cloud in spec.clouds:
            stack = pulumi.StackReference(f"{name}-{cloud}", stack_name=spec.stacks[cloud], opts=child)
            public_name = stack.get_output("public_name").apply(
                functools.partial(check_public_name, cloud, record_name=spec.record_name)
            )
            target = pulumi.Output.all(stack.require_output("endpoint_url"), public_name).apply(
                lambda values: parse_target(str(values[0]))
            )
            stack.get_output("dns_records").apply(functools.partial(self._records, name, cloud, spec))
            host = target.apply(lambda t: t.host)
            address = stack.get_output("health_check_ip").apply(lambda ip: str(ip) if ip else None)
            check = aws.route53.HealthCheck(
                f"{name}-{cloud}",
                type=target.apply(lambda t: "HTTPS" if t.https else "HTTP"),
                # With a fixed address: connect there, send the public name (Host and SNI).
                ip_address=address,
                fqdn=pulumi.Output.all(address, host).apply(
                    lambda values: spec.record_name if values[0] else str(values[1])
                ),
                port=target.apply(lambda t: t.port),
                # The endpoint's own readiness: 200 only while a verified model serves.
                resource_path=stack.require_output("readiness_path").apply(str),
                # Cloud Run's load balancer and Container Apps pick the certificate and the app by SNI.
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

    def _records(self, name: str, cloud: str, spec: DnsSpec, requested: object) -> list[Any]:
        """One Route 53 record per requested record (checked by :func:`check_records`); resource
        names follow the record's name and type (not its position), so a record added later
        leaves the others in place."""
        records = check_records(cloud, requested, spec.record_name)
        return [
            aws.route53.Record(
                f"{name}-{cloud}-{record['type'].lower()}-{record['name']}",
                zone_id=spec.zone_id,
                name=record["name"],
                type=record["type"],
                ttl=VERIFICATION_TTL_S,
                records=[record["value"]],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for record in records
        ]
