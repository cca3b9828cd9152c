"""The DNS stack, its StackReferences answered with the three cloud runs' real exports."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.components.weighted_dns import parse_target
from tests.infra.conftest import PUBLIC_NAME
from tests.infra.harness import ORGANIZATION, PROJECT, StackRun, run_stack

WEIGHTS = {"aws": 34, "gcp": 33, "azure": 33}  # Pulumi.dns.yaml


@pytest.fixture(scope="module")
def refused_runs(cloud_runs: dict[str, StackRun], runs: dict[str, StackRun]) -> dict[str, StackRun]:
    """The dns stack over cloud stacks that do not serve the public name, or ask for too much."""
    exports = {cloud: dict(run.exports) for cloud, run in cloud_runs.items()}
    two = {"ml-orchestrator:dns.weights": {"aws": 50, "gcp": 50}}
    cases = {
        "no_public_name": {**exports, "aws": dict(runs["aws_http"].exports)},
        "other_public_name": {**exports, "gcp": {**exports["gcp"], "public_name": "api.example.org"}},
        "record_outside_the_name": {
            **exports,
            "gcp": {
                **exports["gcp"],
                "dns_records": [{"name": "www.example.com", "type": "A", "value": "1.2.3.4"}],
            },
        },
        "record_of_another_type": {
            **exports,
            "gcp": {
                **exports["gcp"],
                "dns_records": [{"name": f"x.{PUBLIC_NAME}", "type": "NS", "value": "ns.example.org"}],
            },
        },
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_stack, "dns", two, references) for name, references in cases.items()}
        return {name: future.result() for name, future in futures.items()}


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
    records = [r for r in run.of_type("aws:route53/record:Record") if r.get("setIdentifier")]
    assert len(checks) == len(records) == 3
    assert sorted(r["setIdentifier"] for r in records) == ["aws", "azure", "gcp"]
    for record in records:
        cloud = record["setIdentifier"]
        exports = cloud_runs[cloud].exports
        endpoint = urlsplit(exports["endpoint_url"])
        assert record["zoneId"] == "Z0123456789EXAMPLE"
        assert record["name"] == PUBLIC_NAME == exports["public_name"]
        assert record["type"] == "CNAME"
        assert record["ttl"] == 10  # low, and the orchestrator's route53 backend default
        assert record["weightedRoutingPolicies"] == [{"weight": WEIGHTS[cloud]}]
        # The orchestrator owns the weights after creation: `pulumi up` must not reset them.
        assert record.ignore_changes == ["weightedRoutingPolicies"]
        # The public name points at the cloud's entry: aws.<name>, gcp.<name>, the Azure app's own host.
        assert record["records"] == [endpoint.hostname]
        check = checks[record["healthCheckId"]]
        # The health check asks the endpoint's readiness path, as that cloud deployed it.
        assert check["resourcePath"] == exports["readiness_path"]
        assert check["resourcePath"] == _readiness_path_deployed(cloud_runs[cloud]) == "/readyz"
        assert (check["type"], check["port"], check["enableSni"]) == ("HTTPS", 443, True)
        assert (check["requestInterval"], check["failureThreshold"]) == (30, 3)
        assert check["tags"] == {"Name": f"model.example.com {cloud}"}
    by_cloud = {r["setIdentifier"]: checks[r["healthCheckId"]] for r in records}
    # GCP and Azure: Route 53 connects to the entry's fixed address and sends the public name as
    # Host and SNI, so only an ingress that serves the public name passes.
    for cloud in ("gcp", "azure"):
        check = by_cloud[cloud]
        assert check["ipAddress"] == cloud_runs[cloud].exports["health_check_ip"], cloud
        assert check["fqdn"] == PUBLIC_NAME, cloud
    gcp_address = cloud_runs["gcp"].one("gcp:compute/globalAddress:GlobalAddress").outputs["address"]
    azure_environment = cloud_runs["azure"].one("azure-native:app:ManagedEnvironment")
    assert by_cloud["gcp"]["ipAddress"] == gcp_address
    assert by_cloud["azure"]["ipAddress"] == azure_environment.outputs["staticIp"]
    # AWS: an ALB has no fixed address; the check resolves aws.<public name>, which the listener
    # rule that serves the public name (and the same certificate) serves too.
    assert by_cloud["aws"].get("ipAddress") is None
    assert by_cloud["aws"]["fqdn"] == f"aws.{PUBLIC_NAME}"
    rule = cloud_runs["aws"].one("aws:lb/listenerRule:ListenerRule")
    assert by_cloud["aws"]["fqdn"] in rule["conditions"][0]["hostHeader"]["values"]


def test_the_records_each_cloud_asks_for_are_written_in_the_zone(
    dns_runs: dict[str, StackRun], cloud_runs: dict[str, StackRun]
) -> None:
    run = dns_runs["dns"].ok()
    written = {
        (r["name"], r["type"]): r
        for r in run.of_type("aws:route53/record:Record")
        if not r.get("setIdentifier")
    }
    asked = {
        (record["name"], record["type"]): record["value"]
        for cloud in ("aws", "gcp", "azure")
        for record in cloud_runs[cloud].exports["dns_records"]
    }
    assert {name: r["records"] for name, r in written.items()} == {
        name: [value] for name, value in asked.items()
    }
    assert all(r["zoneId"] == "Z0123456789EXAMPLE" for r in written.values())
    # GCP: its load balancer's address under gcp.<name> (the weighted record's target), and one
    # DNS authorization per certificate name; Azure: the domain verification id and the managed
    # certificate's TXT validation token.
    gcp_address = cloud_runs["gcp"].one("gcp:compute/globalAddress:GlobalAddress").outputs["address"]
    assert asked[(f"gcp.{PUBLIC_NAME}", "A")] == gcp_address
    authorizations = cloud_runs["gcp"].of_type("gcp:certificatemanager/dnsAuthorization:DnsAuthorization")
    for authorization in authorizations:
        (record,) = authorization.outputs["dnsResourceRecords"]
        assert asked[(record["name"].rstrip("."), record["type"])] == record["data"].rstrip(".")
    assert sorted(a["domain"] for a in authorizations) == sorted([PUBLIC_NAME, f"gcp.{PUBLIC_NAME}"])
    verification = next(
        c for c in cloud_runs["azure"].calls if c["token"] == "azure-native:app:getCustomDomainVerificationId"
    )
    assert verification is not None
    assert (f"asuid.{PUBLIC_NAME}", "TXT") in asked
    certificate = cloud_runs["azure"].one("azure-native:app:ManagedCertificate")
    assert asked[(f"_dnsauth.{PUBLIC_NAME}", "TXT")] == certificate.outputs["properties"]["validationToken"]
    # A record's resource follows its name and type, not its position in the list.
    assert all(r.name.endswith(f"-{r['type'].lower()}-{r['name']}") for r in written.values())


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no_public_name", "answers public name none, not model.example.com"),
        ("other_public_name", "answers public name 'api.example.org', not model.example.com"),
        ("record_outside_the_name", "asks for www.example.com, outside model.example.com: refused"),
        ("record_of_another_type", "asks for a NS record at x.model.example.com: refused"),
    ],
)
def test_a_cloud_that_cannot_serve_the_public_name_is_refused(
    refused_runs: dict[str, StackRun], case: str, reason: str
) -> None:
    run = refused_runs[case]
    assert run.error is not None, case
    assert reason in run.error
    assert not [r for r in run.of_type("aws:route53/record:Record") if r["name"] == "www.example.com"]


def test_dns_exports_the_record_and_its_health_checks(dns_runs: dict[str, StackRun]) -> None:
    run = dns_runs["dns"].ok()
    by_cloud = {
        r["setIdentifier"]: r["healthCheckId"]
        for r in run.of_type("aws:route53/record:Record")
        if r.get("setIdentifier")
    }
    assert run.exports == {
        "record_name": "model.example.com",
        "zone_id": "Z0123456789EXAMPLE",
        "ttl": 10,
        "health_check_ids": by_cloud,
    }


def test_dns_covers_only_the_clouds_with_a_weight(dns_runs: dict[str, StackRun]) -> None:
    run = dns_runs["dns_two_clouds"].ok()
    records = [r for r in run.of_type("aws:route53/record:Record") if r.get("setIdentifier")]
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
