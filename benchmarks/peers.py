"""This endpoint against MLServer and KServe's own model server, side by side in one run.

The same fitted scikit-learn pipeline (StandardScaler + LogisticRegression on digits, 64 features,
10 classes) is served by:

- this endpoint: the pipeline packaged (``orchestrator package``: skops → ONNX, checked row by row);
- MLServer 1.7.1 with mlserver-sklearn (``joblib`` file), ``parallel_workers: 0`` (one process: on
  one core, its best; extra workers only add hand-offs), uvloop, in a virtualenv of its own;
- KServe 0.21.0's ``ModelServer`` with a minimal model class around the same pipeline (one worker,
  no gRPC), in a virtualenv of its own.

Each server is pinned to core 0 (``taskset -c 0``), the load generator (``wrk -t1``) to core 1.
Before anything is timed, all servers must return the same labels and probabilities (within 1e-6)
on a check batch. Then, in interleaved rounds (medians), Open Inference Protocol (V2) infer:

- one-row requests, requests/s: ours ÷ MLServer (target >= 5), ours ÷ KServe;
- 256-row batches, rows/s, in JSON: ours ÷ MLServer (target >= 3), ours ÷ KServe;
- 256-row batches in binary (the binary tensor data extension both ways): ours ÷ KServe's binary,
  and ours ÷ MLServer's JSON (MLServer has no binary tensors: 422 on tritonclient's default).

Every request asks for both outputs (labels and probabilities) from every server. The peer
virtualenvs are made once and cached under ``.cache/peers/`` (about two minutes the first time);
not run by CI.

    python benchmarks/peers.py [--seconds 4] [--rounds 3] [--no-kserve] [--json]

Needs wrk (``apt-get install wrk``) and taskset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import v2_binary, v2_json, wrk  # noqa: E402
from orchestrator.demo.processes import ManagedProcess, free_port, start_endpoint, wait_http  # noqa: E402
from tests.peer_env import own_venv  # noqa: E402

ONE_ROW_CONNECTIONS = 8
BATCH_CONNECTIONS = 4
BATCH_ROWS = 256
# Every request carries an id (the KServe SDK always sends one; KServe's server answers 500 without).
REQUEST_ID = "bench"
TARGET_ONE_ROW = 5.0
TARGET_BATCH = 3.0
CHECK_TOLERANCE = 1e-6  # the canary's tolerance: ONNX and scikit-learn differ by ~1e-15 here
READY_TIMEOUT_S = 120

KSERVE_SERVER = """
import argparse, joblib, numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server

class SKLearnPipeline(Model):
    def __init__(self, name, path):
        super().__init__(name); self.path = path; self.load()
    def load(self):
        self.pipeline = joblib.load(self.path); self.ready = True; return self.ready
    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy().astype(np.float64)
        proba = self.pipeline.predict_proba(x)
        labels = self.pipeline.classes_[proba.argmax(axis=1)].astype(np.int64)
        outputs = [InferOutput("label", list(labels.shape), "INT64", data=labels),
                   InferOutput("probabilities", list(proba.shape), "FP64", data=proba)]
        return InferResponse(model_name=self.name, response_id=payload.id, infer_outputs=outputs,
                             use_binary_outputs=payload.use_binary_outputs)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(http_port=args.http_port, workers=1, enable_grpc=False).start(
        [SKLearnPipeline("digits", args.model_path)])
