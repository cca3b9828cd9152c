"""Multi-cloud deployment orchestrator for ML models: sync, health, failover and cost-aware routing."""

__version__ = "0.1.0"
