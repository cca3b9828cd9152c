"""Alarms for the Azure health job: Azure Monitor alerts to an action group.

- **failed**: a metric alert on the job's ``Executions`` (namespace ``Microsoft.App/jobs``) with
  dimension ``state`` = ``Failed`` above 0 over :data:`WINDOW`: an execution whose replica exited
  non-zero (``orchestrator health --once`` exits 2 when no cloud is healthy) or could not start;
- **not running**: a log alert on the environment's Log Analytics workspace counting the job's
  console lines (``ContainerAppConsoleLogs_CL``); none for :data:`WINDOW` means the job does not
  run at all (trigger, image, identity). Metric alerts cannot fire on absent data, hence a log
  query.

Each ``health_job.alert_emails`` address is an email receiver of one action group. Sources:
Azure Monitor supported metrics for ``Microsoft.App/jobs`` (``Executions``: dimensions ``state``,
``jobName``, ``executionName``); the ``Failed`` state value is the job execution status of the
Container Apps REST API; the table and column names are those of the environment's
``log-analytics`` destination. Confirm both on a real workspace.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import monitor

__all__ = ["WINDOW", "job_alerts"]

# Evaluate every five minutes over fifteen: a failing run every minute shows within five, and a
# job silent for a quarter hour is an outage, not a late run.
FREQUENCY = "PT5M"
WINDOW = "PT15M"
SEVERITY_ERROR = 1


def job_alerts(
    name: str,
    parent: pulumi.Resource,
    *,
    resource_group_name: pulumi.Input[str],
    location: str,
    job_id: pulumi.Input[str],
    job_name: pulumi.Input[str],
    workspace_id: pulumi.Input[str],
    emails: tuple[str, ...],
) -> tuple[monitor.ActionGroup, monitor.MetricAlert, monitor.ScheduledQueryRule]:
    """The action group and the two alerts (module docstring)."""
    child = pulumi.ResourceOptions(parent=parent)
    group = monitor.ActionGroup(
        f"{name}-alerts",
        resource_group_name=resource_group_name,
        location="global",
        group_short_name="mlhealth",
        enabled=True,
        email_receivers=[
            {"name": f"email-{index}", "email_address": email, "use_common_alert_schema": True}
            for index, email in enumerate(emails)
        ],
        opts=child,
    )
    failed = monitor.MetricAlert(
        f"{name}-failed",
        resource_group_name=resource_group_name,
        location="global",
        description="The health job failed or found no healthy cloud (exit 2)",
        severity=SEVERITY_ERROR,
        enabled=True,
        scopes=[job_id],
        evaluation_frequency=FREQUENCY,
        window_size=WINDOW,
        auto_mitigate=True,
        # Args classes, not a dict: the criteria are a union of shapes, and only the classes carry
        # the wire names (a dict would reach the provider with snake_case keys).
        criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
            odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            all_of=[
                monitor.MetricCriteriaArgs(
                    criterion_type="StaticThresholdCriterion",
                    name="failed-executions",
                    metric_namespace="Microsoft.App/jobs",
                    metric_name="Executions",
                    dimensions=[
                        monitor.MetricDimensionArgs(name="state", operator="Include", values=["Failed"])
                    ],
                    operator="GreaterThan",
                    threshold=0,
                    time_aggregation="Total",
                )
            ],
        ),
        actions=[{"action_group_id": group.id}],
        opts=child,
    )
    silent = monitor.ScheduledQueryRule(
        f"{name}-not-running",
        resource_group_name=resource_group_name,
        location=location,
        kind="LogAlert",
        description="The health job wrote nothing for 15 minutes: it does not run",
        severity=SEVERITY_ERROR,
        enabled=True,
        scopes=[workspace_id],
        evaluation_frequency=FREQUENCY,
        window_size=WINDOW,
        criteria={
            "all_of": [
                {
                    "query": pulumi.Output.concat(
                        'ContainerAppConsoleLogs_CL | where ContainerJobName_s == "', job_name, '"'
                    ),
                    "time_aggregation": "Count",
                    "operator": "LessThan",
                    "threshold": 1,
                    "failing_periods": {"number_of_evaluation_periods": 1, "min_failing_periods_to_alert": 1},
                }
            ]
        },
        actions={"action_groups": [group.id]},
        opts=child,
    )
    return group, failed, silent
