"""The Pulumi programs: one model endpoint per cloud and weighted DNS in front of them.

``Pulumi.yaml`` points at this directory (``main: infra/``), so Pulumi runs ``__main__.py``,
which only composes. ``spec`` owns the stack configuration (read once, validated, typed);
``aws``, ``gcp`` and ``azure`` hold the endpoint's ``pulumi.ComponentResource`` and the
optional scheduled health job's; ``schedule`` turns the job's cron into each scheduler's dialect;
``dns`` owns the Route 53 health checks and weighted records. A cloud's provider SDK is imported
only by the stack that deploys to it.
"""
