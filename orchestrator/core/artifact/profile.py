"""The manifest's reference profile: what the endpoint's drift monitor compares live traffic with.

Written by ``train`` (from the training split, and the test split for the model's outputs) and by
``package`` (from the reference table), under the manifest's ``reference_profile`` key; an artifact
made before it has none, and its endpoint then reports drift without a reference
(:mod:`serving.drift`). Shapes:

- per numeric feature: ``edges`` (0 to :data:`MAX_EDGES` finite, strictly increasing cut points:
  train and package write the deciles of the training values, fewer for small tables) giving
  ``len(edges) + 1`` bins ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``, and ``frequencies``: the
  share of training rows in each bin, then the share missing (NaN) last, so ``len(edges) + 2``
  shares;
- per categorical feature: ``categories`` (the most frequent training values, at most
  :data:`MAX_PROFILE_CATEGORIES`) and ``frequencies``: each one's share, then the share of any other
  value last;
- ``prediction``: the share of each class among the model's predictions on the test rows, in the
  order of the manifest's ``classes``;
- ``confidence``: a histogram of the maximum class probability on the test rows over fixed
  ``edges``, its ``mean``, and (with labels) ``accuracy``: the share of correct predictions in each
  bin (None where the bin held fewer than :data:`MIN_CALIBRATION_ROWS` test rows), the reliability
  mapping the endpoint's label-free accuracy estimate uses.

Every share vector is finite, in [0, 1] and sums to 1 within :data:`SUM_TOLERANCE`. A profile that
breaks any rule makes the whole manifest invalid, so the endpoint refuses the artifact at load and
the last good model keeps serving, as for any other manifest fault. The :class:`~orchestrator.core.
artifact.manifest.Manifest` checks the profile against its features and classes.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_EDGES",
    "MAX_PROFILE_CATEGORIES",
    "MIN_CALIBRATION_ROWS",
    "CategoricalReference",
    "ConfidenceReference",
    "FeatureReference",
    "NumericReference",
    "PredictionReference",
    "ReferenceProfile",
]

# Cut points per numeric feature: train writes 9 (deciles, the usual PSI binning: Siddiqi, "Credit
# Risk Scorecards", 2006, ch. 8); 99 allows percentiles and bounds what the endpoint compares per row.
MAX_EDGES = 99
# Categories profiled per categorical feature; the rest share the "other" bin. More bins than this
# make PSI a count of rare values rather than a shift of the distribution.
MAX_PROFILE_CATEGORIES = 100
# A confidence bin's test accuracy is kept only over this many test rows: fewer make the
# reliability mapping noisier than the uncalibrated confidence it replaces.
MIN_CALIBRATION_ROWS = 10
# Shares are written as float64 sums of counts over a total; 1e-6 is far above their rounding and
# far below any real error.
SUM_TOLERANCE = 1e-6


class _Frozen(BaseModel):
    # Strict: a number written as text ("1.5") is a fault of the writer, not a value to coerce.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _shares(values: list[float], what: str) -> None:
    if not all(isinstance(v, float | int) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"{what}: every share must be a finite number in [0, 1]")
    if abs(math.fsum(values) - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{what}: shares sum to {math.fsum(values):.6g}, not 1")


class NumericReference(_Frozen):
    """A numeric feature's bins: ``edges`` (strictly increasing, finite) and ``len(edges) + 2``
    ``frequencies`` (each bin, then missing)."""

    kind: Literal["numeric"] = "numeric"
    edges: list[float] = Field(max_length=MAX_EDGES)
    frequencies: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> NumericReference:
        if not all(math.isfinite(e) for e in self.edges):
            raise ValueError("edges must be finite numbers")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        if len(self.frequencies) != len(self.edges) + 2:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 2} frequencies (each bin, then missing), "
                f"not {len(self.frequencies)}"
            )
        _shares(self.frequencies, "frequencies")
        return self


class CategoricalReference(_Frozen):
    """A categorical feature's ``categories`` (distinct) and ``len(categories) + 1`` ``frequencies``
    (each category, then any other value)."""

    kind: Literal["categorical"] = "categorical"
    categories: list[Annotated[str, Field(max_length=256)]] = Field(max_length=MAX_PROFILE_CATEGORIES)
    frequencies: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalReference:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be distinct")
        if len(self.frequencies) != len(self.categories) + 1:
            raise ValueError(
                f"{len(self.categories)} categories need {len(self.categories) + 1} frequencies (each "
                f"category, then other), not {len(self.frequencies)}"
            )
        _shares(self.frequencies, "frequencies")
        return self


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class PredictionReference(_Frozen):
    """The share of each class among the model's predictions on the reference rows, in the order of
    the manifest's ``classes``."""

    frequencies: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> PredictionReference:
        _shares(self.frequencies, "prediction.frequencies")
        return self


class ConfidenceReference(_Frozen):
    """The maximum class probability on the reference rows: a histogram over ``edges`` (strictly
    increasing, inside (0, 1)): ``len(edges) + 1`` ``frequencies``, the ``mean``, and optionally the
    test ``accuracy`` per bin (None for a bin with too few rows)."""

    edges: list[float] = Field(min_length=1, max_length=MAX_EDGES)
    frequencies: list[float]
    mean: float = Field(ge=0.0, le=1.0)
    accuracy: list[float | None] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ConfidenceReference:
        if not all(math.isfinite(e) and 0.0 < e < 1.0 for e in self.edges):
            raise ValueError("confidence.edges must be numbers strictly between 0 and 1")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("confidence.edges must be strictly increasing")
        bins = len(self.edges) + 1
        if len(self.frequencies) != bins:
            raise ValueError(f"confidence: {bins} bins need {bins} frequencies, not {len(self.frequencies)}")
        _shares(self.frequencies, "confidence.frequencies")
        if self.accuracy is not None:
            if len(self.accuracy) != bins:
                raise ValueError(f"confidence: {bins} bins need {bins} accuracies, not {len(self.accuracy)}")
            if not all(a is None or (math.isfinite(a) and 0.0 <= a <= 1.0) for a in self.accuracy):
                raise ValueError("confidence.accuracy: every value must be null or a number in [0, 1]")
        return self


class ReferenceProfile(_Frozen):
    """What live traffic is compared with: ``features`` keyed by feature name (every feature of
    the manifest, in its order; ``"0"``, ``"1"``, ... for unnamed features), ``prediction`` and
    ``confidence`` on the test (or reference) rows, and how many rows each came from."""

    source: str = Field(max_length=256)
    n_rows: int = Field(ge=1)
    n_prediction_rows: int = Field(ge=1)
    features: dict[str, FeatureReference]
    prediction: PredictionReference
    confidence: ConfidenceReference
