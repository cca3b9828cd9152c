"""The public name over TLS, per cloud: the ingress accepts the public host with a certificate for
it, and the entry the dns stack points at is that ingress. (AWS's listener, certificate and
validation are in test_stacks.py; the dns stack's records and health checks in test_dns.py.)

What could break: a certificate that does not cover the public name, validation that depends on
where the weighted name points, a Cloud Run service reachable around the load balancer, an Azure
binding that names a certificate other than the one requested, an entry URL that is not the
ingress that carries the name.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.components.weighted_dns import check_public_name, check_records
from tests.infra.conftest import ENDPOINT_COMPONENTS, PUBLIC_NAME
from tests.infra.harness import StackRun

GCP_NAME = f"gcp.{PUBLIC_NAME}"


def _gcp(runs: dict[str, StackRun]) -> StackRun:
    return runs["gcp"].ok().within(ENDPOINT_COMPONENTS["gcp"])


def test_gcp_load_balancer_serves_the_public_name_with_a_dns_validated_certificate(
    runs: dict[str, StackRun],
) -> None:
    run = _gcp(runs)
    authorizations = {
        a["domain"]: a for a in run.of_type("gcp:certificatemanager/dnsAuthorization:DnsAuthorization")
    }
    assert set(authorizations) == {PUBLIC_NAME, GCP_NAME}
    certificate = run.one("gcp:certificatemanager/certificate:Certificate")
    assert certificate["managed"] == {
        "domains": [PUBLIC_NAME, GCP_NAME],
        # DNS authorization: issuance does not depend on where the weighted name points.
        "dnsAuthorizations": [
            authorizations[PUBLIC_NAME].outputs["id"],
            authorizations[GCP_NAME].outputs["id"],
        ],
    }
    certificate_map = run.one("gcp:certificatemanager/certificateMap:CertificateMap")
    entries = run.of_type("gcp:certificatemanager/certificateMapEntry:CertificateMapEntry")
    assert sorted(e["hostname"] for e in entries) == sorted([PUBLIC_NAME, GCP_NAME])
    assert all(e["map"] == certificate_map.outputs["name"] for e in entries)
    assert all(e["certificates"] == [certificate.outputs["id"]] for e in entries)
    proxy = run.one("gcp:compute/targetHttpsProxy:TargetHttpsProxy")
    assert proxy["certificateMap"] == f"//certificatemanager.googleapis.com/{certificate_map.outputs['id']}"
    assert {e.urn for e in entries} <= set(proxy.depends_on)
    policy = run.one("gcp:compute/sSLPolicy:SSLPolicy")
    assert (policy["minTlsVersion"], policy["profile"]) == ("TLS_1_2", "MODERN")
    assert proxy["sslPolicy"] == policy.outputs["id"]
    # The URL map sends everything to the backend, whose only backend is the Cloud Run service.
    url_maps = {m.name: m for m in run.of_type("gcp:compute/uRLMap:URLMap")}
    backend = run.one("gcp:compute/backendService:BackendService")
    assert proxy["urlMap"] == url_maps["ml-endpoint-urls"].outputs["id"]
    assert url_maps["ml-endpoint-urls"]["defaultService"] == backend.outputs["id"]
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend["logConfig"] == {"enable": True, "sampleRate": 1.0}
    neg = run.one("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup")
    service = run.one("gcp:cloudrunv2/service:Service")
    assert backend["backends"] == [{"group": neg.outputs["id"]}]
    assert (neg["networkEndpointType"], neg["region"]) == ("SERVERLESS", "us-central1")
    assert neg["cloudRun"] == {"service": service["name"]}
    # Only through the load balancer: run.app refuses outside traffic.
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    # 443 to the proxy, 80 to a redirect to HTTPS, both on the one static address.
    address = run.one("gcp:compute/globalAddress:GlobalAddress")
    rules = {r["portRange"]: r for r in run.of_type("gcp:compute/globalForwardingRule:GlobalForwardingRule")}
    assert set(rules) == {"443", "80"}
    assert all(r["ipAddress"] == address.outputs["id"] for r in rules.values())
    assert rules["443"]["target"] == proxy.outputs["id"]
    http_proxy = run.one("gcp:compute/targetHttpProxy:TargetHttpProxy")
    assert rules["80"]["target"] == http_proxy.outputs["id"]
    assert http_proxy["urlMap"] == url_maps["ml-endpoint-redirect"].outputs["id"]
    assert url_maps["ml-endpoint-redirect"]["defaultUrlRedirect"]["httpsRedirect"] is True
    # The entry: gcp.<name>, whose A record (written by the dns stack) is the static address.
    exports = runs["gcp"].exports
    assert exports["endpoint_url"] == f"https://{GCP_NAME}"
    assert exports["health_check_ip"] == address.outputs["address"]
    assert {"name": GCP_NAME, "type": "A", "value": address.outputs["address"]} in exports["dns_records"]


def test_gcp_without_public_name_keeps_run_app(runs: dict[str, StackRun]) -> None:
    run = runs["gcp_job"].ok().within(ENDPOINT_COMPONENTS["gcp"])
    assert not [r for r in run.resources if r.type.startswith(("gcp:compute/", "gcp:certificatemanager/"))]
    service = run.one("gcp:cloudrunv2/service:Service")
    assert runs["gcp_job"].exports["endpoint_url"] == service.outputs["uri"]
    assert any("no public name" in m for m in runs["gcp_job"].warnings())


def _custom_domains(run: StackRun) -> Any:
    app = run.within(ENDPOINT_COMPONENTS["azure"]).one("azure-native:app:ContainerApp")
    return app["configuration"]["ingress"]["customDomains"]


def test_azure_adds_the_public_name_then_binds_its_managed_certificate(runs: dict[str, StackRun]) -> None:
    first = runs["azure"].ok()
    endpoint = first.within(ENDPOINT_COMPONENTS["azure"])
    app = endpoint.one("azure-native:app:ContainerApp")
    environment = endpoint.one("azure-native:app:ManagedEnvironment")
    # First step: the name on the app, unbound; the certificate requested after the app carries it.
    assert _custom_domains(first) == [{"name": PUBLIC_NAME, "bindingType": "Disabled"}]
    certificate = endpoint.one("azure-native:app:ManagedCertificate")
    assert certificate["properties"] == {"subjectName": PUBLIC_NAME, "domainControlValidation": "TXT"}
    assert certificate["environmentName"] == environment.outputs["name"]
    assert app.urn in certificate.depends_on
    assert any("certificate_bound: true" in m for m in first.warnings())
    # Second step: bound with SNI to exactly that certificate.
    bound = runs["azure_signed"].ok()
    bound_certificate = bound.within(ENDPOINT_COMPONENTS["azure"]).one("azure-native:app:ManagedCertificate")
    assert _custom_domains(bound) == [
        {"name": PUBLIC_NAME, "bindingType": "SniEnabled", "certificateId": bound_certificate.outputs["id"]}
    ]
    assert not any("certificate_bound" in m for m in bound.warnings())
    # The records the dns stack writes: the subscription's verification id and the token.
    records = {(r["name"], r["type"]): r["value"] for r in first.exports["dns_records"]}
    assert set(records) == {(f"asuid.{PUBLIC_NAME}", "TXT"), (f"_dnsauth.{PUBLIC_NAME}", "TXT")}
    assert records[(f"_dnsauth.{PUBLIC_NAME}", "TXT")] == certificate.outputs["properties"]["validationToken"]
    # The entry is the app's own host (the public name's CNAME target, no intermediate name), at
    # the environment's static address (the health check's).
    fqdn = app.outputs["configuration"]["ingress"]["fqdn"]
    assert app["containerAppName"] == "ml-endpoint"
    assert first.exports["endpoint_url"] == f"https://{fqdn}"
    assert first.exports["health_check_ip"] == environment.outputs["staticIp"]


def test_azure_first_up_asks_for_the_verification_record_before_any_app(runs: dict[str, StackRun]) -> None:
    run = runs["azure_first_up"].ok()
    assert run.exports["dns_records"] == [
        {"name": f"asuid.{PUBLIC_NAME}", "type": "TXT", "value": run.exports["dns_records"][0]["value"]}
    ]
    assert run.exports["dns_records"][0]["value"]
    environment = run.one("azure-native:app:ManagedEnvironment")
    assert run.exports["endpoint_url"] == f"https://ml-endpoint.{environment.outputs['defaultDomain']}"


# --- the dns stack's checks, directly ---------------------------------------------------------


@pytest.mark.parametrize(
    "records",
    [
        [{"name": "model.example.com.evil.org", "type": "A", "value": "1.2.3.4"}],
        [{"name": "example.com", "type": "TXT", "value": "x"}],
        [{"name": f"x.{PUBLIC_NAME}", "type": "MX", "value": "10 mail"}],
        [{"name": f"x.{PUBLIC_NAME}", "type": "A"}],
        [{"name": f"x.{PUBLIC_NAME}", "type": "TXT", "value": ""}],
        "not a list",
    ],
)
def test_check_records_refuses_what_a_cloud_may_not_write(records: Any) -> None:
    with pytest.raises(ValueError, match="the gcp stack"):
        check_records("gcp", records, PUBLIC_NAME)


def test_check_records_normalizes_names_and_accepts_the_name_itself() -> None:
    assert check_records(
        "gcp", [{"name": "GCP.Model.Example.com.", "type": "A", "value": "1.2.3.4"}], PUBLIC_NAME
    ) == [{"name": GCP_NAME, "type": "A", "value": "1.2.3.4"}]
    assert check_records("azure", None, PUBLIC_NAME) == []
    assert check_public_name("aws", PUBLIC_NAME, record_name=PUBLIC_NAME) == PUBLIC_NAME
    with pytest.raises(ValueError, match="answers public name none"):
        check_public_name("aws", None, record_name=PUBLIC_NAME)
