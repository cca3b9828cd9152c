"""What the AWS endpoint and its health job both build: IAM policy documents, the ECS tasks
trust policy, the private bucket (access-logged when given a log bucket), the access log bucket,
and the load balancer's ports.

Functions, not components: each creates its resources as children of the ``parent`` it is
given, so every resource keeps its component (and its URN) whichever module holds the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws

__all__ = [
    "ACCESS_LOG_PREFIX",
    "ACCESS_LOG_RETENTION_DAYS",
    "HTTPS_PORT",
    "HTTP_PORT",
    "access_log_bucket",
    "ecs_tasks_trust",
    "policy",
    "private_bucket",
]

HTTP_PORT = 80
HTTPS_PORT = 443
# S3 server access logs land under <prefix><source bucket>/ in the log bucket, kept a year: long
# enough to investigate a tampered artifact found months later, bounded in cost.
ACCESS_LOG_PREFIX = "s3-access/"
ACCESS_LOG_RETENTION_DAYS = 365


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


def private_bucket(
    name: str,
    parent: pulumi.Resource,
    *,
    access_logs: aws.s3.Bucket | None = None,
    versioned: bool = True,
    extra_statements: Callable[[pulumi.Output[str]], list[dict[str, Any]]] | None = None,
) -> aws.s3.Bucket:
    """A bucket that is private (public access blocked, ACLs disabled), versioned, encrypted and
    TLS only: the model bucket, the health job's control bucket, and the access log bucket
    (``versioned=False``, ``extra_statements`` letting the logging service write). With
    ``access_logs``, S3 server access logs (who did what to which object) go to that bucket
    under ``s3-access/<this bucket's resource name>/``."""
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
    if versioned:
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
            *(extra_statements(bucket.arn) if extra_statements is not None else []),
        ),
        # S3 refuses concurrent configuration changes to one bucket; order them.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_access]),
    )
    if access_logs is not None:
        aws.s3.BucketLogging(
            f"{name}-access-logs",
            bucket=bucket.id,
            target_bucket=access_logs.id,
            target_prefix=f"{ACCESS_LOG_PREFIX}{name}/",
            opts=child,
        )
    return bucket


def access_log_bucket(name: str, parent: pulumi.Resource, account_id: pulumi.Input[str]) -> aws.s3.Bucket:
    """The bucket S3 server access logs are delivered to: private, SSE-S3 (the logging service
    cannot write with SSE-KMS), not versioned, written only by ``logging.s3.amazonaws.com`` for
    this account's buckets under ``s3-access/``, expired after :data:`ACCESS_LOG_RETENTION_DAYS`.
    It does not log itself (a log bucket logging to itself loops).

    With ACLs disabled the grant is this bucket policy, not the log-delivery group's ACL (S3 user
    guide, "Enabling Amazon S3 server access logging").
    """

    def log_delivery(bucket_arn: pulumi.Output[str]) -> list[dict[str, Any]]:
        return [
            {
                "Sid": "S3ServerAccessLogsPolicy",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(bucket_arn, f"/{ACCESS_LOG_PREFIX}*"),
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ]

    bucket = private_bucket(name, parent, versioned=False, extra_statements=log_delivery)
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-expiry",
        bucket=bucket.id,
        rules=[
            {
                "id": "expire-access-logs",
                "status": "Enabled",
                "filter": {"prefix": ACCESS_LOG_PREFIX},
                "expiration": {"days": ACCESS_LOG_RETENTION_DAYS},
            }
        ],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return bucket