"""


def peer_pins() -> dict[str, tuple[str, ...]]:
    """Each peer's packages; scikit-learn and joblib as in this project, so the pickled pipeline
    loads as it was fitted."""
    import joblib
    import sklearn

    same = (f"scikit-learn=={sklearn.__version__}", f"joblib=={joblib.__version__}")
    return {
        "mlserver": ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22", *same),
        "kserve-server": ("kserve==0.21.0", *same),
    }


def fit_and_package(workdir: Path) -> tuple[Path, Path, Any]:
    """(our artifact, the joblib file, the digits rows): one fitted pipeline, both ways."""
    import joblib
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        digits.data, digits.target
    )
    joblib_file = workdir / "model.joblib"
    joblib.dump(pipeline, joblib_file)
    sio.dump(pipeline, workdir / "digits.skops")
    table = workdir / "digits.csv"
    header = ",".join([f"f{i}" for i in range(64)] + ["target"])
    rows = np.column_stack([digits.data, digits.target])
    np.savetxt(table, rows, delimiter=",", header=header, comments="", fmt="%g")
    command = Path(sys.executable).with_name("orchestrator")
    out = subprocess.run(
        [str(command), "package", "--model", str(workdir / "digits.skops"), "--reference", str(table),
         "--target", "target", "--name", "digits", "--out", str(workdir / "artifacts"), "--json"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return Path(json.loads(out.stdout)["path"]), joblib_file, digits.data


def start_mlserver(python: Path, joblib_file: Path, workdir: Path) -> tuple[ManagedProcess, str]:
    repo = workdir / "mlserver"
    (repo / "digits").mkdir(parents=True)
    shutil.copy(joblib_file, repo / "digits" / "model.joblib")
    port = free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "digits",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (repo / "digits" / "model-settings.json").write_text(json.dumps(model))
    argv = ["taskset", "-c", "0", str(python.with_name("mlserver")), "start", str(repo)]
    process = ManagedProcess("mlserver", argv, log_path=workdir / "mlserver.log").start()
    return process, f"http://127.0.0.1:{port}"


def start_kserve(python: Path, joblib_file: Path, workdir: Path) -> tuple[ManagedProcess, str]:
    script = workdir / "serve_sklearn.py"
    script.write_text(KSERVE_SERVER)
    port = free_port()
    argv = [
        "taskset",
        "-c",
        "0",
        str(python),
        str(script),
        "--http_port",
        str(port),
        "--model_path",
        str(joblib_file),
    ]
    process = ManagedProcess("kserve", argv, log_path=workdir / "kserve.log").start()
    return process, f"http://127.0.0.1:{port}"


def mlserver_body(x: Any) -> str:
    """MLServer's sklearn runtime returns labels only unless both outputs are asked for."""
    body = json.loads(v2_json(x, REQUEST_ID))
    body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
    return json.dumps(body)


