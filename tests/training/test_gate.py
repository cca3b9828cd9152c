"""The champion-challenger gate on seeded data: a significantly worse model is refused and nothing
is written, a better or equal one is accepted and the comparison recorded, ``--allow-worse`` is
recorded, and every bad ``--against`` is one error naming what is wrong, before any training."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from orchestrator.core.artifact.integrity import verify_artifact
from orchestrator.core.artifact.manifest import MANIFEST_NAME, MODEL_FILE
from orchestrator.core.artifact.signing import SignatureError, generate_key_pair, sign_artifact
from orchestrator.core.errors import ArtifactError, ConfigError
from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.gate import ChallengerRefused
from orchestrator.training.packaging.package import PackageOptions, package
from orchestrator.training.pipeline import TrainOptions, train

COLUMNS = ["x1", "x2", "x3"]
CLASSES = ["low", "mid", "high"]


def table(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes by terciles of x1 + x2/2 (x3 is noise), 20 % of the labels redrawn at random:
    a linear model reaches about 75 % on held-out rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    score = x[:, 0] + 0.5 * x[:, 1]
    labels = np.array(CLASSES)[np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))]
    flip = rng.random(n) < 0.2
    labels[flip] = rng.choice(CLASSES, int(flip.sum()))
    return x, labels


def write_table(path: Path, x: np.ndarray, labels: np.ndarray, columns: list[str] = COLUMNS) -> Path:
    frame = pd.DataFrame(x, columns=columns)
    frame["label"] = labels
    frame.to_csv(path, index=False)
    return path


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        x, labels = table()
        self.csv = write_table(root / "lin.csv", x, labels)
        # The strong champion: a forest fitted on every row, the challenger's test rows included
        # (it has seen them: 100 % there). The weak one: a logistic regression fitted on the
        # columns in reverse order (it reads the noise column as x1): about 37 %.
        strong = RandomForestClassifier(random_state=0).fit(x, labels)
        weak = LogisticRegression().fit(x[:, ::-1], labels)
        self.strong = self.package(strong, "strong")
        self.weak = self.package(weak, "weak")

    def package(self, model: object, stem: str, reference: Path | None = None, **options: object) -> Path:
        path = self.root / f"{stem}.skops"
        sio.dump(model, path)
        result = package(
            PackageOptions(
                model=path,
                reference=reference or self.csv,
                target="label",
                name="lin",
                out=self.root / f"art-{stem}",
                **options,  # type: ignore[arg-type]
            )
        )
        return result.path

    def train(self, out: Path, **options: object) -> Path:
        opts = TrainOptions(dataset=str(self.csv), target="label", name="lin", out=out, **options)  # type: ignore[arg-type]
        return train(opts).path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("gate"))


def manifest_sha(root: Path) -> str:
    return hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()


# --- refused, allowed, accepted ------------------------------------------------------------------


def test_a_significantly_worse_model_is_refused_and_nothing_is_written(world, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ChallengerRefused) as info:
        world.train(out, against=str(world.strong))

    record = info.value.record
    assert info.value.exit_code == 5
    assert record["significantly_worse"] is True
    assert record["delta_f1_macro"]["ci_high"] < 0
    assert record["mcnemar"]["champion_only_correct"] > record["mcnemar"]["challenger_only_correct"]
    assert record["mcnemar"]["pvalue"] < 0.05
    message = str(info.value)
    assert "\n" not in message
    assert "significantly worse" in message
    assert "--allow-worse" in message
    assert not out.exists()


def test_allow_worse_writes_the_model_and_records_the_reason(world, tmp_path):
    path = world.train(tmp_path, against=str(world.strong), allow_worse="hotfix: the champion leaks labels")

    gate = verify_artifact(path).model_extra["gate"]
    assert gate["decision"] == "allowed-worse"
    assert gate["significantly_worse"] is True
    assert gate["allow_worse"] == "hotfix: the champion leaks labels"
    assert "--allow-worse" in (path / "report.md").read_text()


@pytest.fixture(scope="module")
def better(world, tmp_path_factory) -> Path:
    return world.train(tmp_path_factory.mktemp("better"), against=str(world.weak))


def test_a_better_model_is_accepted_and_the_comparison_recorded(world, better):
    manifest = verify_artifact(better)
    gate = manifest.model_extra["gate"]
    weak = verify_artifact(world.weak)

    assert gate["decision"] == "accepted"
    assert gate["against"]["version"] == weak.version
    assert gate["against"]["manifest_sha256"] == manifest_sha(world.weak)
    assert gate["rows"] == {"what": "the test split", "n": manifest.split["n_test"]}
    delta = gate["delta_f1_macro"]
    assert delta["ci_low"] > 0
    assert delta["n_resamples"] == 1000
    assert delta["seed"] == 0
    assert delta["estimate"] == pytest.approx(gate["challenger"]["f1_macro"] - gate["champion"]["f1_macro"])
    assert gate["challenger"]["f1_macro"] == pytest.approx(manifest.metrics["f1_macro"])
    test = gate["mcnemar"]
    counts = ("both_correct", "champion_only_correct", "challenger_only_correct", "both_wrong")
    assert sum(test[k] for k in counts) == manifest.split["n_test"]
    assert test["challenger_only_correct"] > test["champion_only_correct"]
    assert test["pvalue"] < 0.05


def test_an_equal_model_is_accepted(world, better, tmp_path):
    # The same data, options and seed: the same model, compared with itself.
    path = world.train(tmp_path, against=str(better))

    gate = verify_artifact(path).model_extra["gate"]
    assert gate["decision"] == "accepted"
    assert gate["delta_f1_macro"]["estimate"] == 0
    assert gate["delta_f1_macro"]["ci_low"] == gate["delta_f1_macro"]["ci_high"] == 0
    assert gate["mcnemar"]["pvalue"] == 1.0


def test_package_takes_the_gate_too(world, tmp_path):
    x, labels = table()
    with pytest.raises(ChallengerRefused):
        world.package(LogisticRegression().fit(x[:, ::-1], labels), "worse", against=str(world.strong))
    assert not (world.root / "art-worse").exists()

    path = world.package(
        RandomForestClassifier(random_state=0).fit(x, labels), "best", against=str(world.weak)
    )
    gate = verify_artifact(path).model_extra["gate"]
    assert gate["decision"] == "accepted"
    assert gate["rows"] == {"what": "the reference table lin.csv", "n": 400}


def test_a_champion_with_other_columns_needs_an_eval_table(world, tmp_path):
    x, labels = table()
    renamed = write_table(tmp_path / "renamed.csv", x, labels, ["u1", "u2", "u3"])
    champion = world.package(LogisticRegression().fit(x, labels), "renamed", reference=renamed)
    with pytest.raises(ConfigError, match=r"the champion takes column 'u1'.*--eval"):
        world.train(tmp_path / "no-eval", against=str(champion))

    both = pd.read_csv(world.csv).assign(u1=x[:, 0], u2=x[:, 1], u3=x[:, 2])
    both.to_csv(tmp_path / "both.csv", index=False)
    path = world.train(tmp_path / "eval", against=str(champion), eval_table=tmp_path / "both.csv")
    gate = verify_artifact(path).model_extra["gate"]
    assert gate["rows"] == {"what": "--eval both.csv", "n": 400}
    assert gate["decision"] == "accepted"


def test_a_champion_with_other_classes_cannot_be_compared(world, tmp_path):
    x, labels = table()
    upper = np.char.upper(labels.astype(str))
    other = world.package(
        LogisticRegression().fit(x, upper), "upper", reference=write_table(tmp_path / "upper.csv", x, upper)
    )
    with pytest.raises(ConfigError, match="classes"):
        world.train(tmp_path / "out", against=str(other))
    assert not (tmp_path / "out").exists()


def test_the_cli_refusal_is_one_line_with_exit_code_5(world, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "train", "--dataset", str(world.csv), "--target", "label",
         "--out", "arts", "--against", str(world.strong)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip

    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: champion-challenger gate:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "arts").exists()


# --- bad champions: refused before any training ----------------------------------------------------


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_bad_local_champions_are_refused_naming_the_problem(world, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="no such artifact directory"):
        world.train(out, against=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="--against"):
        world.train(out, against="s3://bucket/not-a-model-uri")
    with pytest.raises(ConfigError, match="--eval"):
        world.train(out, against=str(world.weak), eval_table=tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="only with --against"):
        world.train(out, allow_worse="no champion given")

    tampered = copy(world.weak, tmp_path / "tampered")
    (tampered / MODEL_FILE).write_bytes((tampered / MODEL_FILE).read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=MODEL_FILE):
        world.train(out, against=str(tampered))

    # A manifest edited to describe another model: its canary is not what the graph answers.
    edited = copy(world.weak, tmp_path / "edited")
    manifest = json.loads((edited / MANIFEST_NAME).read_text())
    manifest["canary"]["probabilities"][0] = list(reversed(manifest["canary"]["probabilities"][0]))
    (edited / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not reproduce its canary"):
        world.train(out, against=str(edited))

    no_manifest = copy(world.weak, tmp_path / "no-manifest")
    (no_manifest / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match="no manifest"):
        world.train(out, against=str(no_manifest))
    assert not out.exists()


def test_a_key_requires_a_signed_champion(world, tmp_path):
    private, public = generate_key_pair(tmp_path / "keys")
    _, other = generate_key_pair(tmp_path / "keys", "other")
    signed = copy(world.weak, tmp_path / "signed")
    sign_artifact(signed, private)
    out = tmp_path / "out"

    with pytest.raises(SignatureError, match=r"unsigned|no signature|model\.sig"):
        world.train(out, against=str(world.weak), signing_public_key=str(public))
    with pytest.raises(SignatureError):
        world.train(out, against=str(signed), signing_public_key=str(other))
    (signed / "report.md").write_text("# rewritten after signing\n")
    with pytest.raises(ArtifactError):
        world.train(out, against=str(signed), signing_public_key=str(public))
    assert not out.exists()


@pytest.fixture
def s3_bucket(moto_server, monkeypatch) -> Target:
    for key, value in moto_server.env.items():
        monkeypatch.setenv(key, value)
    bucket = moto_server.create_bucket()
    storage = open_storage(moto_server.uri(bucket), settings=moto_server.settings, retry=NO_WAIT_RETRY)
    return Target(name="aws", storage=storage)


def test_a_champion_in_a_bucket_is_read_through_latest_or_its_version(world, s3_bucket, tmp_path):
    root = s3_bucket.storage.uri
    out = tmp_path / "out"
    with pytest.raises(ArtifactError, match="no model published yet"):
        world.train(out, against=f"{root}/models/lin/LATEST")

    [result] = sync_artifact(world.strong, [s3_bucket])
    assert result.ok, result.error
    strong = verify_artifact(world.strong).version
    with pytest.raises(ChallengerRefused, match=f"lin {strong}"):
        world.train(out, against=f"{root}/models/lin/LATEST")
    with pytest.raises(ArtifactError, match="no such version"):
        world.train(out, against=f"{root}/models/lin/0123456789ab")

    # An object replaced in the bucket behind the manifest's back.
    forged = b"# not the report\n"
    s3_bucket.storage.put(f"models/lin/{strong}/report.md", forged, sha256=hashlib.sha256(forged).hexdigest())
    with pytest.raises(ArtifactError, match=r"report\.md"):
        world.train(out, against=f"{root}/models/lin/{strong}")
    assert not out.exists()


def test_the_gate_record_survives_the_round_trip(better):
    data = json.loads((better / MANIFEST_NAME).read_text())
    assert set(data["gate"]) >= {"against", "rows", "rule", "delta_f1_macro", "mcnemar", "decision"}
    assert "McNemar" in data["gate"]["rule"]


# --- the rows both models held out ------------------------------------------------------------------


def test_a_champion_trained_on_the_same_table_is_scored_only_on_rows_neither_model_trained_on(
    world, tmp_path
):
    """Another seed draws another split of the same table: a quarter of the new test rows were the
    champion's training rows, where it looks better than it is. Only the rows both splits hold out
    are compared."""
    from orchestrator.training import datasets

    champion = world.train(tmp_path / "champion", seed=0)
    path = world.train(tmp_path / "challenger", seed=1, against=str(champion))

    table = datasets.load_dataset(str(world.csv), "label")
    theirs = datasets.split(table, test_size=0.25, seed=0, cv_folds=5).test
    ours = datasets.split(table, test_size=0.25, seed=1, cv_folds=5).test
    both = np.intersect1d(theirs, ours)
    manifest = verify_artifact(path)
    gate = manifest.model_extra["gate"]
    assert 0 < len(both) < manifest.split["n_test"]
    assert gate["rows"] == {"what": "the test rows neither model trained on", "n": len(both)}
    counts = ("both_correct", "champion_only_correct", "challenger_only_correct", "both_wrong")
    assert sum(gate["mcnemar"][k] for k in counts) == len(both)
