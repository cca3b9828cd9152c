"""`orchestrator train` as a user runs it: a real process, its exit code, stdout, stderr and the disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.core.artifact.integrity import verify_artifact


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_imports_no_ml_library():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['orchestrator', 'train', '--help']\n"
        "try:\n"
        "    runpy.run_module('orchestrator', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'numpy', 'sklearn', 'skl2onnx', 'onnx', 'onnxruntime', 'pandas', 'matplotlib', 'scipy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "--min-f1-macro" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_train_prints_a_summary_and_the_artifact_path_last(tmp_path):
    result = run(
        "train", "--dataset", "iris", "--strategy", "ovr", "--out", "arts", "--seed", "3", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    path = Path(lines[-1])
    manifest = verify_artifact(path)
    assert path == (tmp_path / "arts" / "iris" / manifest.version).resolve()
    assert manifest.training["strategy"] == "ovr"
    assert manifest.split["seed"] == 3
    summary = "\n".join(lines[:-1])
    assert manifest.version in summary
    assert f"F1 macro {manifest.metrics['f1_macro']:.4f}" in summary


def test_json_output_and_the_version_matches_an_in_process_training(tmp_path):
    from orchestrator.training.datasets import load_dataset
    from orchestrator.training.pipeline import TrainOptions, content_version

    result = run(
        "train", "--dataset", "wine", "--name", "vino", "--out", str(tmp_path), "--json", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"path", "name", "version", "metrics", "signed"}
    assert data["signed"] is False
    assert data["name"] == "vino"
    # Another process, the same data and code: the same version.
    assert data["version"] == content_version(TrainOptions(dataset="wine"), load_dataset("wine"))
    manifest = verify_artifact(Path(data["path"]))
    assert data["metrics"] == manifest.metrics


def test_gate_failure_exits_non_zero_with_the_figure_and_threshold(tmp_path):
    # Labels independent of the features: macro F1 lands near chance, far below the gate.
    rng = np.random.default_rng(0)
    rows = (
        f"{a:.5f},{b:.5f},{c}\n"
        for (a, b), c in zip(rng.normal(size=(120, 2)), rng.integers(0, 2, 120), strict=True)
    )
    csv = _csv(tmp_path, "noise.csv", "a,b,target\n" + "".join(rows))
    out = tmp_path / "out"

    result = run("train", "--dataset", csv, "--min-f1-macro", "0.9", "--out", str(out), cwd=tmp_path)

    assert result.returncode != 0
    assert re.search(r"f1_macro = 0\.[0-7]\d{3} is below the threshold 0\.9000", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not out.exists()


def _csv(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


def _rows(n: int, label_of=lambda i: "ab"[i % 2]) -> str:
    return "".join(f"{i},{i * 0.5},{label_of(i)}\n" for i in range(n))


BAD_INPUTS = {
    "unknown dataset": (
        lambda tmp: ["--dataset", "mnist"],
        ["unknown dataset 'mnist'", "iris, wine, digits"],
    ),
    "file not found": (lambda tmp: ["--dataset", "nowhere.csv"], ["not found", "nowhere.csv"]),
    "no target column": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,label\n" + _rows(40))],
        ["no column named 'target'", "--target", "'label'"],
    ),
    "named target missing": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,label\n" + _rows(40)), "--target", "kind"],
        ["target column 'kind' not found", "'x', 'y', 'label'"],
    ),
    "single class": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,target\n" + _rows(40, lambda i: "only"))],
        ["single class 'only'"],
    ),
    # Issue 15: text columns are categories now and blanks are imputed; what stays refused is a
    # column mixing numbers and text, an infinite number, and a missing label, each with its row.
    "column mixing numbers and text": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,target\n" + _rows(40) + "forty,1,a\n")],
        ["column 'x' mixes numbers and text", "row 41", "'forty'", "--categorical x"],
    ),
    "missing label": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,target\n" + _rows(40) + "1,1,\n")],
        ["target column 'target' has 1 missing values", "row 41"],
    ),
    "infinity": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,target\n" + _rows(40) + "inf,1,a\n")],
        ["column 'x' row 41", "'inf'", "infinite"],
    ),
    "too few rows per class": (
        lambda tmp: ["--dataset", _csv(tmp, "d.csv", "x,y,target\n" + _rows(40) + "1,1,c\n2,2,c\n")],
        ["too few rows per class", "'c' has 2"],
    ),
    "empty file": (lambda tmp: ["--dataset", _csv(tmp, "d.csv", "")], ["empty"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_non_zero_naming_the_problem_and_writes_nothing(tmp_path, case):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    before = sorted(tmp_path.iterdir())

    result = run("train", *args, "--out", "out", cwd=tmp_path)

    assert result.returncode != 0
    for fragment in expected:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(tmp_path.iterdir()) == before  # in particular, no out/


def test_invalid_strategy_is_a_usage_error(tmp_path):
    result = run("train", "--dataset", "iris", "--strategy", "svm", "--out", "out", cwd=tmp_path)

    assert result.returncode == 2
    assert "svm" in result.stderr
    assert not (tmp_path / "out").exists()
