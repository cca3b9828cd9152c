"""Drift monitoring on real endpoint processes: the digits model's reference profile against traffic.

Traffic is drawn (with replacement, seeded) from the digits training split, the rows the profile was
made from: unshifted traffic is the reference's own population. A shift adds half the feature's
standard deviation to one feature. "Flagged" is a PSI at or over 0.1, the usual warning reading.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from orchestrator.core.artifact.manifest import parse_manifest
from orchestrator.core.errors import ArtifactError
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.training.pipeline import TrainResult
from serving.drift import SUB_WINDOWS, DriftMonitor, js_distance, psi
from tests.serving.conftest import StartEndpoint

WARN = 0.1
WINDOW = 2000
# A 0.5-SD shift on one digits pixel is flagged within this many shifted rows (measured: see
# benchmarks/drift.py; a quarter of the window here leaves the test room on any seed).
ROWS_TO_DETECT = 1000
SHIFTED = "pixel_3_4"  # a mid-image pixel with a wide spread of values


def training_rows(model: TrainResult) -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    test = set(model.manifest.split["test_indices"])
    return x[[i for i in range(len(x)) if i not in test]]


@pytest.fixture(scope="module")
def drift_endpoint(digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    log = tmp_path_factory.mktemp("drift-logs") / "serve.log"
    ep = start_endpoint(str(digits_model.path), log_path=log)
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


def send(client: httpx.Client, rows: np.ndarray, batch: int = 100) -> None:
    for i in range(0, len(rows), batch):
        r = client.post("/v1/predict", json={"instances": rows[i : i + batch].tolist()})
        assert r.status_code == 200, r.text


def drift(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/v1/model/drift")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_half_sd_shift_on_one_feature_is_flagged_and_no_other(
    digits_model: TrainResult, drift_endpoint: Endpoint
) -> None:
    rows = training_rows(digits_model)
    column = digits_model.manifest.features.names.index(SHIFTED)
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=drift_endpoint.url, timeout=30) as client:
        send(client, rows[rng.integers(0, len(rows), WINDOW)])
        before = drift(client)
        assert before["window"] == {"rows": WINDOW, "counted_rows": WINDOW // 4, "capacity_rows": WINDOW}
        assert max(f["psi"] for f in before["features"].values()) < WARN
        shift = 0.5 * rows[:, column].std()
        sent, flagged_at = 0, None
        while sent < ROWS_TO_DETECT and flagged_at is None:
            shifted = rows[rng.integers(0, len(rows), 50)].copy()
            shifted[:, column] += shift
            send(client, shifted)
            sent += 50
            if drift(client)["features"][SHIFTED]["psi"] >= WARN:
                flagged_at = sent
        assert flagged_at is not None, f"not flagged within {ROWS_TO_DETECT} shifted rows"
        after = drift(client)
        others = {k: v["psi"] for k, v in after["features"].items() if k != SHIFTED}
        assert max(others.values()) < WARN, "only the shifted feature is flagged"


def test_unshifted_traffic_raises_no_alarm_over_many_windows(
    digits_model: TrainResult, serve_artifact: StartEndpoint
) -> None:
    """20 windows of unshifted rows, read after every 200 rows: 200 readings, no feature and no
    prediction PSI at the warning level (a false-alarm rate of 0 of 200 readings)."""
    ep = serve_artifact(digits_model.path).wait_ready()
    rows = training_rows(digits_model)
    rng = np.random.default_rng(11)
    readings, alarms = 0, 0
    with httpx.Client(base_url=ep.url, timeout=30) as client:
        send(client, rows[rng.integers(0, len(rows), WINDOW)], batch=200)
        for _ in range(20 * SUB_WINDOWS):
            send(client, rows[rng.integers(0, len(rows), WINDOW // SUB_WINDOWS)], batch=200)
            answer = drift(client)
            readings += 1
            worst = max(f["psi"] for f in answer["features"].values())
            alarms += worst >= WARN or answer["prediction"]["psi"] >= WARN
            assert answer["window"]["rows"] == WINDOW, "the window never holds more than its capacity"
    assert readings == 200
    assert alarms == 0, f"{alarms} false alarms in {readings} readings"


def test_the_window_is_bounded_and_holds_no_request_data(digits_model: TrainResult) -> None:
    """Only counts are kept: the monitor's arrays are the same size before and after 20,000 rows
    (one request larger than the window counts its last rows only), and none of them holds a
    request's values."""
    from serving.model import load_verified

    predictor = load_verified(digits_model.path)
    monitor = DriftMonitor(predictor.manifest, WINDOW)

    def arrays() -> dict[str, tuple[tuple[int, ...], str]]:
        return {k: (v.shape, v.dtype.str) for k, v in vars(monitor).items() if isinstance(v, np.ndarray)}

    shapes = arrays()
    rows = training_rows(digits_model)
    marker = np.tile(rows, (4, 1))[:5000].copy()
    marker[:, 0] = 123.456  # a value no bin edge or count can be
    labels, probabilities = predictor.predict(marker)
    monitor.observe(marker, labels, probabilities)
    assert monitor.window_rows == WINDOW
    for _ in range(30):
        chunk = rows[:500]
        monitor.observe(chunk, *predictor.predict(chunk))
    assert monitor.window_rows == WINDOW
    sizes = np.random.default_rng(1).integers(1, 700, 200)  # calls of any size: never over capacity
    for size in sizes:
        chunk = rows[:size]
        monitor.observe(chunk, *predictor.predict(chunk))
        assert 0 < monitor.window_rows <= WINDOW
        assert monitor.window_rows >= min(size, WINDOW)
    assert arrays() == shapes
    for value in vars(monitor).values():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert not np.any(np.isclose(value, 123.456))


