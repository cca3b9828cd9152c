"""Drift monitoring: what it costs the endpoint, how fast it sees a shift, how often it cries wolf,
and how far the label-free accuracy estimate is from the truth.

- Serving cost: two endpoints serving the digits model on core 0, one with drift monitoring (the
  default window) and one without (``DRIFT_WINDOW_ROWS=0``), driven by wrk on core 1 in interleaved
  rounds (median over rounds): one-row ``POST /v1/predict`` requests/s and 1,000-row batches rows/s.
  Prints on ÷ off (target >= 0.9).
- Detection, false alarms and the accuracy estimate run the endpoint's own monitor
  (:class:`serving.drift.DriftMonitor`) on a model trained by ``orchestrator train`` on a synthetic
  table whose population is known: 3 classes, 8 Gaussian features (class means 1.2 SD apart on
  each), 6,000 rows. "Live" rows are fresh draws from the same population, never training rows.

  * rows to detection: the window is filled with 2,000 unshifted rows, then rows with one feature
    shifted by 0.5 SD arrive in requests of 10; the rows until that feature's PSI reaches 0.1
    (warning) and 0.25 (alarm), for each of the 8 features and 5 seeds (median and worst; SD:
    the feature's population SD);
  * false alarms: unshifted traffic sent in model calls of 1, 100 and 1,000 rows (a call of more
    than 64 rows has its features counted on a sample); for each call size and each of 5 seeds, 200
    readings of a full window (one after every 200 rows, or every call of 1,000), judged as the
    control plane judges them (default ``drift:`` thresholds, ``min_rows`` on the rows actually
    counted): the readings judged ``warn`` or ``alarm``;
  * the label-free estimate: on test sets of 2,000 rows, the true accuracy against the estimate
    (with the manifest's reliability mapping, and the uncalibrated mean maximum probability), under
    covariate shift (rows of the population selected by an exponential tilt on x0, moving its
    mean by 0 to 2 SD: P(y | x) unchanged, the estimate's assumption) and under a shift that
    breaks the assumption (every feature moved, the labels kept).

    python benchmarks/drift.py [--seconds 4] [--rounds 3] [--skip-serving] [--json]

The serving part needs wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.demo.processes import start_endpoint  # noqa: E402

TARGET_ON_OVER_OFF = 0.9
WARN, ALARM = 0.1, 0.25
N_FEATURES, N_CLASSES = 8, 3
# Class means this many SD apart on every feature: a classifier about 80 % accurate, unsure
# enough on many rows that its calibration matters.
SEPARATION = 0.4
SEEDS = 5
# Model call sizes of the false-alarm figures: one-row calls (every row counted), and calls above
# FULL_COUNT_ROWS whose features are counted on a sample.
FALSE_ALARM_CALL_ROWS = (1, 100, 1000)


def _serving_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("serving_benchmark", ROOT / "benchmarks" / "serving.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draw(n: int, rng: np.random.Generator, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the population (features, class indices); ``shift`` (in SD) added per feature."""
    y = rng.integers(0, N_CLASSES, n)
    means = np.stack([np.full(N_FEATURES, SEPARATION * k) for k in range(N_CLASSES)])
    means += np.linspace(0, 0.6, N_FEATURES)[None, :] * np.arange(N_CLASSES)[:, None]
    x = means[y] + rng.standard_normal((n, N_FEATURES))
    if shift is not None:
        x = x + shift[None, :]
    return x, y


def train_synthetic(workdir: Path) -> Path:
    from orchestrator.training.pipeline import TrainOptions, train

    x, y = draw(6000, np.random.default_rng(0))
    table = workdir / "population.csv"
    with table.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*(f"x{i}" for i in range(N_FEATURES)), "label"])
        for row, label in zip(x, y, strict=True):
            out.writerow([*row, f"class_{label}"])
    return train(
        TrainOptions(dataset=str(table), target="label", name="population", out=workdir / "out")
    ).path