def answers(url: str, body: str, label: str, proba: str) -> tuple[list[str], Any]:
    """(labels as text, probabilities) from a V2 infer answer."""
    import httpx
    import numpy as np

    response = httpx.post(
        f"{url}/v2/models/digits/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    response.raise_for_status()
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    labels = [str(v) for v in outputs[label]["data"]]
    return labels, np.reshape(outputs[proba]["data"], outputs[proba]["shape"])


def check_agreement(servers: dict[str, str], rows: Any) -> None:
    """Same labels, probabilities within CHECK_TOLERANCE, on 50 rows, before anything is timed."""
    import numpy as np

    x = rows[::36][:50]
    ours = answers(servers["ours"], v2_json(x, REQUEST_ID), "label", "probabilities")
    for name, url in servers.items():
        if name == "ours":
            continue
        body, label, proba = (
            (mlserver_body(x), "predict", "predict_proba")
            if name == "mlserver"
            else (v2_json(x, REQUEST_ID), "label", "probabilities")
        )
        theirs = answers(url, body, label, proba)
        if theirs[0] != ours[0]:
            raise SystemExit(f"{name} gives other labels than ours on the check batch")
        diff = float(np.max(np.abs(theirs[1] - ours[1])))
        if diff > CHECK_TOLERANCE:
            raise SystemExit(f"{name}'s probabilities differ from ours by {diff:.2e}")
        print(
            f"check batch: {name} agrees with ours on {len(x)} rows (max probability difference {diff:.1e})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-kserve", action="store_true", help="leave KServe's model server out")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")

    pins = peer_pins()
    pythons = {"mlserver": own_venv("mlserver", pins["mlserver"])}
    if not args.no_kserve:
        pythons["kserve"] = own_venv("kserve-server", pins["kserve-server"])

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        artifact, joblib_file, rows = fit_and_package(workdir)
        ours = start_endpoint(str(artifact), cpu=0, log_path=workdir / "ours.log")
        processes = [ours.process]
        try:
            ours.wait_ready()
            servers = {"ours": ours.url}
            process, servers["mlserver"] = start_mlserver(pythons["mlserver"], joblib_file, workdir)
            processes.append(process)
            wait_http(
                f"{servers['mlserver']}/v2/models/digits/ready", timeout=READY_TIMEOUT_S, process=process
            )
            if "kserve" in pythons:
                process, servers["kserve"] = start_kserve(pythons["kserve"], joblib_file, workdir)
                processes.append(process)
                wait_http(
                    f"{servers['kserve']}/v2/models/digits/ready", timeout=READY_TIMEOUT_S, process=process
                )
            check_agreement(servers, rows)
            figures = measure(servers, rows, args.seconds, args.rounds, workdir)
        finally:
            for process in processes:
                process.stop()
    report(figures, args.json)


def measure(servers: dict[str, str], rows: Any, seconds: int, rounds: int, workdir: Path) -> dict[str, float]:
    """Medians over interleaved rounds: one-row req/s, 256-row rows/s in JSON and binary."""
    import numpy as np

    batch = rows[np.random.default_rng(0).integers(0, len(rows), BATCH_ROWS)]
    loads: dict[str, tuple[str, int, str | bytes, dict[str, str] | None, int]] = {}
    for name, url in servers.items():
        infer = f"{url}/v2/models/digits/infer"
        make = mlserver_body if name == "mlserver" else (lambda x: v2_json(x, REQUEST_ID))
        loads[f"{name} one-row"] = (infer, ONE_ROW_CONNECTIONS, make(rows[:1]), None, 1)
        loads[f"{name} batch json"] = (infer, BATCH_CONNECTIONS, make(batch), None, BATCH_ROWS)
        if name != "mlserver":  # MLServer has no binary tensors
            body, headers = v2_binary(batch, REQUEST_ID)
            loads[f"{name} batch binary"] = (infer, BATCH_CONNECTIONS, body, headers, BATCH_ROWS)
    for url, connections, body, headers, _ in loads.values():  # warm-up
        wrk(url, 1, connections, body, workdir, headers)
    samples: dict[str, list[float]] = {key: [] for key in loads}
    for _ in range(rounds):
        for key, (url, connections, body, headers, per_request) in loads.items():
            samples[key].append(per_request * wrk(url, seconds, connections, body, workdir, headers))
    return {key: statistics.median(values) for key, values in samples.items()}


def report(figures: dict[str, float], as_json: bool) -> None:
    ratios = {
        "one-row req/s, ours ÷ MLServer": (
            figures["ours one-row"] / figures["mlserver one-row"],
            TARGET_ONE_ROW,
        ),
        "256-row rows/s JSON, ours ÷ MLServer": (
            figures["ours batch json"] / figures["mlserver batch json"],
            TARGET_BATCH,
        ),
        "256-row rows/s, ours binary ÷ MLServer JSON (it has no binary)": (
            figures["ours batch binary"] / figures["mlserver batch json"],
            TARGET_BATCH,
        ),
    }
    if "kserve one-row" in figures:
        ratios["one-row req/s, ours ÷ KServe"] = (figures["ours one-row"] / figures["kserve one-row"], None)
        ratios["256-row rows/s JSON, ours ÷ KServe"] = (
            figures["ours batch json"] / figures["kserve batch json"],
            None,
        )
        ratios["256-row rows/s binary, ours ÷ KServe"] = (
            figures["ours batch binary"] / figures["kserve batch binary"],
            None,
        )
    if as_json:
        print(json.dumps({"figures": figures, "ratios": {k: v[0] for k, v in ratios.items()}}, indent=2))
        return
    for key, value in figures.items():
        unit = "req/s" if "one-row" in key else "rows/s"
        print(f"{key:28s} {value:10.0f} {unit}")
    for key, (ratio, target) in ratios.items():
        verdict = (
            "" if target is None else f"   (target >= {target:g}: {'met' if ratio >= target else 'MISSED'})"
        )
        print(f"{key:64s} {ratio:6.2f}{verdict}")


if __name__ == "__main__":
    main()