def test_js_distance_is_scipys_and_psi_the_formula() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        bins = int(rng.integers(2, 12))
        p, q = rng.random(bins), rng.random(bins)
        p[rng.integers(0, bins)] = 0.0  # empty bins are part of the definition
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
        a, e = p / p.sum(), q / q.sum()
        a2, e2 = np.maximum(a, 1e-4), np.maximum(e, 1e-4)
        assert psi(a, e) == pytest.approx(float(np.sum((a2 - e2) * np.log(a2 / e2))), abs=1e-12)
    same = np.array([0.2, 0.3, 0.5])
    assert js_distance(same, same) == 0.0
    assert psi(same, same) == 0.0


def test_canary_rows_of_the_health_probes_are_not_traffic(
    digits_model: TrainResult, serve_artifact: StartEndpoint
) -> None:
    ep = serve_artifact(digits_model.path).wait_ready()
    rows = digits_model.manifest.canary.instances
    with httpx.Client(base_url=ep.url, timeout=30) as client:
        assert drift(client)["window"]["rows"] == 0
        r = client.post("/v1/predict", json={"instances": rows}, headers={"x-mlorch-canary": "1"})
        assert r.status_code == 200
        assert drift(client)["window"]["rows"] == 0
        client.post("/v1/predict", json={"instances": rows})
        assert drift(client)["window"]["rows"] == len(rows)
        # KServe V2 /infer honours the header the same way (the V2 canary is no traffic either)
        name = digits_model.manifest.name
        flat = [v for row in rows for v in row]
        body = {
            "inputs": [
                {"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": flat}
            ]
        }
        for headers, counted in (({"x-mlorch-canary": "1"}, 0), ({}, len(rows))):
            r = client.post(f"/v2/models/{name}/infer", json=body, headers=headers)
            assert r.status_code == 200, r.text
            assert drift(client)["window"]["rows"] == len(rows) + counted


