"""`orchestrator train` (placeholder until the training pipeline lands)."""