def monitor_figures(model: Path) -> dict[str, Any]:
    from serving.drift import DEFAULT_WINDOW_ROWS, DriftMonitor
    from serving.model import load_verified

    predictor = load_verified(model)
    names = predictor.manifest.features.names
    sd = draw(100_000, np.random.default_rng(1))[0].std(axis=0)  # each feature's population SD
    detect_warn: list[int] = []
    detect_alarm: list[int | None] = []
    for seed in range(SEEDS):
        for feature in range(N_FEATURES):
            rng = np.random.default_rng(100 + seed)
            monitor = DriftMonitor(predictor.manifest, DEFAULT_WINDOW_ROWS)
            x, _ = draw(DEFAULT_WINDOW_ROWS, rng)
            monitor.observe(x, *predictor.predict(x))
            shift = np.zeros(N_FEATURES)
            shift[feature] = 0.5 * sd[feature]
            sent, warned, alarmed = 0, None, None
            while sent < 4 * DEFAULT_WINDOW_ROWS and alarmed is None:
                x, _ = draw(10, rng, shift)
                monitor.observe(x, *predictor.predict(x))
                sent += 10
                value = monitor.report()["features"][names[feature]]["psi"]
                if warned is None and value >= WARN:
                    warned = sent
                if value >= ALARM:
                    alarmed = sent
            detect_warn.append(warned if warned is not None else -1)
            detect_alarm.append(alarmed)
    from orchestrator.control.config_drift import DriftConfig
    from orchestrator.control.health.drift import judge, parse_drift

    cfg = DriftConfig()
    false_alarms: dict[int, dict[str, int]] = {}
    for call_rows in FALSE_ALARM_CALL_ROWS:
        tally = false_alarms[call_rows] = {"readings": 0, "warn": 0, "alarm": 0, "judged": 0}
        for seed in range(SEEDS):
            rng = np.random.default_rng(200 + seed)
            monitor = DriftMonitor(predictor.manifest, DEFAULT_WINDOW_ROWS)
            step = max(200, call_rows)  # rows between readings
            for _ in range(200 + DEFAULT_WINDOW_ROWS // step):  # the window filled, then 200 readings
                x, _ = draw(step, rng)
                labels, probabilities = predictor.predict(x)
                for at in range(0, step, call_rows):
                    part = slice(at, at + call_rows)
                    monitor.observe(x[part], labels[part], probabilities[part])
                if monitor.window_rows < DEFAULT_WINDOW_ROWS:
                    continue
                verdict = judge(parse_drift(monitor.report()), None, cfg)
                tally["readings"] += 1
                tally["judged"] += verdict["status"] != "insufficient"
                tally["warn"] += verdict["status"] in ("warn", "alarm")
                tally["alarm"] += verdict["status"] == "alarm"
    estimates = []
    pool_x, pool_y = draw(50_000, np.random.default_rng(300))
    z = (pool_x[:, 0] - pool_x[:, 0].mean()) / pool_x[:, 0].std()
    for kind, strength in (("covariate", 0.0), ("covariate", 0.5), ("covariate", 1.0), ("covariate", 2.0),
                           ("moved", 0.5), ("moved", 1.0)):  # fmt: skip
        rng = np.random.default_rng(301)
        if kind == "covariate":
            # Rows of the population selected by an exponential tilt on x0 (its mean moves by
            # `strength` SD): P(x) changes, P(y | x) does not, the estimate's assumption.
            weights = np.exp(strength * z)
            picked = rng.choice(len(z), 2000, replace=False, p=weights / weights.sum())
            x, y = pool_x[picked], pool_y[picked]
        else:
            # Every feature moved by `strength` SD with the labels kept: P(y | x) changes too.
            x, y = draw(2000, rng, strength * sd)
        labels, probabilities = predictor.predict(x)
        monitor = DriftMonitor(predictor.manifest, DEFAULT_WINDOW_ROWS)
        monitor.observe(x, labels, probabilities)
        estimated = monitor.estimated_accuracy()
        assert estimated is not None
        estimates.append(
            {
                "kind": kind,
                "shift_sd": strength,
                "true": float(np.mean(labels == y)),
                "estimated": estimated,
                "mean_confidence": float(probabilities.max(axis=1).mean()),
            }
        )
    warned = [d for d in detect_warn if d >= 0]
    alarmed = [d for d in detect_alarm if d is not None]
    return {
        "rows_to_warn_median": statistics.median(warned) if warned else None,
        "rows_to_warn_max": max(warned) if warned else None,
        "warn_missed": len(detect_warn) - len(warned),
        "rows_to_alarm_median": statistics.median(alarmed) if alarmed else None,
        "rows_to_alarm_max": max(alarmed) if alarmed else None,
        "alarm_missed": len(detect_alarm) - len(alarmed),
        "shift_cases": len(detect_warn),
        "false_alarms_by_call_rows": false_alarms,
        "estimates": estimates,
    }


def serving_figures(seconds: int, rounds: int, workdir: Path) -> dict[str, Any]:
    from sklearn.datasets import load_digits

    bench = _serving_benchmark()
    model = bench.train_digits(workdir / "digits")
    rows = load_digits().data
    one_row = json.dumps({"instances": rows[:1].tolist()})
    batch = json.dumps({"instances": rows[np.random.default_rng(0).integers(0, len(rows), 1000)].tolist()})
    on = start_endpoint(str(model), cpu=0, name="monitored", log_path=workdir / "on.log")
    off = start_endpoint(
        str(model), cpu=0, name="unmonitored", log_path=workdir / "off.log", env={"DRIFT_WINDOW_ROWS": "0"}
    )
    single: dict[str, list[float]] = {"on": [], "off": []}
    batched: dict[str, list[float]] = {"on": [], "off": []}
    try:
        on.wait_ready()
        off.wait_ready()
        for ep in (on, off):
            bench.wrk(f"{ep.url}/v1/predict", 1, bench.CONNECTIONS, one_row, workdir)  # warm-up
        for round_ in range(rounds):
            pair = [("on", on), ("off", off)]
            for key, ep in pair if round_ % 2 == 0 else pair[::-1]:
                single[key].append(
                    bench.wrk(f"{ep.url}/v1/predict", seconds, bench.CONNECTIONS, one_row, workdir)
                )
                batched[key].append(
                    1000 * bench.wrk(f"{ep.url}/v1/predict", seconds, bench.BATCH_CONNECTIONS, batch, workdir)
                )
    finally:
        on.stop()
        off.stop()
    figures = {f"predict_1row_rps_{k}": statistics.median(v) for k, v in single.items()}
    figures |= {f"predict_1000row_rows_per_s_{k}": statistics.median(v) for k, v in batched.items()}
    figures["one_row_on_over_off"] = figures["predict_1row_rps_on"] / figures["predict_1row_rps_off"]
    figures["batch_on_over_off"] = (
        figures["predict_1000row_rows_per_s_on"] / figures["predict_1000row_rows_per_s_off"]
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-serving", action="store_true", help="only the monitor's figures (no wrk)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.skip_serving and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (or pass --skip-serving)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        figures = monitor_figures(train_synthetic(workdir))
        if not args.skip_serving:
            figures |= serving_figures(args.seconds, args.rounds, workdir)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"rows to detection, 0.5-SD shift on one feature ({figures['shift_cases']} cases, window 2,000 "
        f"rows already full): PSI >= {WARN} after {figures['rows_to_warn_median']:.0f} rows (median), "
        f"{figures['rows_to_warn_max']} worst, {figures['warn_missed']} missed; PSI >= {ALARM} after "
        f"{figures['rows_to_alarm_median']:.0f} (median), {figures['rows_to_alarm_max']} worst, "
        f"{figures['alarm_missed']} never within 8,000 rows"
    )
    for call_rows, tally in figures["false_alarms_by_call_rows"].items():
        print(
            f"false alarms, unshifted traffic in calls of {call_rows} rows ({tally['readings']} readings "
            f"of a full window, one per {max(200, call_rows)} rows, judged at the default drift: thresholds; "
            f"{tally['judged']} past min_rows counted): warn or alarm in {tally['warn']}, "
            f"alarm in {tally['alarm']}"
        )
    for e in figures["estimates"]:
        what = (
            f"covariate shift, x0's mean moved {e['shift_sd']:.1f} SD by selection"
            if e["kind"] == "covariate"
            else f"every feature moved {e['shift_sd']:.1f} SD, labels kept (P(y|x) changed)"
        )
        print(
            f"label-free accuracy, {what}: true {e['true']:.3f}, "
            f"estimated {e['estimated']:.3f} (error {e['estimated'] - e['true']:+.3f}), "
            f"uncalibrated mean confidence {e['mean_confidence']:.3f} "
            f"(error {e['mean_confidence'] - e['true']:+.3f})"
        )
    if "one_row_on_over_off" in figures:
        for key, label in (("one_row", "one-row predict"), ("batch", "1,000-row batches")):
            ratio = figures[f"{key}_on_over_off"]
            print(
                f"{label}: monitoring on ÷ off {ratio:.3f} "
                f"(target >= {TARGET_ON_OVER_OFF}: {'met' if ratio >= TARGET_ON_OVER_OFF else 'MISSED'})"
            )
        print(
            f"  one row: {figures['predict_1row_rps_on']:.0f} vs "
            f"{figures['predict_1row_rps_off']:.0f} req/s; "
            f"1,000 rows: {figures['predict_1000row_rows_per_s_on']:.0f} vs "
            f"{figures['predict_1000row_rows_per_s_off']:.0f} rows/s"
        )


if __name__ == "__main__":
    main()
