"""The Azure endpoint's public name: a Container Apps custom domain with a managed certificate.

The records go into the zone through the dns stack (this stack holds no Route 53 rights); they
are exported as ``dns_records``:

- ``asuid.<public name>`` TXT = the subscription's custom domain verification id (known before
  any app exists: ``getCustomDomainVerificationId``), which Container Apps checks before it
  accepts the host name;
- once the app carries the host name, ``_dnsauth.<public name>`` TXT = the managed certificate's
  validation token. **TXT validation** is chosen over CNAME and HTTP validation because both of
  those look up the public name, which the weighted record points at Azure for a share of
  answers only: issuance and renewal would fail at random.

The binding takes two runs of this stack (azure-native has no separate binding resource, and
one `up` cannot update the app twice): with ``azure.certificate_bound: false`` the app carries
the host name unbound (``Disabled``) and the managed certificate is requested; once the dns
stack has written the token and the certificate is issued, ``certificate_bound: true`` binds it
(``SniEnabled``). The public name's weighted record points straight at the app's own host name
(``<app>.<environment default domain>``, no intermediate name), and Route 53's health check for
Azure connects to the environment's static address with the public name as Host and SNI: only
an app that carries the public name answers it there.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import app

from infra.components.endpoint import DnsRecord

__all__ = ["certificate_name", "custom_domain", "managed_certificate", "verification_records"]


def verification_records(public_name: str, parent: pulumi.Resource) -> list[DnsRecord]:
    """``asuid.<public name>``: the subscription's verification id, as Container Apps expects it."""
    verification = app.get_custom_domain_verification_id_output(
        opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    return [{"name": f"asuid.{public_name}", "type": "TXT", "value": verification.value}]


def certificate_name(public_name: str) -> str:
    """The managed certificate's name in the environment: the public name, dots as dashes."""
    return f"{public_name.replace('.', '-')}-cert"[:64]


def custom_domain(
    public_name: str,
    *,
    bound: bool,
    environment_id: pulumi.Input[str],
) -> app.CustomDomainArgsDict:
    """The ``custom_domains`` entry: unbound first, then bound (SNI) to the managed certificate,
    whose id is predictable: ``<environment id>/managedCertificates/<name>``."""
    if not bound:
        return {"name": public_name, "binding_type": "Disabled"}
    return {
        "name": public_name,
        "binding_type": "SniEnabled",
        "certificate_id": pulumi.Output.concat(
            environment_id, "/managedCertificates/", certificate_name(public_name)
        ),
    }


def managed_certificate(
    name: str,
    parent: pulumi.Resource,
    *,
    public_name: str,
    resource_group_name: pulumi.Input[str],
    environment_name: pulumi.Input[str],
    location: str,
    container_app: pulumi.Resource,
) -> tuple[app.ManagedCertificate, DnsRecord]:
    """The managed certificate (TXT validation) and its ``_dnsauth`` record; after the app, which
    must carry the host name first."""
    certificate = app.ManagedCertificate(
        f"{name}-cert",
        resource_group_name=resource_group_name,
        environment_name=environment_name,
        managed_certificate_name=certificate_name(public_name),
        location=location,
        properties={"subject_name": public_name, "domain_control_validation": "TXT"},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[container_app]),
    )
    token = certificate.properties.apply(lambda properties: properties.validation_token or "")
    return certificate, {"name": f"_dnsauth.{public_name}", "type": "TXT", "value": token}
