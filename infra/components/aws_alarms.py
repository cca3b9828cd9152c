"""Alarms for the AWS health job: someone is told when it fails, cannot run, or stops running.

All three signals go to one SNS topic (the stack's notification target; ``health_job.alert_emails``
are subscribed to it by email, each confirms once):

- **failed**: an EventBridge rule on ``ECS Task State Change`` for the job's tasks (its cluster,
  its task definition family) that stopped with a non-zero exit code (``orchestrator health
  --once`` exits 2 when no cloud is healthy, 1 or another code on an error) or failed to start
  (image pull, secrets, network: ``stopCode`` ``TaskFailedToStart``), sent straight to the topic
  with the task, the stop code and reason;
- **cannot run**: ``AWS/Scheduler TargetErrorCount`` > 0 for the job's own schedule group (the
  metric has only that dimension; the scheduler's RunTask call was refused: IAM, capacity, a bad
  network configuration);
- **not running**: a heartbeat. A second rule matches the job's tasks that stopped with exit
  code 0; its ``AWS/Events TriggeredRules`` count is alarmed when it stays below 1 for
  :data:`HEARTBEAT_WINDOW_S`, missing data counting as breaching (schedule disabled or deleted,
  every run crashing before it starts: the only signal that needs nothing to happen).

The topic is unencrypted: EventBridge cannot publish to a topic encrypted with the AWS-managed
SNS key. Its policy lets this account's alarms and these two rules publish, nothing else.
Sources: EventBridge Scheduler user guide ("Monitoring with CloudWatch"), ECS developer guide
("Amazon ECS task state change events"), EventBridge user guide ("Monitoring with CloudWatch",
content filtering: ``prefix``, ``anything-but``, ``$or``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.aws_shared import policy

__all__ = ["HEARTBEAT_WINDOW_S", "JobAlarms", "job_alarms"]

# One metric period: the scheduler's and EventBridge's metrics arrive per minute; five-minute
# sums smooth their best-effort delivery.
PERIOD_S = 300
# No successful round in 15 minutes (three periods, at a schedule of one run a minute) is an
# outage of the job, not a blip.
HEARTBEAT_PERIODS = 3
HEARTBEAT_WINDOW_S = PERIOD_S * HEARTBEAT_PERIODS


@dataclass(frozen=True)
class JobAlarms:
    """The topic and what publishes to it."""

    topic: aws.sns.Topic
    failed_rule: aws.cloudwatch.EventRule
    succeeded_rule: aws.cloudwatch.EventRule
    cannot_run: aws.cloudwatch.MetricAlarm
    not_running: aws.cloudwatch.MetricAlarm


def _task_pattern(cluster_arn: str, family_arn: str, outcome: object) -> str:
    detail = {
        "clusterArn": [cluster_arn],
        # Every revision of the job's task definition family: arn:...:task-definition/<family>:<n>
        "taskDefinitionArn": [{"prefix": f"{family_arn}:"}],
        "lastStatus": ["STOPPED"],
    }
    if isinstance(outcome, dict):
        detail.update(outcome)
    return json.dumps(
        {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": detail}, sort_keys=True
    )


# exit code != 0 (2: no healthy cloud; 137: killed), or the task never started.
FAILED = {"$or": [{"containers": {"exitCode": [{"anything-but": 0}]}}, {"stopCode": ["TaskFailedToStart"]}]}
SUCCEEDED = {"containers": {"exitCode": [0]}}


def job_alarms(
    name: str,
    parent: pulumi.Resource,
    *,
    cluster_arn: pulumi.Input[str],
    family_arn: pulumi.Input[str],
    schedule_group: pulumi.Input[str],
    emails: tuple[str, ...],
    account_id: pulumi.Input[str],
) -> JobAlarms:
    """The topic, its email subscriptions, the two rules and the two alarms (module docstring)."""
    child = pulumi.ResourceOptions(parent=parent)
    topic = aws.sns.Topic(f"{name}-alerts", display_name="ml-orchestrator health job", opts=child)
    for index, email in enumerate(emails):
        aws.sns.TopicSubscription(
            f"{name}-alerts-{index}", topic=topic.arn, protocol="email", endpoint=email, opts=child
        )
    patterns = pulumi.Output.all(cluster_arn, family_arn)
    failed = aws.cloudwatch.EventRule(
        f"{name}-failed",
        description="The health job's task failed, found no healthy cloud (exit 2), or never started",
        event_pattern=patterns.apply(lambda arns: _task_pattern(arns[0], arns[1], FAILED)),
        opts=child,
    )
    aws.cloudwatch.EventTarget(
        f"{name}-failed",
        rule=failed.name,
        arn=topic.arn,
        input_transformer={
            "input_paths": {
                "task": "$.detail.taskArn",
                "code": "$.detail.stopCode",
                "reason": "$.detail.stoppedReason",
                "exit": "$.detail.containers[0].exitCode",
            },
            "input_template": (
                '"ml-orchestrator health job task <task> stopped: exit <exit>, <code>: <reason>"'
            ),
        },
        opts=child,
    )
    succeeded = aws.cloudwatch.EventRule(
        f"{name}-succeeded",
        description="The health job's task finished a round (exit 0): the heartbeat",
        event_pattern=patterns.apply(lambda arns: _task_pattern(arns[0], arns[1], SUCCEEDED)),
        opts=child,
    )
    cannot_run = aws.cloudwatch.MetricAlarm(
        f"{name}-cannot-run",
        alarm_description="EventBridge Scheduler could not start the health job (RunTask refused)",
        namespace="AWS/Scheduler",
        metric_name="TargetErrorCount",
        dimensions={"ScheduleGroup": schedule_group},
        statistic="Sum",
        period=PERIOD_S,
        evaluation_periods=1,
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[topic.arn],
        ok_actions=[topic.arn],
        opts=child,
    )
    not_running = aws.cloudwatch.MetricAlarm(
        f"{name}-not-running",
        alarm_description="No successful health job round for 15 minutes",
        namespace="AWS/Events",
        metric_name="TriggeredRules",
        dimensions={"RuleName": succeeded.name},
        statistic="Sum",
        period=PERIOD_S,
        evaluation_periods=HEARTBEAT_PERIODS,
        datapoints_to_alarm=HEARTBEAT_PERIODS,
        threshold=1,
        comparison_operator="LessThanThreshold",
        # No data at all is exactly the outage this alarm exists for.
        treat_missing_data="breaching",
        alarm_actions=[topic.arn],
        ok_actions=[topic.arn],
        opts=child,
    )
    aws.sns.TopicPolicy(
        f"{name}-alerts",
        arn=topic.arn,
        policy=policy(
            {
                "Sid": "TheFailedRulePublishes",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic.arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": failed.arn}},
            },
            {
                "Sid": "ThisAccountsAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic.arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ),
        opts=child,
    )
    return JobAlarms(topic, failed, succeeded, cannot_run, not_running)
