"""The stacks' ``pulumi.ComponentResource`` classes, one per file.

``endpoint`` holds the contract every cloud's endpoint keeps; ``aws_endpoint``, ``gcp_endpoint`` and
``azure_endpoint`` deploy it; ``aws_health_job``, ``gcp_health_job`` and ``azure_health_job`` run the
scheduled ``orchestrator health --once`` beside it; ``weighted_dns`` puts Route 53 in front. A
module imports only its own cloud's provider SDK.
"""
