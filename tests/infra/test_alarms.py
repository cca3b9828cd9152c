"""Alarms on the scheduled health job, per cloud: failed (any non-zero exit, 2 = no healthy cloud),
cannot run, or not running at all, each wired to the stack's notification target with the
configured addresses.

What could break: a rule or alert scoped to another job (or to none), a target nobody is
subscribed to, an "absent" signal that treats missing data as fine, a topic policy that lets
the alarms' publications be refused.
"""

from __future__ import annotations

import json

from tests.infra.conftest import ALERT_EMAILS, ENDPOINT_COMPONENTS
from tests.infra.harness import StackRun

JOB = {
    "aws": "ml-orchestrator:infra:AwsHealthJob",
    "gcp": "ml-orchestrator:infra:GcpHealthJob",
    "azure": "ml-orchestrator:infra:AzureHealthJob",
}


def test_aws_failed_cannot_run_and_not_running_reach_the_topic(runs: dict[str, StackRun]) -> None:
    run = runs["aws_signed"].ok()
    job = run.within(JOB["aws"])
    topic = job.one("aws:sns/topic:Topic").outputs["arn"]
    subscriptions = job.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted((s["topic"], s["protocol"], s["endpoint"]) for s in subscriptions) == sorted(
        (topic, "email", email) for email in ALERT_EMAILS
    )
    cluster = run.within(ENDPOINT_COMPONENTS["aws"]).one("aws:ecs/cluster:Cluster").outputs["arn"]
    task = job.one("aws:ecs/taskDefinition:TaskDefinition").outputs
    rules = {r.name: r for r in job.of_type("aws:cloudwatch/eventRule:EventRule")}
    failed = json.loads(rules["ml-endpoint-health-failed"]["eventPattern"])
    succeeded = json.loads(rules["ml-endpoint-health-succeeded"]["eventPattern"])
    for pattern in (failed, succeeded):
        assert pattern["source"] == ["aws.ecs"]
        assert pattern["detail-type"] == ["ECS Task State Change"]
        assert pattern["detail"]["clusterArn"] == [cluster]
        # This job's tasks, every revision; not the endpoint's.
        assert pattern["detail"]["taskDefinitionArn"] == [{"prefix": f"{task['arnWithoutRevision']}:"}]
        assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert failed["detail"]["$or"] == [
        {"containers": {"exitCode": [{"anything-but": 0}]}},  # 2: no healthy cloud; 1, 137...
        {"stopCode": ["TaskFailedToStart"]},
    ]
    assert succeeded["detail"]["containers"] == {"exitCode": [0]}
    (target,) = job.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert (target["rule"], target["arn"]) == (rules["ml-endpoint-health-failed"].outputs["name"], topic)
    alarms = {a.name: a for a in job.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    group = job.one("aws:scheduler/scheduleGroup:ScheduleGroup").outputs["name"]
    assert job.one("aws:scheduler/schedule:Schedule")["groupName"] == group
    cannot_run = alarms["ml-endpoint-health-cannot-run"]
    assert (cannot_run["namespace"], cannot_run["metricName"]) == ("AWS/Scheduler", "TargetErrorCount")
    assert cannot_run["dimensions"] == {"ScheduleGroup": group}
    assert (cannot_run["comparisonOperator"], cannot_run["threshold"]) == ("GreaterThanThreshold", 0)
    not_running = alarms["ml-endpoint-health-not-running"]
    assert (not_running["namespace"], not_running["metricName"]) == ("AWS/Events", "TriggeredRules")
    assert not_running["dimensions"] == {"RuleName": rules["ml-endpoint-health-succeeded"].outputs["name"]}
    assert (not_running["comparisonOperator"], not_running["threshold"]) == ("LessThanThreshold", 1)
    assert not_running["treatMissingData"] == "breaching"  # silence is the outage
    assert not_running["period"] * not_running["evaluationPeriods"] == 900
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [topic], alarm.name
    statements = json.loads(job.one("aws:sns/topicPolicy:TopicPolicy")["policy"])["Statement"]
    publishers = {(s["Principal"]["Service"], json.dumps(s["Condition"], sort_keys=True)) for s in statements}
    assert publishers == {
        (
            "events.amazonaws.com",
            json.dumps({"ArnEquals": {"aws:SourceArn": rules["ml-endpoint-health-failed"].outputs["arn"]}}),
        ),
        ("cloudwatch.amazonaws.com", json.dumps({"StringEquals": {"aws:SourceAccount": "123456789012"}})),
    }
    assert all(s["Action"] == "sns:Publish" and s["Resource"] == topic for s in statements)


def test_aws_without_addresses_warns(runs: dict[str, StackRun]) -> None:
    run = runs["aws"].ok()
    assert not run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert any("alert_emails" in m for m in run.warnings())


def test_gcp_alert_policy_on_failed_and_missing_executions(runs: dict[str, StackRun]) -> None:
    job = runs["gcp_job_apply"].ok().within(JOB["gcp"])
    channels = job.of_type("gcp:monitoring/notificationChannel:NotificationChannel")
    assert sorted((c["type"], c["labels"]["email_address"]) for c in channels) == sorted(
        ("email", e) for e in ALERT_EMAILS
    )
    policy = job.one("gcp:monitoring/alertPolicy:AlertPolicy")
    assert sorted(policy["notificationChannels"]) == sorted(c.outputs["id"] for c in channels)
    assert policy["combiner"] == "OR"
    job_name = job.one("gcp:cloudrunv2/job:Job").outputs["name"]
    failed, absent = policy["conditions"]
    metric = (
        f'resource.type = "cloud_run_job" AND resource.labels.job_name = "{job_name}" '
        'AND metric.type = "run.googleapis.com/job/completed_execution_count"'
    )
    assert failed["conditionThreshold"]["filter"] == f'{metric} AND metric.labels.result = "failed"'
    assert (failed["conditionThreshold"]["comparison"], failed["conditionThreshold"]["thresholdValue"]) == (
        "COMPARISON_GT",
        0,
    )
    assert absent["conditionAbsent"]["filter"] == f'{metric} AND metric.labels.result = "succeeded"'
    assert absent["conditionAbsent"]["duration"] == "900s"


def test_azure_alerts_on_failed_executions_and_silence(runs: dict[str, StackRun]) -> None:
    run = runs["azure_job_apply"].ok()
    job = run.within(JOB["azure"])
    group = job.one("azure-native:monitor:ActionGroup")
    assert sorted(r["emailAddress"] for r in group["emailReceivers"]) == sorted(ALERT_EMAILS)
    container_job = job.one("azure-native:app:Job")
    failed = job.one("azure-native:monitor:MetricAlert")
    assert failed["scopes"] == [container_job.outputs["id"]]
    (criterion,) = failed["criteria"]["allOf"]
    assert (criterion["metricNamespace"], criterion["metricName"]) == ("Microsoft.App/jobs", "Executions")
    assert criterion["dimensions"] == [{"name": "state", "operator": "Include", "values": ["Failed"]}]
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    assert failed["actions"] == [{"actionGroupId": group.outputs["id"]}]
    silent = job.one("azure-native:monitor:ScheduledQueryRule")
    workspace = run.within(ENDPOINT_COMPONENTS["azure"]).one("azure-native:operationalinsights:Workspace")
    assert silent["scopes"] == [workspace.outputs["id"]]
    (query,) = silent["criteria"]["allOf"]
    assert f'ContainerJobName_s == "{container_job.outputs["name"]}"' in query["query"]
    assert (query["operator"], query["threshold"], query["timeAggregation"]) == ("LessThan", 1, "Count")
    assert silent["actions"] == {"actionGroups": [group.outputs["id"]]}
