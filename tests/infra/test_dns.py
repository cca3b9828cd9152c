"""The DNS stack, its StackReferences answered with the three cloud runs' real exports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.components.weighted_dns import parse_target
from tests.infra.harness import ORGANIZATION, PROJECT, StackRun

WEIGHTS = {"aws": 34, "gcp": 33, "azure": 33}  # Pulumi.dns.yaml


def _readiness_path_deployed(run: StackRun) -> Any:
    """The readiness path as the cloud's own resources use it (not as exported)."""
    if run.stack == "aws":
        return run.one("aws:lb/targetGroup:TargetGroup")["healthCheck"]["path"]
    if run.stack == "gcp":
        (container,) = run.one("gcp:cloudrunv2/service:Service")["template"]["containers"]
        return container["startupProbe"]["httpGet"]["path"]
    (container,) = run.one("azure-native:app:ContainerApp")["template"]["containers"]
    return next(p["httpGet"]["path"] for p in container["probes"] if p["type"] == "Readiness")


def test_one_health_check_and_one_weighted_record_per_cloud(
    dns_runs: dict[str, StackRun], cloud_runs: dict[str, StackRun]
) -> None:
    run = dns_runs["dns"].ok()
    references = sorted(r.outputs["name"] for r in run.of_type("pulumi:pulumi:StackReference"))
    assert references == sorted(f"{ORGANIZATION}/{PROJECT}/{cloud}" for cloud in cloud_runs)
    checks = {c.outputs["id"]: c for c in run.of_type("aws:route53/healthCheck:HealthCheck")}
    records = run.of_type("aws:route53/record:Record")
    assert len(checks) == len(records) == 3
    assert sorted(r["setIdentifier"] for r in records) == ["aws", "azure", "gcp"]
    for record in records:
        cloud = record["setIdentifier"]
        endpoint = urlsplit(cloud_runs[cloud].exports["endpoint_url"])
        assert record["zoneId"] == "Z0123456789EXAMPLE"
        assert record["name"] == "model.example.com"
        assert record["type"] == "CNAME"
        assert record["ttl"] == 10  # low, and the orchestrator's route53 backend default
        assert record["weightedRoutingPolicies"] == [{"weight": WEIGHTS[cloud]}]
        # The orchestrator owns the weights after creation: `pulumi up` must not reset them.
        assert record.ignore_changes == ["weightedRoutingPolicies"]
        assert record["records"] == [endpoint.hostname]
        check = checks[record["healthCheckId"]]
        assert check["fqdn"] == endpoint.hostname
        # The health check asks the endpoint's readiness path, as that cloud deployed it.
        assert check["resourcePath"] == cloud_runs[cloud].exports["readiness_path"]
        assert check["resourcePath"] == _readiness_path_deployed(cloud_runs[cloud]) == "/readyz"
        https = endpoint.scheme == "https"
        assert (check["type"], check["port"], check["enableSni"]) == (
            ("HTTPS", 443, True) if https else ("HTTP", 80, False)
        )
        assert (check["requestInterval"], check["failureThreshold"]) == (30, 3)
        assert check["tags"] == {"Name": f"model.example.com {cloud}"}


def test_dns_exports_the_record_and_its_health_checks(dns_runs: dict[str, StackRun]) -> None:
    run = dns_runs["dns"].ok()
    by_cloud = {r["setIdentifier"]: r["healthCheckId"] for r in run.of_type("aws:route53/record:Record")}
    assert run.exports == {
        "record_name": "model.example.com",
        "zone_id": "Z0123456789EXAMPLE",
        "ttl": 10,
        "health_check_ids": by_cloud,
    }


def test_dns_covers_only_the_clouds_with_a_weight(dns_runs: dict[str, StackRun]) -> None:
    run = dns_runs["dns_two_clouds"].ok()
    records = run.of_type("aws:route53/record:Record")
    assert {r["setIdentifier"]: r["weightedRoutingPolicies"] for r in records} == {
        "aws": [{"weight": 70}],
        "gcp": [{"weight": 30}],
    }
    assert len(run.of_type("aws:route53/healthCheck:HealthCheck")) == 2
    assert sorted(run.exports["health_check_ids"]) == ["aws", "gcp"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.a.run.app", (True, "x.a.run.app", 443)),
        ("http://alb-1.us-east-1.elb.amazonaws.com", (False, "alb-1.us-east-1.elb.amazonaws.com", 80)),
        ("https://h.example.com:8443/", (True, "h.example.com", 8443)),
    ],
)
def test_parse_target(url: str, expected: tuple[bool, str, int]) -> None:
    target = parse_target(url)
    assert (target.https, target.host, target.port) == expected


@pytest.mark.parametrize("url", ["ftp://h.example.com", "https://h.example.com/api", "h.example.com"])
def test_parse_target_refuses_what_dns_cannot_carry(url: str) -> None:
    with pytest.raises(ValueError, match="endpoint_url"):
        parse_target(url)
