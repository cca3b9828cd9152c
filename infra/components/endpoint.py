"""The contract every cloud's endpoint component keeps: what ``infra/__main__.py`` exports and
the health job reuses, the same names in AWS, GCP and Azure.

Besides the endpoint itself, each component says how its cloud answers the public name: the URL
to reach this cloud's entry (``endpoint_url``), the records the dns stack must create in the zone
for it (``dns_records``: certificate validation, domain ownership, the entry's address), and the
address a Route 53 health check may connect to while sending the public name as Host and SNI
(``health_check_ip``, when the entry has a fixed one).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from infra.specs.endpoint import EndpointSpec
from orchestrator.core.contract import CLOUD_SCHEMES, CloudName

__all__ = ["SCRATCH_DIR", "DnsRecord", "EndpointComponent", "storage_root", "writable_paths"]

# The one directory the endpoint writes besides its model cache (tempfile's default: model
# signature checks unpack there); writable even where the root filesystem is read-only.
SCRATCH_DIR = "/tmp"  # noqa: S108  # the container's own scratch directory, a volume of its own


def writable_paths(spec: EndpointSpec) -> dict[str, str]:
    """Volume name -> path for each directory the container must write: ``/tmp`` and, when it is
    not under ``/tmp``, the model cache (``endpoint.model_cache_dir``)."""
    paths = {"scratch": SCRATCH_DIR}
    if not (spec.cache_dir == SCRATCH_DIR or spec.cache_dir.startswith(f"{SCRATCH_DIR}/")):
        paths["model-cache"] = spec.cache_dir
    return paths


# A record the dns stack creates for a cloud: {"name": FQDN, "type": A|CNAME|TXT, "value": ...}.
DnsRecord = dict[str, pulumi.Input[str]]


def storage_root(cloud: CloudName, bucket: pulumi.Input[str]) -> pulumi.Output[str]:
    """A bucket's root URI in ``cloud``'s scheme: ``s3://<bucket>``, ``gs://<bucket>``,
    ``az://<container>`` (the model bucket's, and the health job's control bucket's)."""
    return pulumi.Output.concat(f"{CLOUD_SCHEMES[cloud]}://", bucket)


class EndpointComponent(pulumi.ComponentResource):
    """Base of AwsEndpoint, GcpEndpoint and AzureEndpoint; each sets these (the storage ones with
    :meth:`set_model_bucket`), then calls :meth:`register_endpoint_outputs` at the end of its
    constructor."""

    endpoint_url: pulumi.Output[str] | None  # None: not known until the service exists
    model_uri: pulumi.Output[str]  # the bucket URI of models/<name>/LATEST
    registry: pulumi.Output[str]
    image: pulumi.Output[str] | None  # registry@digest; None: no image configured, no service
    bucket: pulumi.Output[str]
    storage_root: pulumi.Output[str]  # s3://<bucket>, gs://<bucket>, az://<container>
    storage_settings: Mapping[str, pulumi.Input[str]]  # orchestrator.yaml's clouds.<cloud>.storage_settings
    public_name: str | None
    dns_records: list[DnsRecord]
    health_check_ip: pulumi.Input[str] | None
    api_token_secrets: Mapping[str, pulumi.Input[str]]  # slot -> secret reference (never a value)

    def set_model_bucket(self, spec: EndpointSpec, bucket: pulumi.Output[str]) -> None:
        """``bucket``, ``storage_root`` and ``model_uri`` (the pointer the endpoint follows) from
        the model bucket's (or container's) name."""
        self.bucket = bucket
        self.storage_root = storage_root(spec.cloud, bucket)
        self.model_uri = pulumi.Output.concat(self.storage_root, "/", spec.model_key)

    def set_public_entry(
        self, spec: EndpointSpec, *, dns_records: list[DnsRecord], health_check_ip: pulumi.Input[str] | None
    ) -> None:
        """``public_name``, ``dns_records`` and ``health_check_ip`` (see the module docstring)."""
        self.public_name = spec.public_name
        self.dns_records = dns_records
        self.health_check_ip = health_check_ip

    def warn_no_image(self) -> None:
        """Say why the service (and the health job) is not created: no image configured yet."""
        pulumi.log.warn(
            "no image configured (ml-orchestrator:endpoint.image): the registry, buckets and entry "
            "are created, the service and the health job are not; push the image with `orchestrator "
            "image push`, set endpoint.image to the digest it prints, and run `pulumi up` again",
            resource=self,
        )

    def register_endpoint_outputs(self) -> None:
        self.register_outputs(
            {
                "endpoint_url": self.endpoint_url,
                "model_uri": self.model_uri,
                "registry": self.registry,
                "image": self.image,
                "bucket": self.bucket,
            }
        )
