"""The contract every cloud's endpoint component keeps: what ``infra/__main__.py`` exports and
the health job reuses, the same names in AWS, GCP and Azure."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from infra.specs.endpoint import EndpointSpec
from orchestrator.core.contract import CLOUD_SCHEMES, CloudName

__all__ = ["EndpointComponent", "storage_root"]


def storage_root(cloud: CloudName, bucket: pulumi.Input[str]) -> pulumi.Output[str]:
    """A bucket's root URI in ``cloud``'s scheme: ``s3://<bucket>``, ``gs://<bucket>``,
    ``az://<container>`` (the model bucket's, and the health job's control bucket's)."""
    return pulumi.Output.concat(f"{CLOUD_SCHEMES[cloud]}://", bucket)


class EndpointComponent(pulumi.ComponentResource):
    """Base of AwsEndpoint, GcpEndpoint and AzureEndpoint; each sets these (the storage ones with
    :meth:`set_model_bucket`), then calls :meth:`register_endpoint_outputs` at the end of its
    constructor."""

    endpoint_url: pulumi.Output[str]
    model_uri: pulumi.Output[str]  # the bucket URI of models/<name>/LATEST
    registry: pulumi.Output[str]
    image: pulumi.Output[str]  # registry@digest
    bucket: pulumi.Output[str]
    storage_root: pulumi.Output[str]  # s3://<bucket>, gs://<bucket>, az://<container>
    storage_settings: Mapping[str, pulumi.Input[str]]  # orchestrator.yaml's clouds.<cloud>.storage_settings

    def set_model_bucket(self, spec: EndpointSpec, bucket: pulumi.Output[str]) -> None:
        """``bucket``, ``storage_root`` and ``model_uri`` (the pointer the endpoint follows) from
        the model bucket's (or container's) name."""
        self.bucket = bucket
        self.storage_root = storage_root(spec.cloud, bucket)
        self.model_uri = pulumi.Output.concat(self.storage_root, "/", spec.model_key)

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