def test_the_drift_answer_and_the_gauges_agree(
    digits_model: TrainResult, serve_artifact: StartEndpoint
) -> None:
    ep = serve_artifact(digits_model.path).wait_ready()
    rows = training_rows(digits_model)[:300]
    with httpx.Client(base_url=ep.url, timeout=30) as client:
        empty = drift(client)
        assert empty["features"][SHIFTED] == {"psi": None, "js_distance": None}
        assert empty["prediction"]["psi"] is None
        assert empty["estimated_accuracy"] is None
        assert empty["confidence"]["mean"] is None
        assert empty["prediction"]["reference"] is not None
        # the V2 protocol's rows count as well as /v1/predict's
        v2 = {
            "inputs": [
                {"name": "input", "shape": [300, 64], "datatype": "FP64", "data": rows.ravel().tolist()}
            ]
        }
        assert client.post("/v2/models/digits/infer", json=v2).status_code == 200
        answer = drift(client)
        metrics = client.get("/metrics").text
    assert answer["window"]["rows"] == 300
    assert sum(answer["prediction"]["counts"].values()) == 300
    assert 0.0 <= answer["estimated_accuracy"] <= 1.0
    line = next(
        text
        for text in metrics.splitlines()
        if text.startswith("mlorch_drift_feature_psi{") and SHIFTED in text
    )
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(answer["features"][SHIFTED]["psi"])
    assert "mlorch_drift_window_rows{" in metrics
    assert "mlorch_drift_estimated_accuracy{" in metrics


def test_a_model_without_a_profile_answers_without_a_reference(
    artifact_copy: Path, serve_artifact: StartEndpoint
) -> None:
    path = artifact_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["reference_profile"]
    path.write_text(json.dumps(manifest))
    ep = serve_artifact(artifact_copy).wait_ready()
    with httpx.Client(base_url=ep.url, timeout=30) as client:
        client.post("/v1/predict", json={"instances": manifest["canary"]["instances"]})
        answer = drift(client)
    assert answer["features"] == {}
    assert answer["prediction"]["reference"] is None
    assert answer["prediction"]["psi"] is None
    assert answer["prediction"]["js_distance"] is None
    assert sum(answer["prediction"]["counts"].values()) == len(manifest["canary"]["instances"])
    assert answer["confidence"]["reference_mean"] is None
    assert 0.0 < answer["confidence"]["mean"] <= 1.0


