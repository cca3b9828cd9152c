"""The AWS deployer role: what ``orchestrator sync`` and ``orchestrator image push`` need, nothing else.

Created when ``ml-orchestrator:aws.deployers`` names IAM principals; they assume it
(``sts:AssumeRole``; their own policy must allow that too) and then can:

- list the model bucket, and read, write and delete objects under ``models/`` (sync uploads
  versions, moves the LATEST pointer with conditional writes, removes files a re-publish no
  longer has);
- push to the endpoint's repository (and read it back: a push checks which layers exist) and get
  an ECR authorization token (an action without resource-level permissions).

No other bucket, prefix, repository or service.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.aws_shared import policy

__all__ = ["ECR_PUSH_ACTIONS", "deployer_role"]

# The ECR actions `docker push` uses (ECR user guide, "Required IAM permissions for pushing an image").
ECR_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


def deployer_role(
    name: str,
    parent: pulumi.Resource,
    principals: tuple[str, ...],
    bucket_arn: pulumi.Input[str],
    repository_arn: pulumi.Input[str],
) -> aws.iam.Role | None:
    """The role ``principals`` assume to publish models and push images; None without principals."""
    if not principals:
        return None
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        f"{name}-deployer",
        description="Publishes models to the bucket and pushes endpoint images, nothing else",
        assume_role_policy=policy(
            {"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}
        ),
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-deployer",
        role=role.id,
        policy=policy(
            {"Sid": "ListTheModels", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
            {
                "Sid": "PublishModels",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": pulumi.Output.concat(bucket_arn, "/models/*"),
            },
            {"Sid": "LogInToEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "PushImages",
                "Effect": "Allow",
                "Action": list(ECR_PUSH_ACTIONS),
                "Resource": repository_arn,
            },
        ),
        opts=child,
    )
    return role
