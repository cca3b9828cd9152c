"""`orchestrator serve` (placeholder until the endpoint lands)."""
