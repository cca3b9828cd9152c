"""``drift``: how each endpoint's drift answer is judged (:mod:`orchestrator.control.health.drift`).

drift:
  psi_warn: 0.1               # "moderate shift"
  psi_alarm: 0.25             # "significant shift"
  min_rows: 500               # fewer rows counted in an endpoint's window are not judged
  prediction_divergence: 0.15 # the cross-cloud comparison's thresholds
  confidence_divergence: 0.1
  degrade: false              # true: drift makes a cloud degraded
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DriftConfig"]


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf` and `.nan` are valid YAML floats, and nothing here means them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DriftConfig(_Strict):
    """``drift``: how each endpoint's drift answer is judged (orchestrator.control.health.drift)."""

    # The usual reading of the population stability index: < 0.1 no significant change, 0.1-0.25 a
    # moderate shift, > 0.25 a significant one (Siddiqi, "Credit Risk Scorecards", 2006).
    psi_warn: float = Field(default=0.1, gt=0, le=10)
    psi_alarm: float = Field(default=0.25, gt=0, le=10)
    # Under this many rows counted in an endpoint's window (window.counted_rows: a call of more than
    # 64 rows has its features counted on one row in four) its PSI is not judged: with 10 bins,
    # sampling noise alone gives PSI about 9 * (1 / rows counted + 1 / reference rows) (0.018 from
    # 500 rows counted, plus the reference's share), and a few rows can fill one bin.
    min_rows: int = Field(default=500, ge=1, le=1_000_000)
    # Jensen-Shannon distance (base 2) between a cloud's predicted-class shares and the clouds'
    # consensus (median shares) that flags it: 0.15 is 2.5 times what one model gives on two
    # samples of 600 iris rows (measured 0.06; sampling noise shrinks as 1/sqrt(rows)).
    prediction_divergence: float = Field(default=0.15, gt=0, le=1)
    # A cloud's mean maximum probability this far from the clouds' median flags it too: one model on
    # two samples of 600 rows differs by about 0.005 (0.1 / sqrt(600)); a model that lost its signal
    # (trained on shuffled labels) by 0.5 or more.
    confidence_divergence: float = Field(default=0.1, gt=0, le=1)
    # True: a drift alarm or a cross-cloud flag makes that cloud's probe "degraded" (routing then
    # prefers the others); false: drift is reported only.
    degrade: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> DriftConfig:
        if self.psi_warn > self.psi_alarm:
            raise ValueError(f"psi_warn {self.psi_warn} is above psi_alarm {self.psi_alarm}")
        return self
