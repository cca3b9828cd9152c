"""Alarms for the GCP health job: a Cloud Monitoring alert policy to email notification channels.

One policy, two conditions (either opens an incident):

- **failed**: ``run.googleapis.com/job/completed_execution_count`` with ``result = "failed"``
  above 0 for the job: an execution whose task exited non-zero (``orchestrator health --once``
  exits 2 when no cloud is healthy) or could not start (image, secret, identity), after its
  retries (none: the next run is the retry);
- **not running**: no ``result = "succeeded"`` execution for :data:`ABSENT_WINDOW_S` (Cloud
  Scheduler cannot start it, the schedule is paused or deleted, every run fails): metric
  absence, the only signal that needs nothing to happen.

Each ``health_job.alert_emails`` address is an email notification channel. Source: Cloud Run
job metrics (``completed_execution_count``, label ``result``) as used by Google's Cloud Run job
monitoring samples; confirm the label values on the metrics list of a real project.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

__all__ = ["ABSENT_WINDOW_S", "MONITORING_API", "job_alert_policy"]

MONITORING_API = "monitoring.googleapis.com"
# Five-minute alignment: a failed run every minute shows, a single success closes the window.
ALIGNMENT_S = 300
# No successful round for 15 minutes is an outage of the job (runs are every minute).
ABSENT_WINDOW_S = 900
# An incident closes itself half an hour after its condition stops being met.
AUTO_CLOSE_S = 1800


def job_alert_policy(
    name: str,
    parent: pulumi.Resource,
    *,
    project: str,
    job_name: pulumi.Input[str],
    emails: tuple[str, ...],
    depends_on: list[pulumi.Resource],
) -> tuple[gcp.monitoring.AlertPolicy, list[gcp.monitoring.NotificationChannel]]:
    """The policy and its channels (module docstring)."""
    child = pulumi.ResourceOptions(parent=parent, depends_on=depends_on)
    channels = [
        gcp.monitoring.NotificationChannel(
            f"{name}-alerts-{index}",
            project=project,
            display_name=f"ml-orchestrator health job: {email}",
            type="email",
            labels={"email_address": email},
            opts=child,
        )
        for index, email in enumerate(emails)
    ]
    metric = pulumi.Output.concat(
        'resource.type = "cloud_run_job" AND resource.labels.job_name = "',
        job_name,
        '" AND metric.type = "run.googleapis.com/job/completed_execution_count"',
    )
    aggregation: gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgsDict = {
        "alignment_period": f"{ALIGNMENT_S}s",
        "per_series_aligner": "ALIGN_SUM",
    }
    policy = gcp.monitoring.AlertPolicy(
        f"{name}-alerts",
        project=project,
        display_name="ml-orchestrator health job failed or not running",
        combiner="OR",
        severity="ERROR",
        conditions=[
            {
                "display_name": "health job execution failed (exit 2: no healthy cloud)",
                "condition_threshold": {
                    "filter": pulumi.Output.concat(metric, ' AND metric.labels.result = "failed"'),
                    "comparison": "COMPARISON_GT",
                    "threshold_value": 0,
                    "duration": "0s",
                    "aggregations": [aggregation],
                },
            },
            {
                "display_name": "no successful health job execution for 15 minutes",
                "condition_absent": {
                    "filter": pulumi.Output.concat(metric, ' AND metric.labels.result = "succeeded"'),
                    "duration": f"{ABSENT_WINDOW_S}s",
                    "aggregations": [aggregation],
                },
            },
        ],
        notification_channels=[channel.id for channel in channels],
        alert_strategy={"auto_close": f"{AUTO_CLOSE_S}s"},
        documentation={
            "content": "The scheduled `orchestrator health --once` failed, found no healthy cloud, or "
            "has not completed a round for 15 minutes. See the job's executions and logs.",
            "mime_type": "text/markdown",
        },
        opts=child,
    )
    return policy, channels
