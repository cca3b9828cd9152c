"""The GCP endpoint's public entry: a global external HTTPS load balancer in front of Cloud Run.

Chosen over Cloud Run domain mapping, which is in preview, offered in ten regions only, needs the
deploying identity to be a verified owner of the domain, allows TLS 1.0 and issues its
certificate only while the name resolves to Google (with a weighted record that holds for a
share of answers only, so issuance and renewal would fail at random). The load balancer works in
every region, takes a TLS policy, and its certificate is validated by DNS:

- a global static address (``gcp.<public name>`` points at it; the dns stack writes that record);
- a Certificate Manager certificate for the public name and ``gcp.<public name>``, Google-managed
  and validated by **DNS authorization** (one ``_acme-challenge`` CNAME per name, written by the
  dns stack): it does not depend on where the weighted public name points;
- a certificate map, a target HTTPS proxy with it and a TLS 1.2+ policy (``MODERN``), a URL map
  to a backend service (request logs on) whose only backend is a serverless network endpoint
  group naming the Cloud Run service; forwarding rules on 443, and on 80 to a redirect to HTTPS.

The Cloud Run service then takes traffic only from load balancers (``ingress`` internal and
cloud load balancing): its ``run.app`` address refuses outside requests, so every client, probe
and health check goes through this TLS policy.

The dns stack's health check for GCP connects to the static address and sends the public name as
Host and SNI (``health_check_ip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.components.endpoint import DnsRecord

__all__ = ["CERTIFICATE_MANAGER_API", "COMPUTE_API", "Ingress", "https_load_balancer"]

COMPUTE_API = "compute.googleapis.com"
CERTIFICATE_MANAGER_API = "certificatemanager.googleapis.com"


@dataclass(frozen=True)
class Ingress:
    """The entry's address and the records the zone must hold for it."""

    address: pulumi.Output[str]
    dns_records: list[DnsRecord]


def https_load_balancer(
    name: str,
    parent: pulumi.Resource,
    *,
    project: str,
    region: str,
    service_name: str,
    names: tuple[str, str],
    depends_on: Sequence[pulumi.Resource],
) -> Ingress:
    """The load balancer for ``names`` (public name, ``gcp.<public name>``) in front of the Cloud
    Run service ``service_name`` (which may not exist yet); see the module docstring."""
    child = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
    address = gcp.compute.GlobalAddress(f"{name}-address", project=project, ip_version="IPV4", opts=child)
    authorizations = [
        gcp.certificatemanager.DnsAuthorization(
            f"{name}-dns-auth-{index}",
            project=project,
            location="global",
            domain=domain,
            description=f"Proves control of {domain} for its Google-managed certificate",
            opts=child,
        )
        for index, domain in enumerate(names)
    ]
    certificate = gcp.certificatemanager.Certificate(
        f"{name}-cert",
        project=project,
        scope="DEFAULT",
        managed={"domains": list(names), "dns_authorizations": [auth.id for auth in authorizations]},
        opts=child,
    )
    certificate_map = gcp.certificatemanager.CertificateMap(f"{name}-certs", project=project, opts=child)
    entries = [
        gcp.certificatemanager.CertificateMapEntry(
            f"{name}-certs-{index}",
            project=project,
            map=certificate_map.name,
            hostname=domain,
            certificates=[certificate.id],
            opts=child,
        )
        for index, domain in enumerate(names)
    ]
    # Serverless NEGs take no health check and no port: Cloud Run does both.
    endpoint_group = gcp.compute.RegionNetworkEndpointGroup(
        f"{name}-neg",
        project=project,
        region=region,
        network_endpoint_type="SERVERLESS",
        cloud_run={"service": service_name},
        opts=child,
    )
    backend = gcp.compute.BackendService(
        f"{name}-backend",
        project=project,
        load_balancing_scheme="EXTERNAL_MANAGED",
        backends=[{"group": endpoint_group.id}],
        # One log entry per request (who called what, and the answer): the load balancer's logs.
        log_config={"enable": True, "sample_rate": 1.0},
        opts=child,
    )
    url_map = gcp.compute.URLMap(f"{name}-urls", project=project, default_service=backend.id, opts=child)
    tls_policy = gcp.compute.SSLPolicy(
        f"{name}-tls", project=project, profile="MODERN", min_tls_version="TLS_1_2", opts=child
    )
    https_proxy = gcp.compute.TargetHttpsProxy(
        f"{name}-https",
        project=project,
        url_map=url_map.id,
        certificate_map=pulumi.Output.concat("//certificatemanager.googleapis.com/", certificate_map.id),
        ssl_policy=tls_policy.id,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*depends_on, *entries]),
    )
    gcp.compute.GlobalForwardingRule(
        f"{name}-https",
        project=project,
        target=https_proxy.id,
        ip_address=address.id,
        ip_protocol="TCP",
        port_range="443",
        load_balancing_scheme="EXTERNAL_MANAGED",
        opts=child,
    )
    redirect = gcp.compute.URLMap(
        f"{name}-redirect",
        project=project,
        default_url_redirect={
            "https_redirect": True,
            "strip_query": False,
            "redirect_response_code": "MOVED_PERMANENTLY_DEFAULT",
        },
        opts=child,
    )
    http_proxy = gcp.compute.TargetHttpProxy(f"{name}-http", project=project, url_map=redirect.id, opts=child)
    gcp.compute.GlobalForwardingRule(
        f"{name}-http",
        project=project,
        target=http_proxy.id,
        ip_address=address.id,
        ip_protocol="TCP",
        port_range="80",
        load_balancing_scheme="EXTERNAL_MANAGED",
        opts=child,
    )
    records: list[DnsRecord] = [{"name": names[1], "type": "A", "value": address.address}]
    for authorization in authorizations:
        record = authorization.dns_resource_records.apply(lambda found: found[0])
        records.append(
            {
                "name": record.apply(lambda r: (r.name or "").rstrip(".")),
                "type": record.apply(lambda r: r.type or ""),
                "value": record.apply(lambda r: (r.data or "").rstrip(".")),
            }
        )
    return Ingress(address.address, records)
