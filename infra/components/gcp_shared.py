"""What the GCP endpoint and its health job both build: a private, versioned bucket.

A function, not a component: it creates the bucket as a child of the ``parent`` it is given, so
the bucket keeps its component (and its URN).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

__all__ = ["private_bucket"]


def private_bucket(name: str, project: str, location: str, parent: pulumi.Resource) -> gcp.storage.Bucket:
    """Uniform bucket-level access, public access prevention enforced, versioning (GCS encrypts at
    rest and serves only HTTPS by itself): the model bucket, and the health job's control bucket."""
    return gcp.storage.Bucket(
        name,
        project=project,
        location=location,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning={"enabled": True},
        opts=pulumi.ResourceOptions(parent=parent),
    )
