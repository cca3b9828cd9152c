"""The Pulumi programs: one model endpoint per cloud and weighted DNS in front of them.

``Pulumi.yaml`` points at this directory (``main: infra/``), so Pulumi runs ``__main__.py``,
which only composes. ``specs`` owns the stack configuration (read once, validated, typed, secrets
refused by name and by shape); ``components`` holds the ``pulumi.ComponentResource`` classes: the
endpoint of each cloud with its public entry, secrets and grants, the optional scheduled health
job with its alarms, and ``weighted_dns`` (Route 53 health checks, weighted records and the
records each cloud needs in the zone). A cloud's provider SDK is imported only by the stack that
deploys to it. ``docs/deploying.md`` is the runbook.
"""
