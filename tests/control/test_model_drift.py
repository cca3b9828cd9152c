"""Model drift in the health rounds: each cloud's `/v1/model/drift` read every round, judged against
the `drift:` configuration, compared across clouds, shown by `health` and `status`.

Three real endpoints (tests/control/conftest.py's fleet). Traffic is iris rows drawn with replacement
(seeded) from the whole dataset, sent to the endpoints directly, as the router's clients would.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from orchestrator.control.config import DriftConfig
from orchestrator.control.health.drift import cross_cloud, judge, parse_drift, read_drift
from orchestrator.training.pipeline import TrainOptions, TrainResult, train
from tests.control.conftest import CLOUDS, Fleet, run_cli

MIN_ROWS = 300


@pytest.fixture(scope="module")
def shuffled_model(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """An iris model trained on shuffled labels: it learned nothing, and says so in its outputs."""
    root = tmp_path_factory.mktemp("shuffled")
    iris = load_iris()
    labels = np.random.default_rng(5).permutation(iris.target)
    table = root / "iris.csv"
    with table.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*iris.feature_names, "species"])
        for row, label in zip(iris.data, labels, strict=True):
            out.writerow([*row, iris.target_names[label]])
    return train(TrainOptions(dataset=str(table), target="species", name="iris", out=root / "out"))


def traffic(n: int, seed: int, shift: dict[int, float] | None = None) -> list[list[float]]:
    x = load_iris().data
    rows = x[np.random.default_rng(seed).integers(0, len(x), n)].copy()
    for column, sds in (shift or {}).items():
        rows[:, column] += sds * x[:, column].std()
    return rows.tolist()


def send(url: str, rows: list[list[float]]) -> None:
    # Requests of 50 rows: every row's features are counted (larger ones are sampled).
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, len(rows), 50):
            assert client.post("/v1/predict", json={"instances": rows[i : i + 50]}).status_code == 200


def health_round(fleet: Fleet, **drift: Any) -> dict[str, Any]:
    config = fleet.config(drift={"min_rows": MIN_ROWS, **drift})
    done = run_cli("health", "--once", "--json", "--config", str(config))
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def test_a_cloud_serving_a_model_with_shuffled_labels_is_flagged_by_the_comparison(
    fleet: Fleet, shuffled_model: TrainResult
) -> None:
    """azure serves a model trained on shuffled labels (a bad publication: another version than the
    two others serve, outside any rollout) on traffic like the others': its inputs do not drift,
    its predictions and confidence do, and only the comparison of the clouds can say so. (During a
    rollout, clouds on different versions are not compared: test_during_a_rollout_...)"""
    fleet.models["shuffled"] = shuffled_model
    fleet.start("azure", "shuffled").wait_ready()
    for i, cloud in enumerate(CLOUDS):
        send(fleet.url(cloud), traffic(600, seed=i))
    report = health_round(fleet, degrade=False)
    drift = {cloud: report["clouds"][cloud]["drift"] for cloud in CLOUDS}
    assert drift["azure"]["cross_cloud"]["flagged"] is True, json.dumps(drift)
    assert "predictions diverge" in drift["azure"]["reason"]
    assert drift["azure"]["status"] == "ok"  # its inputs are the others'
    for cloud in ("aws", "gcp"):
        assert drift[cloud]["cross_cloud"]["flagged"] is False, json.dumps(drift)
    # the label-free estimate tells a model that learned nothing: far less sure
    assert drift["azure"]["estimated_accuracy"] < drift["aws"]["estimated_accuracy"] - 0.2
    config = str(fleet.config())
    table = subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", "--config", config],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=120,
        check=False,
    )
    assert "Traceback" not in table.stderr
    assert "predictions diverge" in table.stdout


def test_a_shifted_cloud_is_named_with_its_feature_and_degraded_when_configured(fleet: Fleet) -> None:
    send(fleet.url("aws"), traffic(600, seed=1, shift={1: 1.0}))  # sepal width, one SD up
    for i, cloud in enumerate(("gcp", "azure")):
        send(fleet.url(cloud), traffic(600, seed=10 + i))
    report = health_round(fleet)
    aws, gcp = report["clouds"]["aws"], report["clouds"]["gcp"]
    assert aws["drift"]["status"] == "alarm"
    assert "sepal width (cm)" in aws["drift"]["over"]
    assert "sepal width (cm)" in aws["drift"]["reason"]
    assert aws["probes"][-1]["verdict"] == "ok", "drift is reported only, by default"
    assert gcp["drift"]["status"] == "ok"
    assert not aws["drift"]["cross_cloud"]["flagged"], "its inputs moved: not a model problem"

    degraded = health_round(fleet, degrade=True)
    probe = degraded["clouds"]["aws"]["probes"][-1]
    assert probe["verdict"] == "degraded"
    assert "sepal width (cm)" in probe["reason"]
    assert degraded["clouds"]["gcp"]["probes"][-1]["verdict"] == "ok"


def test_too_few_rows_are_not_judged(fleet: Fleet) -> None:
    send(fleet.url("aws"), traffic(50, seed=2, shift={2: 3.0}))
    report = health_round(fleet)
    assert report["clouds"]["aws"]["drift"]["status"] == "insufficient"
    assert report["clouds"]["aws"]["drift"]["rows"] == 50


# --- a bad answer is a verdict ("no drift data"), never a crash ----------------------------------

GOOD: dict[str, Any] = {
    "model_name": "iris",
    "model_version": "v3",
    "window": {"rows": 812, "capacity_rows": 2000},
    "features": {"a": {"psi": 0.04, "js_distance": 0.05}},
    "prediction": {
        "counts": {"x": 400, "y": 412},
        "reference": {"x": 0.5, "y": 0.5},
        "psi": 0.01,
        "js_distance": 0.03,
    },
    "confidence": {"mean": 0.91, "reference_mean": 0.93},
    "estimated_accuracy": 0.9,
}


def _broken(path: str, value: Any) -> dict[str, Any]:
    answer = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = answer
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return answer


MALFORMED = [
    ("a list", [1, 2]),
    ("a string", "drift"),
    ("null", None),
    ("no window", _broken("window", KeyError)),
    ("rows as text", _broken("window.rows", "812")),
    ("negative rows", _broken("window.rows", -1)),
    ("rows true", _broken("window.rows", True)),
    ("features a list", _broken("features", [])),
    ("a feature not an object", _broken("features.a", 0.3)),
    ("psi as text", _broken("features.a.psi", "0.3")),
    ("counts a list", _broken("prediction.counts", [1, 2])),
    ("a negative count", _broken("prediction.counts.x", -5)),
    ("a count as float", _broken("prediction.counts.x", 4.5)),
    ("no confidence", _broken("confidence", KeyError)),
    ("accuracy as text", _broken("estimated_accuracy", "high")),
    ("prediction psi an object", _broken("prediction.psi", {})),
]


@pytest.mark.parametrize(("case", "answer"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_a_malformed_answer_is_no_drift_data(case: str, answer: Any) -> None:
    with pytest.raises(ValueError):
        parse_drift(answer)
    reading = asyncio.run(_read(httpx.MockTransport(lambda _: httpx.Response(200, json=answer))))
    assert reading[0] is None
    assert reading[1]
    assert judge(*reading, DriftConfig())["status"] == "unavailable"


async def _read(transport: httpx.AsyncBaseTransport, timeout_s: float = 1.0) -> Any:
    async with httpx.AsyncClient(transport=transport) as client:
        return await read_drift(client, "http://endpoint", timeout_s=timeout_s)


def test_no_answer_in_time_or_of_the_wrong_kind_is_no_drift_data() -> None:
    async def hang(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    reading, problem = asyncio.run(asyncio.wait_for(_read(httpx.MockTransport(hang), 0.2), 5))
    assert reading is None
    assert "timed out" in str(problem)
    cases = [
        httpx.Response(404, json={"error": "not found"}),  # an endpoint made before drift monitoring
        httpx.Response(500, text="boom"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, content=b"x" * (2 * 1024 * 1024)),  # over the probes' body cap
        httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"\x1f\x8b"),
    ]
    for response in cases:
        reading, problem = asyncio.run(_read(httpx.MockTransport(lambda _, r=response: r)))
        assert reading is None, response
        assert problem, response
    assert asyncio.run(_read(httpx.MockTransport(lambda _: httpx.Response(200, json=GOOD))))[0] is not None


def test_the_cross_cloud_rule() -> None:
    """Flagged: predicted-class shares far from the other clouds' pooled ones (JS distance >=
    prediction_divergence) while no feature's PSI reaches psi_warn. Not judged under three clouds
    with min_rows rows."""
    cfg = DriftConfig(min_rows=100)

    def reading(counts: dict[str, int], psi: float = 0.01) -> Any:
        return parse_drift(
            {
                **GOOD,
                "window": {"rows": sum(counts.values()), "capacity_rows": 2000},
                "features": {"a": {"psi": psi}},
                "prediction": {**GOOD["prediction"], "counts": counts},
            }
        )

    even = {"x": 100, "y": 100, "z": 100}
    skewed = {"x": 290, "y": 5, "z": 5}
    result = cross_cloud({"aws": reading(even), "gcp": reading(even), "azure": reading(skewed)}, cfg)
    assert [c for c, r in result.items() if r["flagged"]] == ["azure"]
    # the same outputs with its inputs shifted: the traffic changed, not the model
    shifted = cross_cloud(
        {"aws": reading(even), "gcp": reading(even), "azure": reading(skewed, psi=0.5)}, cfg
    )
    assert not shifted["azure"]["flagged"]
    # two clouds cannot say which one differs; a cloud under min_rows is left out
    assert cross_cloud({"aws": reading(even), "azure": reading(skewed)}, cfg) == {}
    few = {"x": 30, "y": 1, "z": 1}
    assert cross_cloud({"aws": reading(even), "gcp": reading(even), "azure": reading(few)}, cfg) == {}
    assert cross_cloud({"aws": reading(even), "gcp": None, "azure": reading(skewed)}, cfg) == {}


def test_min_rows_above_the_endpoints_window_is_said_and_large_calls_judged_on_rows_counted() -> None:
    """An endpoint whose window cannot hold min_rows is "insufficient" with a reason saying min_rows
    is above its window; one whose features were counted on a sample is judged on counted_rows."""
    small = parse_drift({**GOOD, "window": {"rows": 300, "capacity_rows": 300}})
    verdict = judge(small, None, DriftConfig(min_rows=500))
    assert verdict["status"] == "insufficient"
    assert "above the endpoint's window of 300 rows" in verdict["reason"]
    sampled = parse_drift({**GOOD, "window": {"rows": 2000, "counted_rows": 499, "capacity_rows": 2000}})
    verdict = judge(sampled, None, DriftConfig(min_rows=500))
    assert verdict["status"] == "insufficient"
    assert "499 rows counted" in verdict["reason"]
    assert verdict["counted_rows"] == 499
    assert (
        judge(parse_drift({**GOOD, "window": {"rows": 812, "capacity_rows": 2000}}), None, DriftConfig())[
            "counted_rows"
        ]
        == 812
    ), "an endpoint that does not say counts every row"
    for bad in (-1, 2001, "500", True, 1.5):
        with pytest.raises(ValueError, match="counted_rows"):
            parse_drift({**GOOD, "window": {"rows": 2000, "counted_rows": bad, "capacity_rows": 2000}})


def test_during_a_rollout_only_clouds_on_one_model_version_are_compared() -> None:
    """Outside a rollout a cloud on another version is compared with the others (and flagged when
    it predicts otherwise). During one, clouds are compared only with clouds serving the same model
    version: a cloud on the new version is "not compared: different versions", never flagged; three
    clouds on one version are still compared beside it, and the odd one among them flagged."""
    cfg = DriftConfig(min_rows=100)

    def reading(counts: dict[str, int], version: str) -> Any:
        return parse_drift(
            {
                **GOOD,
                "model_version": version,
                "window": {"rows": sum(counts.values()), "capacity_rows": 2000},
                "features": {"a": {"psi": 0.01}},
                "prediction": {**GOOD["prediction"], "counts": counts},
            }
        )

    even = {"x": 100, "y": 100, "z": 100}
    skewed = {"x": 290, "y": 5, "z": 5}
    mixed = {"aws": reading(even, "v1"), "gcp": reading(even, "v1"), "azure": reading(skewed, "v2")}
    outside = cross_cloud(mixed, cfg)  # outside a rollout: another version is what the check is for
    assert [c for c, r in outside.items() if r["flagged"]] == ["azure"]
    rollout = cross_cloud(mixed, cfg, across_versions=False)
    assert rollout == {
        c: {
            "js_distance": None,
            "confidence_gap": None,
            "flagged": False,
            "not_compared": "different versions",
        }
        for c in ("aws", "gcp", "azure")
    }
    four = cross_cloud(
        {
            "aws": reading(even, "v1"),
            "gcp": reading(even, "v1"),
            "azure": reading(skewed, "v1"),
            "edge": reading(skewed, "v2"),
        },
        cfg,
        across_versions=False,
    )
    assert [c for c, r in four.items() if r["flagged"]] == ["azure"]
    assert four["edge"]["not_compared"] == "different versions"
    assert "not_compared" not in four["aws"]


def test_the_drift_section_is_checked(tmp_path: Path) -> None:
    from orchestrator.control.config import load_config

    base = {
        "model": {"name": "iris"},
        "clouds": {"aws": {"endpoint": "http://127.0.0.1:1", "storage": f"file://{tmp_path}"}},
    }
    bad = [
        {"psi_warn": 0.3, "psi_alarm": 0.2},
        {"psi_warn": -1},
        {"min_rows": 0},
        {"degrade": "sometimes"},
        {"prediction_divergence": 2},
        {"psi_warm": 0.1},
    ]
    import yaml

    from orchestrator.core.errors import ConfigError

    for i, section in enumerate(bad):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump({**base, "drift": section}))
        with pytest.raises(ConfigError, match="drift"):
            load_config(path)
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump({**base, "drift": {"degrade": True, "min_rows": 100}}))
    assert load_config(path).drift.degrade is True


def test_drift_report_writes_markdown_and_plots_with_its_exit_codes(fleet: Fleet, tmp_path: Path) -> None:
    config = str(fleet.config(drift={"min_rows": MIN_ROWS}))
    for i, cloud in enumerate(CLOUDS):
        send(fleet.url(cloud), traffic(600, seed=20 + i))
    calm = run_cli("drift", "report", "--out", str(tmp_path / "calm"), "--config", config)
    assert calm.returncode == 0, calm.stdout + calm.stderr
    send(fleet.url("aws"), traffic(1500, seed=30, shift={1: 1.0}))
    out = tmp_path / "report"
    done = run_cli("drift", "report", "--out", str(out), "--json", "--config", config)
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["clouds"]["aws"]["status"] == "alarm"
    assert "sepal width (cm)" in answer["clouds"]["aws"]["over"]
    markdown = (out / "drift.md").read_text()
    assert "## aws: alarm" in markdown
    assert "sepal width (cm)" in markdown
    for png in ("aws.png", "gcp.png", "azure.png", "predictions.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_drift_report_exits_2_without_any_drift_data(tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    c: {"endpoint": f"http://127.0.0.1:{9 + i}", "storage": f"file://{tmp_path}"}
                    for i, c in enumerate(CLOUDS)
                },
                "health": {"timeout_s": 0.5},
            }
        )
    )
    done = run_cli("drift", "report", "--out", str(tmp_path / "out"), "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "no drift data" in done.stdout
    assert (tmp_path / "out" / "drift.md").exists()


# --- drift report: whatever an endpoint names, without matplotlib, a bad --out -------------------

# Endpoint-supplied names that matplotlib's mathtext or Markdown would read as markup.
HOSTILE_NAMES = [
    "$",
    "price in $",
    "$x$",
    "a$b$c$",
    r"$\frac{1$",
    r"$\undefinedcommand$",
    "![img](http://example.invalid/x.png)",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "*bold* _it_ `code` ~x~ &amp; #h",
    "line\nbreak | pipe",
]


def _offline_config(tmp_path: Path) -> Path:
    import yaml

    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    c: {"endpoint": f"http://127.0.0.1:{9 + i}", "storage": f"file://{tmp_path}"}
                    for i, c in enumerate(CLOUDS)
                },
                "health": {"timeout_s": 0.5},
            }
        )
    )
    return config


def _hostile_clouds() -> list[Any]:
    from orchestrator.control.drift_report import CloudDrift

    cfg = DriftConfig(min_rows=10)
    features = {name: {"psi": 0.3 - i / 100, "js_distance": 0.1} for i, name in enumerate(HOSTILE_NAMES)}
    counts = {name: 10 + i for i, name in enumerate(HOSTILE_NAMES)}
    reading = parse_drift(
        {
            **GOOD,
            "model_version": "$v$ ![x](y)",
            "window": {"rows": sum(counts.values()), "capacity_rows": 2000},
            "features": features,
            "prediction": {**GOOD["prediction"], "counts": counts, "reference": dict.fromkeys(counts, 0.1)},
        }
    )
    return [CloudDrift(c, reading, judge(reading, None, cfg)) for c in CLOUDS]


def test_drift_report_draws_and_escapes_any_endpoint_supplied_name(tmp_path: Path) -> None:
    """Feature names and class labels with mathtext (`$`) or Markdown link/image/HTML syntax: the
    plots are drawn (names as plain text) and drift.md shows them inert (no link, image or tag)."""
    from orchestrator.control.config import load_config
    from orchestrator.control.drift_report import write_report

    config = load_config(str(_offline_config(tmp_path)))
    path, notes = write_report(_hostile_clouds(), config, tmp_path / "out")
    assert notes == []
    for png in ("aws.png", "gcp.png", "azure.png", "predictions.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    markdown = path.read_text()
    assert "![img](" not in markdown
    assert "[click](" not in markdown
    assert markdown.count("<img") == markdown.count("\\<img") > 0, "a tag only escaped"
    assert r"\!\[img\](http://example.invalid/x.png)" in markdown
    assert markdown.count("![") == 4, "only the report's own four images"
    assert "line break \\| pipe" in markdown


def test_drift_report_without_matplotlib_writes_markdown_and_says_so(tmp_path: Path) -> None:
    """No matplotlib (it is not in the image's extras): drift.md without plots, and one line saying
    why, through the real import machinery (matplotlib made unimportable in a fresh interpreter)."""
    script = (
        "import sys, json, pathlib\n"
        "sys.modules['matplotlib'] = None\n"
        "from tests.control.test_model_drift import _hostile_clouds, _offline_config\n"
        "from orchestrator.control.config import load_config\n"
        "from orchestrator.control.drift_report import write_report\n"
        "tmp = pathlib.Path(sys.argv[1])\n"
        "path, notes = write_report(_hostile_clouds(), load_config(str(_offline_config(tmp))), tmp / 'out')\n"
        "print(json.dumps({'path': str(path), 'notes': notes}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert len(answer["notes"]) == 1
    assert "matplotlib is not installed" in answer["notes"][0]
    markdown = Path(answer["path"]).read_text()
    assert "matplotlib is not installed" in markdown
    assert "![" not in markdown
    assert not list((tmp_path / "out").glob("*.png"))


def test_drift_report_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    """--out naming an existing file: one line naming it, exit 2, the file untouched; a directory
    that cannot be made under a file: one line, exit 1."""
    config = str(_offline_config(tmp_path))
    afile = tmp_path / "afile"
    afile.write_text("keep")
    done = run_cli("drift", "report", "--out", str(afile), "--config", config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(afile) in done.stderr
    assert afile.read_text() == "keep"
    under = run_cli("drift", "report", "--out", str(afile / "sub"), "--config", config)
    assert under.returncode == 1, under.stdout + under.stderr
    assert "Traceback" not in under.stderr
    assert str(afile / "sub") in under.stderr
