"""The contract every cloud's health job component keeps.

A health job runs ``orchestrator health --once [--apply]`` on a schedule beside a cloud's
endpoint, with the endpoint's image (same registry, same digest), and keeps its configuration and
state in a control bucket of its own (never the model bucket, which publishers write). Each cloud
deploys it its own way: ``AwsHealthJob`` (EventBridge Scheduler starting a Fargate task),
``GcpHealthJob`` (Cloud Scheduler running a Cloud Run job), ``AzureHealthJob`` (a Container Apps
job with a cron trigger); each takes ``(name, spec, job, options, endpoint)``.
"""

from __future__ import annotations

import pulumi

from infra.components.endpoint import EndpointComponent

__all__ = ["HealthJobComponent", "running_endpoint"]


def running_endpoint(endpoint: EndpointComponent) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """The endpoint's ``(image, endpoint_url)``; ValueError if it has no image (``infra/__main__.py``
    creates a job only once an image is configured: the job runs the endpoint's image)."""
    if endpoint.image is None or endpoint.endpoint_url is None:
        raise ValueError("a health job needs the endpoint's image and URL: configure endpoint.image first")
    return endpoint.image, endpoint.endpoint_url


class HealthJobComponent(pulumi.ComponentResource):
    """Base of AwsHealthJob, GcpHealthJob and AzureHealthJob; each sets :attr:`control_root`."""

    # s3://, gs:// or az:// root of the job's control bucket; the stack's health_job output
    # derives config_uri and state_uri from it.
    control_root: pulumi.Output[str]
    # Added to the stack's health_job output: the job's identity (GCP: its service account's
    # unique id; Azure: its managed identity's principal id), or the federated roles (AWS).
    exports: dict[str, object] = {}  # noqa: RUF012  # replaced per instance
