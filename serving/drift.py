"""Drift monitoring: live rows counted into the reference profile's bins over a sliding window.

:class:`DriftMonitor` is built for one served model (a new version starts a new window). Every
model call adds its rows' counts (:meth:`DriftMonitor.observe`; the micro-batcher's concurrent
small requests share one call): numeric features binned by the manifest's cut points in one
vectorised comparison (the rows above each cut point, whose differences are the bins' counts),
categorical ones by a dictionary lookup, the predicted classes, and the maximum class probability.
A call of more than :data:`FULL_COUNT_ROWS` rows has its features counted on one row in
:data:`SAMPLE_EVERY`, each weighing that many. Nothing of a request is kept but these counts. The
window is a ring of :data:`SUB_WINDOWS` sub-windows of ``capacity / SUB_WINDOWS`` rows: a call's
counts go to the current one while its rows fit, else they are spread in proportion over the next
ones, and the oldest is zeroed and reused when the newest is full. Memory is fixed (sub-windows x
numeric features x the widest numeric feature's cut points: every feature is padded to that width,
plus the categorical, class and confidence counts) and the work per row is constant: one count
per call, never one per sub-window.

:meth:`DriftMonitor.report` is the answer of ``GET /v1/model/drift`` (the shared contract with the
control plane and the deployment gate):

- per feature, the population stability index of the window against the reference,
  ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the bins (a: live share, e: reference share, both
  floored at :data:`PSI_FLOOR`); read as < 0.1 no significant change, 0.1-0.25 a moderate shift,
  > 0.25 a significant one (Siddiqi, "Credit Risk Scorecards", 2006; Yurdakul, "Statistical
  properties of the population stability index", 2018);
- per feature, the Jensen-Shannon distance with base 2 (in [0, 1]), exactly
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (the tests check it against scipy; computed
  here in numpy, so the image does not carry scipy for one formula);
- the predicted classes' counts, and their PSI and JS distance against the reference shares;
- the mean maximum probability, and the label-free accuracy estimate
  (:meth:`DriftMonitor.estimated_accuracy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from orchestrator.core.artifact.manifest import Manifest, profile_keys
from orchestrator.core.artifact.profile import NumericReference, ReferenceProfile
from serving.columns import ColumnBatch

__all__ = [
    "DEFAULT_WINDOW_ROWS",
    "FULL_COUNT_ROWS",
    "PSI_FLOOR",
    "SAMPLE_EVERY",
    "SUB_WINDOWS",
    "DriftMonitor",
    "js_distance",
    "psi",
]

Array = np.ndarray[Any, Any]

# Rows in the window: 2,000 rows put the PSI of unshifted traffic against a 10-bin reference at
# about (bins - 1) / rows = 0.0045 (its chi-squared approximation), far below the 0.1 warning, while
# a shift is seen within a few hundred rows (benchmarks/drift.py measures both).
DEFAULT_WINDOW_ROWS = 2000
# Requests of more than this many rows (in one sub-window) have their features counted on a
# systematic sample of one row in SAMPLE_EVERY, each sampled row weighing SAMPLE_EVERY (an unbiased
# count: the Horvitz-Thompson estimator). Binning costs about 0.4 us per row of 64 features, a
# sixth of what a 1,000-row request costs to serve per row; sampled, the monitor stays under a tenth
# of the serving cost (benchmarks/drift.py). Classes and confidence are counted on every row. Up to
# 64 rows (the micro-batcher's one-row requests, which are counted per model call) every row counts.
FULL_COUNT_ROWS = 64
SAMPLE_EVERY = 4
# The window slides by a tenth: old traffic leaves it in steps of 10 % (200 rows by default).
SUB_WINDOWS = 10
# Shares are floored here before PSI's logarithm (an empty bin would make it infinite): the usual
# 0.0001 of PSI implementations (e.g. Evidently's and NannyML's), a tenth of one row in 1,000.
PSI_FLOOR = 1e-4
# Confidence bins the monitor counts when the model has no reference profile: tenths.
_DEFAULT_CONFIDENCE_EDGES = tuple(round(q / 10, 1) for q in range(1, 10))


def psi(live: Array, reference: Array) -> Array:
    """PSI per row of ``live`` and ``reference`` (shares, shape [..., bins], each row summing to 1),
    floored at :data:`PSI_FLOOR`: ``sum((a - e) * ln(a / e))``. Bins both hold at 0 add nothing."""
    a = np.maximum(live, PSI_FLOOR)
    e = np.maximum(reference, PSI_FLOOR)
    result: Array = ((a - e) * np.log(a / e)).sum(axis=-1)
    return result


def _entropy_terms(p: Array, m: Array) -> Array:
    # p * log2(p / m), 0 where p == 0 (scipy.special.rel_entr's convention; m > 0 wherever p > 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
    result: Array = terms.sum(axis=-1)
    return result


def js_distance(p: Array, q: Array) -> Array:
    """Jensen-Shannon distance with base 2 per row of ``p`` and ``q`` (non-negative weights of shape
    [..., bins], each row normalised to sum 1 first, as scipy does): ``sqrt((KL(p||m) + KL(q||m)) / 2)``
    with ``m = (p + q) / 2`` and logarithms base 2. In [0, 1]."""
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2
    js = (_entropy_terms(p, m) + _entropy_terms(q, m)) / 2
    result: Array = np.sqrt(np.clip(js, 0.0, 1.0))
    return result


def _number(value: Any) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


class DriftMonitor:
    """The sliding window of one served model. ``capacity_rows`` >= :data:`SUB_WINDOWS`.

    Not thread-safe: the endpoint calls :meth:`observe` and :meth:`report` on its event loop only.
    """

    def __init__(self, manifest: Manifest, capacity_rows: int = DEFAULT_WINDOW_ROWS) -> None:
        self.model_name = manifest.name
        self.model_version = manifest.version
        self.classes = list(manifest.classes)
        self.sub_rows = max(1, capacity_rows // SUB_WINDOWS)
        self.capacity = self.sub_rows * SUB_WINDOWS
        self.profile: ReferenceProfile | None = manifest.reference_profile
        profile = self.profile
        self.keys = profile_keys(manifest.features) if profile is not None else []
        kinds = manifest.features.kinds
        self.columns_layout = manifest.features.layout == "columns"
        self.inputs = [str(c.input) for c in manifest.features.columns] if self.columns_layout else []
        # Numeric features: their indices, cut points padded with +inf to one width, the stride of a
        # feature's bins (every bin, then missing last).
        self.numeric = [i for i, k in enumerate(kinds) if k == "numeric"] if profile is not None else []
        self.all_numeric = len(self.numeric) == manifest.features.count
        refs = [profile.features[self.keys[i]] for i in self.numeric] if profile is not None else []
        widest = max(1, max((len(r.edges) for r in refs if isinstance(r, NumericReference)), default=0))
        self.stride = widest + 2
        self.edges = np.full((len(refs), widest), np.inf)
        self.reference = np.zeros((len(refs), self.stride))
        for j, ref in enumerate(refs):
            assert isinstance(ref, NumericReference)
            self.edges[j, : len(ref.edges)] = ref.edges
            self.reference[j, : len(ref.edges) + 1] = ref.frequencies[:-1]
            self.reference[j, -1] = ref.frequencies[-1]
        # [edge, feature]: the layout the counting compares against (one row per cut point).
        # Large calls are compared in float32: half the memory traffic of float64 (measured 28 %
        # faster; small calls skip the conversion, which costs more than it saves there). A value
        # within float32's rounding (6e-8 relative) of a cut point may land in the neighbouring
        # bin; values equal to a cut point stay equal, and beyond float32's range they are +-inf,
        # in the outer bins where they belong.
        self.edges_by_rank = np.ascontiguousarray(self.edges.T)
        self.edges_narrow = self.edges_by_rank.astype(np.float32)
        # Categorical features: index, lookup (category -> bin), the "other" bin, reference shares.
        self.categorical: list[tuple[int, dict[str, int], int, Array]] = []
        if profile is not None:
            for i, kind in enumerate(kinds):
                if kind == "categorical":
                    ref = profile.features[self.keys[i]]
                    cats = getattr(ref, "categories", [])
                    lookup = {c: b for b, c in enumerate(cats)}
                    self.categorical.append((i, lookup, len(cats), np.asarray(ref.frequencies)))
        self.confidence_edges = np.asarray(
            profile.confidence.edges if profile is not None else _DEFAULT_CONFIDENCE_EDGES
        )
        n_conf = len(self.confidence_edges) + 1
        # The ring: per sub-window, rows; per numeric feature the rows above each cut point and the
        # rows missing (bin counts are their differences, taken when the report is asked for);
        # categorical bin counts, class counts, confidence counts and sums per confidence bin.
        # Counts are float64: a call spread over two sub-windows leaves each a share of its counts.
        self.rows = [0.0] * SUB_WINDOWS
        self.feature_rows = [0.0] * SUB_WINDOWS  # rows the feature counts stand for (see _count)
        # The sum of the squared weights of the rows counted: with feature_rows (the sum of the
        # weights) it gives the rows actually counted (Kish's effective sample size, see counted_rows).
        self.weight_squares = [0.0] * SUB_WINDOWS
        self._phase = 0
        # All counts of a sub-window are one row of ``ring`` (one addition per call); the named
        # arrays below are views of its columns.
        shapes = [(widest, len(refs)), (len(refs),), *[(len(c[3]),) for c in self.categorical]]
        shapes += [(len(self.classes),), (n_conf,), (n_conf,)]
        sizes = [int(np.prod(shape)) for shape in shapes]
        self.ring = np.zeros((SUB_WINDOWS, sum(sizes)))
        views, at = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            views.append(self.ring[:, at : at + size].reshape(SUB_WINDOWS, *shape))
            at += size
        self.above, self.missing, *rest = views
        self.categorical_counts = rest[: len(self.categorical)]
        self.class_counts, self.confidence_counts, self.confidence_sums = rest[len(self.categorical) :]
        self._no_missing = np.zeros(len(refs))
        self.current = 0

    # --- the hot path ---------------------------------------------------------------------------

    def observe(self, x: Array | ColumnBatch, labels: Array, probabilities: Array) -> None:
        """Count one model call: ``x`` its rows (a float64 matrix [n, features], or a ColumnBatch),
        ``labels`` [n] the predicted class indices, ``probabilities`` [n, classes]. Constant work per
        row, one vectorised count per call: the call's counts go to the current sub-window while
        its rows fit, and are spread in proportion over the next ones when they do not (a
        sub-window then holds a share of the call's counts, as if its rows came in that order); a
        call larger than the window counts only its last ``capacity`` rows."""
        n = len(labels)
        start = max(0, n - self.capacity)
        counts, feature_rows, weight = self._count(x, labels, probabilities, start, n)
        total = remaining = float(n - start)
        while remaining > 0:
            room = self.sub_rows - self.rows[self.current]
            if room <= 1e-9:
                self._advance()
                continue
            piece = min(room, remaining)
            share = piece / total
            k = self.current
            self.ring[k] += counts if share == 1.0 else counts * share
            self.feature_rows[k] += feature_rows * share
            self.weight_squares[k] += feature_rows * weight * share
            self.rows[k] += piece
            remaining -= piece

    def _advance(self) -> None:
        k = self.current = (self.current + 1) % SUB_WINDOWS
        self.rows[k] = 0.0
        self.feature_rows[k] = 0.0
        self.weight_squares[k] = 0.0
        self.ring[k] = 0.0

    def _count(
        self, x: Array | ColumnBatch, labels: Array, probabilities: Array, start: int, stop: int
    ) -> tuple[Array, float, int]:
        """The counts of rows ``start:stop`` as one row of ``ring``, the rows the feature counts
        stand for, and the weight of each row counted (1, or :data:`SAMPLE_EVERY`)."""
        whole = start == 0 and stop == len(labels)
        weight, picked = 1, slice(None)
        if stop - start > FULL_COUNT_ROWS:
            # A large call's features are counted on every SAMPLE_EVERY-th row (the offset turns
            # from one call to the next), each counted row standing for SAMPLE_EVERY rows.
            weight, picked = SAMPLE_EVERY, slice(self._phase, None, SAMPLE_EVERY)
            self._phase = (self._phase + 1) % SAMPLE_EVERY
        above: Any = self.above[0] * 0 if not self.numeric else None
        missing: Any = self._no_missing
        if self.numeric:
            values = self._numeric_values(x, start, stop, whole)[picked]
            narrow = values
            if len(values) > FULL_COUNT_ROWS // SAMPLE_EVERY:  # small calls: float64 as they are
                with np.errstate(over="ignore"):  # beyond float32's range: +-inf, the outer bins
                    narrow = values.astype(np.float32)
            # [rows, edges, features] booleans summed over the rows as bytes into 16-bit counts
            # (measured 1.8x faster than a boolean sum to int64): the rows above each cut point.
            above = (
                (
                    narrow[:, None, :]
                    > (self.edges_by_rank if narrow is values else self.edges_narrow)[None, :, :]
                )
                .view(np.uint8)
                .sum(axis=0, dtype=np.uint16 if len(values) < 65_536 else np.int64)
            )
            above = above if weight == 1 else weight * above.astype(np.int64)
            # NaN compares False with every cut point: counted as missing, not in the lowest bin. The
            # sum is NaN iff a value is (or +inf meets -inf: the exact count is then taken anyway).
            if math.isnan(float(values.sum())):  # a Python float's test: cheaper than a ufunc
                missing = weight * np.isnan(values).sum(axis=0)
        categorical = []
        for i, lookup, other, _ in self.categorical:
            assert isinstance(x, ColumnBatch)
            column = x.feeds[self.inputs[i]][start:stop, 0][picked]
            codes = np.fromiter((lookup.get(v, other) for v in column), dtype=np.intp, count=len(column))
            categorical.append(weight * np.bincount(codes, minlength=other + 1))
        chosen = labels if whole else labels[start:stop]
        confidence = (probabilities if whole else probabilities[start:stop]).max(axis=1)
        bins = np.searchsorted(self.confidence_edges, confidence, side="left")
        n_conf = self.confidence_counts.shape[1]
        counts = np.concatenate(
            [
                above.ravel(),
                missing,
                *categorical,
                np.bincount(chosen, minlength=len(self.classes)),
                np.bincount(bins, minlength=n_conf),
                np.bincount(bins, weights=confidence, minlength=n_conf),
            ],
            dtype=np.float64,
        )
        return counts, float(weight * len(range(stop - start)[picked])), weight

    def numeric_bin_counts(self) -> Array:
        """The window's counts per numeric feature and bin, [features, stride]: each bin of the
        feature's cut points (padded with empty bins to the widest feature's), then missing last.
        Bin ``b`` holds the rows above cut point ``b - 1`` and not above cut point ``b``."""
        rows = sum(self.feature_rows)
        above = self.above.sum(axis=0)  # [edges, features]
        missing = self.missing.sum(axis=0)
        counts = np.empty((above.shape[1], self.stride))
        counts[:, 0] = rows - missing - above[0]
        counts[:, 1:-2] = (above[:-1] - above[1:]).T
        counts[:, -2] = above[-1]
        counts[:, -1] = missing
        return counts

    def _numeric_values(self, x: Array | ColumnBatch, start: int, stop: int, whole: bool) -> Array:
        if isinstance(x, ColumnBatch):
            return np.hstack([x.feeds[self.inputs[i]][start:stop] for i in self.numeric]).astype(np.float64)
        if self.all_numeric:
            return x if whole else x[start:stop]
        result: Array = x[start:stop, self.numeric]
        return result

    # --- the answer -----------------------------------------------------------------------------

    @property
    def window_rows(self) -> int:
        """Rows counted in the window now."""
        return round(sum(self.rows))

    @property
    def counted_rows(self) -> int:
        """Rows whose features were actually counted in the window now: Kish's effective sample
        size ``(sum w)^2 / sum w^2`` of the counted rows' weights (Kish, "Survey Sampling", 1965).
        Every row counted (weight 1): the window's rows; only large calls (one row in
        :data:`SAMPLE_EVERY`, weight SAMPLE_EVERY): a SAMPLE_EVERY-th of them. The features' PSI
        has the sampling noise of this many rows (about ``(bins - 1) / counted_rows``), so the
        control plane judges ``min_rows`` on it, not on ``window.rows``."""
        squares = sum(self.weight_squares)
        return round(sum(self.feature_rows) ** 2 / squares) if squares > 1e-9 else 0

    def estimated_accuracy(self) -> float | None:
        """The label-free accuracy estimate over the window (confidence-based performance estimation).

        Without calibration data it is the mean maximum probability: the expected accuracy of a
        calibrated model (a row predicted with probability p is right with probability p). With the
        manifest's reliability mapping (the test accuracy per confidence bin) each live row counts at
        its bin's test accuracy, and at its own confidence where the bin had too few test rows.
        Assumptions: the model's calibration on the test rows holds for live rows (the input may
        shift, P(y | x) may not: covariate shift only), and the live rows' confidences are not out of
        the reference's range. None while the window is empty."""
        rows = self.window_rows
        if rows == 0:
            return None
        counts = self.confidence_counts.sum(axis=0)
        sums = self.confidence_sums.sum(axis=0)
        accuracy = self.profile.confidence.accuracy if self.profile is not None else None
        if accuracy is None:
            return float(sums.sum() / rows)
        expected = sum(
            (float(n) * a if a is not None else float(s))
            for n, s, a in zip(counts, sums, accuracy, strict=True)
        )
        return expected / rows

    def report(self) -> dict[str, Any]:
        """The ``GET /v1/model/drift`` answer (the shared contract; see the module's docstring)."""
        rows = self.window_rows
        class_counts = self.class_counts.sum(axis=0)
        counts = {c: round(float(n)) for c, n in zip(self.classes, class_counts, strict=True)}
        mean = float(self.confidence_sums.sum() / rows) if rows else None
        estimate = self.estimated_accuracy()
        answer: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "window": {"rows": rows, "counted_rows": self.counted_rows, "capacity_rows": self.capacity},
            "features": {},
            "prediction": {"counts": counts, "reference": None, "psi": None, "js_distance": None},
            "confidence": {"mean": _round(mean), "reference_mean": None},
            "estimated_accuracy": _round(estimate),
        }
        profile = self.profile
        if profile is None:
            return answer
        answer["features"] = self._features(rows)
        reference = np.asarray(profile.prediction.frequencies)
        answer["prediction"]["reference"] = {
            c: round(float(s), 6) for c, s in zip(self.classes, reference, strict=True)
        }
        if rows:
            live = class_counts / rows
            answer["prediction"]["psi"] = _number(psi(live, reference))
            answer["prediction"]["js_distance"] = _number(js_distance(live, reference))
        answer["confidence"]["reference_mean"] = round(profile.confidence.mean, 6)
        return answer

    def _features(self, rows: int) -> dict[str, dict[str, float | None]]:
        result: dict[str, dict[str, float | None]] = {}
        numeric_psi: list[float | None] = [None] * len(self.numeric)
        numeric_js: list[float | None] = [None] * len(self.numeric)
        if rows and self.numeric:
            live = self.numeric_bin_counts() / sum(self.feature_rows)
            numeric_psi = [_number(v) for v in psi(live, self.reference)]
            numeric_js = [_number(v) for v in js_distance(live, self.reference)]
        by_index: dict[int, dict[str, float | None]] = {
            i: {"psi": p, "js_distance": j}
            for i, p, j in zip(self.numeric, numeric_psi, numeric_js, strict=True)
        }
        for (i, _, _, reference), counts in zip(self.categorical, self.categorical_counts, strict=True):
            if rows:
                live = counts.sum(axis=0) / sum(self.feature_rows)
                by_index[i] = {
                    "psi": _number(psi(live, reference)),
                    "js_distance": _number(js_distance(live, reference)),
                }
            else:
                by_index[i] = {"psi": None, "js_distance": None}
        for i, key in enumerate(self.keys):
            result[key] = by_index[i]
        return result


def _round(value: float | None) -> float | None:
    return None if value is None else _number(value)
