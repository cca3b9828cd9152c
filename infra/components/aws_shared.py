"""What the AWS endpoint and its health job both build: IAM policy documents, the ECS tasks
trust policy, the private bucket, and the load balancer's ports.

Functions, not components: each creates its resources as children of the ``parent`` it is
given, so every resource keeps its component (and its URN) whichever module holds the code.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

__all__ = ["HTTPS_PORT", "HTTP_PORT", "ecs_tasks_trust", "policy", "private_bucket"]

HTTP_PORT = 80
HTTPS_PORT = 443


def policy(*statements: dict[str, Any]) -> pulumi.Output[str]:
    """An IAM policy document (version 2012-10-17) of ``statements``, as JSON."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def ecs_tasks_trust(region: str, opts: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    """A role only ECS tasks of this account and region may assume (confused-deputy guard)."""
    account_id = aws.get_caller_identity_output(opts=opts).account_id
    partition = aws.get_partition_output(opts=opts).partition
    source_arn = pulumi.Output.concat("arn:", partition, ":ecs:", region, ":", account_id, ":*")
    return policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": source_arn},
            },
        }
    )


def private_bucket(name: str, parent: pulumi.Resource) -> aws.s3.Bucket:
    """A bucket that is private (public access blocked, ACLs disabled), versioned, encrypted and
    TLS only: the model bucket, and the health job's control bucket."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, opts=child)
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=child,
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketVersioning(
        f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
    )
    # SSE-S3: encrypted at rest with no KMS key policy for the reader to need.
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=child,
    )
    everything = [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")]
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": everything}
    aws.s3.BucketPolicy(
        f"{name}-tls-only",
        bucket=bucket.id,
        policy=policy(
            {
                "Sid": "DenyInsecureTransport",
                **deny,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {"Sid": "DenyTlsBelow12", **deny, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
        ),
        # S3 refuses concurrent configuration changes to one bucket; order them.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_access]),
    )
    return bucket
