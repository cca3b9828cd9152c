"""The contract every cloud's endpoint component keeps: what ``infra/__main__.py`` exports and
the health job reuses, the same names in AWS, GCP and Azure."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

__all__ = ["EndpointComponent"]


class EndpointComponent(pulumi.ComponentResource):
    """Base of AwsEndpoint, GcpEndpoint and AzureEndpoint; each sets these, then calls
    :meth:`register_endpoint_outputs` at the end of its constructor."""

    endpoint_url: pulumi.Output[str]
    model_uri: pulumi.Output[str]  # the bucket URI of models/<name>/LATEST
    registry: pulumi.Output[str]
    image: pulumi.Output[str]  # registry@digest
    bucket: pulumi.Output[str]
    storage_root: pulumi.Output[str]  # s3://<bucket>, gs://<bucket>, az://<container>
    storage_settings: Mapping[str, pulumi.Input[str]]  # orchestrator.yaml's clouds.<cloud>.storage_settings

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