def test_monitoring_off_answers_404_and_a_bad_window_is_refused(
    digits_model: TrainResult, tmp_path: Path
) -> None:
    ep = start_endpoint(str(digits_model.path), log_path=tmp_path / "off.log", env={"DRIFT_WINDOW_ROWS": "0"})
    try:
        ep.wait_ready()
        r = httpx.get(f"{ep.url}/v1/model/drift")
        assert r.status_code == 404
        assert "DRIFT_WINDOW_ROWS" in r.json()["error"]
    finally:
        ep.stop()
    import subprocess
    import sys

    for bad in ("-5", "5", "lots", "10000001", "15", "2005", "999999"):
        done = subprocess.run(
            [sys.executable, "-m", "serving", "--model", str(digits_model.path)],
            env={"DRIFT_WINDOW_ROWS": bad, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "DRIFT_WINDOW_ROWS" in done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# --- bad and hostile profiles: the manifest is refused, like any other manifest fault -----------


def _profile_cases() -> list[tuple[str, Any]]:
    def numeric(edges: Any, frequencies: Any) -> dict[str, Any]:
        return {"kind": "numeric", "edges": edges, "frequencies": frequencies}

    ten = [0.1] * 9 + [0.1, 0.0]
    return [
        ("unsorted edges", ("features", SHIFTED, numeric([3.0, 1.0, *range(4, 11)], ten))),
        ("repeated edges", ("features", SHIFTED, numeric([1.0, 1.0, *range(3, 10)], ten))),
        ("edges as text", ("features", SHIFTED, numeric(["1", *range(2, 10)], ten))),
        ("infinite edge", ("features", SHIFTED, numeric([7777.5, *range(2, 10)], ten))),
        ("too many edges", ("features", SHIFTED, numeric(list(range(100)), [1 / 102] * 102))),
        ("shares not summing to 1", ("features", SHIFTED, numeric(list(range(9)), [0.2] * 11))),
        ("negative share", ("features", SHIFTED, numeric(list(range(9)), [-0.1, 0.2, *[0.1] * 9]))),
        ("wrong number of shares", ("features", SHIFTED, numeric(list(range(9)), [0.1] * 10))),
        ("unknown kind", ("features", SHIFTED, {"kind": "text", "edges": [], "frequencies": [1.0]})),
        (
            "kind of another feature",
            ("features", SHIFTED, {"kind": "categorical", "categories": [], "frequencies": [1.0]}),
        ),
        ("a feature missing", ("drop", SHIFTED, None)),
        ("an unknown feature", ("features", "pixel_9_9", numeric([], [1.0, 0.0]))),
        ("prediction of other classes", ("prediction", None, {"frequencies": [0.5, 0.5]})),
        ("confidence edge outside (0, 1)", ("confidence_edges", None, [0.0, 0.5])),
        ("accuracy over 1", ("confidence_accuracy", None, 2.0)),
        ("not an object", ("whole", None, [1, 2, 3])),
        ("an unknown key", ("extra", None, None)),
    ]


def _hostile(manifest: dict[str, Any], change: tuple[str, Any, Any]) -> dict[str, Any]:
    where, key, value = change
    profile = manifest["reference_profile"]
    if where == "features":
        profile["features"][key] = value
    elif where == "drop":
        del profile["features"][key]
    elif where == "prediction":
        profile["prediction"] = value
    elif where == "confidence_edges":
        profile["confidence"]["edges"] = value
    elif where == "confidence_accuracy":
        profile["confidence"]["accuracy"][-1] = value
    elif where == "whole":
        manifest["reference_profile"] = value
    elif where == "extra":
        profile["rows_seen"] = [1, 2]
    return manifest


@pytest.mark.parametrize(("case", "change"), _profile_cases(), ids=[c for c, _ in _profile_cases()])
def test_a_bad_profile_makes_the_manifest_invalid(digits_model: TrainResult, case: str, change: Any) -> None:
    manifest = json.loads((digits_model.path / "manifest.json").read_text())
    raw = json.dumps(_hostile(manifest, change)).replace("7777.5", "1e309")  # JSON's largest overflows
    with pytest.raises(ArtifactError, match=r"reference_profile|not valid JSON"):
        parse_manifest(raw.encode(), source=case)


def test_a_hostile_profile_is_refused_at_reload_and_the_last_good_model_serves(
    artifact_copy: Path, serve_artifact: StartEndpoint
) -> None:
    ep = serve_artifact(artifact_copy, "--reload-interval", "0.2").wait_ready()
    path = artifact_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    version = manifest["version"]
    rows = manifest["canary"]["instances"]
    with httpx.Client(base_url=ep.url, timeout=30) as client:
        client.post("/v1/predict", json={"instances": rows})
        manifest["version"] = "v-hostile"
        manifest["reference_profile"]["features"][SHIFTED]["edges"] = [5.0, 1.0]
        path.write_text(json.dumps(manifest))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = client.get("/readyz").json()
            if ready.get("last_error"):
                break
            time.sleep(0.1)
        assert "reference_profile" in ready["last_error"]
        assert ready["version"] == version
        r = client.post("/v1/predict", json={"instances": rows})
        assert r.status_code == 200
        assert r.json()["version"] == version
        answer = drift(client)
        assert answer["model_version"] == version
        assert answer["window"]["rows"] == 2 * len(rows)


def test_rows_are_counted_into_the_reference_bins_exactly(digits_model: TrainResult) -> None:
    """The monitor's vectorised counts equal a per-value searchsorted over the profile's cut points,
    for values equal to a cut point (the lower bin, as the profile was made), missing values (their
    own bin), values far outside the range, and a window sliding over sub-windows."""
    manifest = digits_model.manifest
    profile = manifest.reference_profile
    assert profile is not None
    names = manifest.features.names
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 17, (700, 64)).astype(np.float64)  # digits' pixel values, ties on edges
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows[0, :] = 1e300
    rows[1, :] = -1e300
    monitor = DriftMonitor(manifest, WINDOW)
    labels = rng.integers(0, 10, len(rows))
    probabilities = np.full((len(rows), 10), 0.1)
    # Requests of 25 rows: every row counted (larger ones are sampled, below), each request in
    # one sub-window of 200 rows (one spread over two is below).
    for start in range(0, 700, 25):
        chunk = slice(start, start + 25)
        monitor.observe(rows[chunk], labels[chunk], probabilities[chunk])
    counted = monitor.numeric_bin_counts()
    for j, name in enumerate(names):
        edges = np.asarray(profile.features[name].edges)
        present = rows[:, j][~np.isnan(rows[:, j])]
        expected = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
        assert counted[j, : len(edges) + 1].tolist() == expected.tolist(), name
        assert counted[j, len(edges) + 1 : -1].sum() == 0, name
        assert counted[j, -1] == np.isnan(rows[:, j]).sum(), name
    assert monitor.class_counts.sum(axis=0).tolist() == np.bincount(labels, minlength=10).tolist()


def test_a_large_request_is_counted_on_a_weighted_sample(digits_model: TrainResult) -> None:
    """Past FULL_COUNT_ROWS rows, features are counted on one row in SAMPLE_EVERY, each weighing
    SAMPLE_EVERY: the window's feature counts stand for every row, classes are counted exactly
    (a call of 1,000 rows spread over five sub-windows of 200), and the PSI of the same rows
    differs little from the exact count's."""
    from serving.drift import FULL_COUNT_ROWS, SAMPLE_EVERY

    manifest = digits_model.manifest
    rows = training_rows(digits_model)
    rng = np.random.default_rng(9)
    sample = rows[rng.integers(0, len(rows), 2000)]
    labels = rng.integers(0, 10, 2000)
    probabilities = np.full((2000, 10), 0.1)
    # The exact count's window is larger: requests of 64 rows do not pack sub-windows of 200 rows
    # exactly, and a request that does not fit starts the next sub-window.
    exact, sampled = DriftMonitor(manifest, 10 * WINDOW), DriftMonitor(manifest, WINDOW)
    for start in range(0, 2000, FULL_COUNT_ROWS):
        chunk = slice(start, start + FULL_COUNT_ROWS)
        exact.observe(sample[chunk], labels[chunk], probabilities[chunk])
    for start in range(0, 2000, 1000):
        chunk = slice(start, start + 1000)
        sampled.observe(sample[chunk], labels[chunk], probabilities[chunk])
    assert sampled.window_rows == exact.window_rows == 2000
    assert sum(sampled.feature_rows) == pytest.approx(2000)
    np.testing.assert_allclose(sampled.numeric_bin_counts().sum(axis=1), 2000)
    np.testing.assert_allclose(sampled.class_counts.sum(axis=0), exact.class_counts.sum(axis=0))
    assert SAMPLE_EVERY > 1
    a, b = exact.report()["features"], sampled.report()["features"]
    assert max(abs(a[k]["psi"] - b[k]["psi"]) for k in a) < 0.05


@pytest.mark.parametrize("call_rows", [1, 100, 1000])
def test_unshifted_traffic_in_calls_of_any_size_is_never_judged_drifting(
    digits_model: TrainResult, call_rows: int
) -> None:
    """Unshifted rows sent in model calls of 1, 100 or 1,000 rows (a large call's features are
    counted on a sample): read after every call, from the first row on, the control plane's verdict
    at the default ``drift:`` thresholds is never ``warn`` or ``alarm``: ``min_rows`` is judged on
    the rows actually counted (``window.counted_rows``), whose noise the PSI carries."""
    from orchestrator.control.config_drift import DriftConfig
    from orchestrator.control.health.drift import judge, parse_drift

    manifest = digits_model.manifest
    assert manifest.reference_profile is not None
    shares = np.asarray(manifest.reference_profile.prediction.frequencies)
    rows = training_rows(digits_model)
    rng = np.random.default_rng(call_rows)
    cfg = DriftConfig()
    statuses: dict[str, int] = {}
    windows = 4 if call_rows > 1 else 1
    for _ in range(windows):
        monitor = DriftMonitor(manifest, WINDOW)
        for _ in range(0, 2 * WINDOW, call_rows):
            x = rows[rng.integers(0, len(rows), call_rows)]
            labels = rng.choice(len(shares), call_rows, p=shares)
            monitor.observe(x, labels, np.full((call_rows, len(shares)), 1 / len(shares)))
            if call_rows > 1 or monitor.window_rows % 100 == 0:
                answer = monitor.report()
                verdict = judge(parse_drift(answer), None, cfg)
                statuses[verdict["status"]] = statuses.get(verdict["status"], 0) + 1
                assert answer["window"]["counted_rows"] <= answer["window"]["rows"]
        window = monitor.report()["window"]
        assert window["rows"] == WINDOW
        assert window["counted_rows"] == (WINDOW if call_rows <= 64 else WINDOW // 4)
    assert set(statuses) <= {"ok", "insufficient"}, statuses
    assert statuses.get("ok", 0) > 0, "full windows are judged"


@pytest.mark.parametrize("reference_rows", [200, 240, 449, 1000])
def test_a_small_training_table_gives_no_permanent_false_warning(reference_rows: int) -> None:
    """PSI of unshifted traffic carries the reference's own sampling noise too (about
    (bins - 1) / reference rows): a profile made from few rows gets fewer bins, so 500 live rows of
    the same population stay under the 0.1 warning on every feature, for every seed."""
    from orchestrator.training.profile import REFERENCE_NOISE_PSI, reference_profile
    from orchestrator.training.tables import TypedColumn

    worst = 0.0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        table = rng.normal(size=(reference_rows + 500, 4))
        columns = [TypedColumn(f"f{i}", "numeric", table[:, i]) for i in range(4)]
        profile = reference_profile(
            columns, np.arange(reference_rows), np.full((10, 2), 0.5), source="test rows"
        )
        for i in range(4):
            ref = profile["features"][f"f{i}"]
            bins = len(ref["edges"]) + 1
            assert (bins - 1) / reference_rows <= REFERENCE_NOISE_PSI
            live = np.bincount(
                np.searchsorted(np.asarray(ref["edges"]), table[reference_rows:, i], side="left"),
                minlength=bins,
            )
            value = float(psi(np.append(live / 500, 0.0), np.asarray(ref["frequencies"])))
            worst = max(worst, value)
    assert worst < WARN, f"unshifted traffic's PSI reached {worst:.3f} on a {reference_rows}-row profile"


def test_a_request_of_the_old_model_finishing_after_a_reload_leaves_the_new_window(
    digits_model: TrainResult,
) -> None:
    """A reload swaps the model while a request of the old one is in flight: when it finishes, its
    rows are not counted, and the new model's window keeps what it has counted."""
    from serving.model import load_verified
    from serving.reload import ModelHolder
    from serving.runtime import Runtime
    from serving.telemetry import Metrics

    old, new = load_verified(digits_model.path), load_verified(digits_model.path)
    holder = ModelHolder(loader=lambda _: new, metrics=Metrics(), current=old)
    rt = Runtime(holder=holder, metrics=Metrics(), drift_window_rows=WINDOW)
    rows = training_rows(digits_model)[:30]
    labels, probabilities = old.predict(rows)
    rt.observe_drift(old, rows, labels, probabilities)
    holder.current = new  # the reload's swap
    rt.observe_drift(new, rows[:20], labels[:20], probabilities[:20])
    rt.observe_drift(old, rows, labels, probabilities)  # the old model's request finishing late
    monitor = rt.drift(new)
    assert monitor is not None
    assert monitor.window_rows == 20


def test_every_failure_of_the_monitor_is_counted_and_the_prediction_goes_on(
    digits_model: TrainResult,
) -> None:
    """A monitor that fails (here rows of the wrong width) never fails the prediction: each
    failure adds one to mlorch_drift_monitor_failures_total (the log says so once)."""
    from serving.model import load_verified
    from serving.reload import ModelHolder
    from serving.runtime import Runtime
    from serving.telemetry import Metrics

    model = load_verified(digits_model.path)
    metrics = Metrics()
    rt = Runtime(holder=ModelHolder(loader=lambda _: model, metrics=metrics, current=model), metrics=metrics)
    rows = training_rows(digits_model)[:5]
    labels, probabilities = model.predict(rows)
    for _ in range(3):
        rt.observe_drift(model, rows[:, :3], labels, probabilities)  # three columns of 64: fails
    value = metrics.registry.get_sample_value("mlorch_drift_monitor_failures_total")
    assert value == 3
