"""The metric gate: a model below it is refused, and no artifact is written."""

from __future__ import annotations

from typing import Any

from orchestrator.core.errors import OrchestratorError

__all__ = ["GateError", "check_gate"]


class GateError(OrchestratorError):
    """A model scored below the configured metric gate; nothing was written."""

    def __init__(self, metric: str, value: float, threshold: float) -> None:
        self.metric, self.value, self.threshold = metric, value, threshold
        super().__init__(
            f"metric gate failed: {metric} = {value:.4f} is below the threshold {threshold:.4f}; "
            "no artifact was written"
        )


def check_gate(metrics: dict[str, Any], threshold: float | None) -> None:
    """GateError if the test-set macro F1 (``metrics["f1_macro"]``, in [0, 1]) is below
    ``threshold``; no gate when ``threshold`` is None."""
    if threshold is not None and metrics["f1_macro"] < threshold:
        raise GateError("f1_macro", metrics["f1_macro"], threshold)
