"""The README's first command, run as a user would (non-interactively, with --json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_trains_serves_predicts_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["errors"] == 0
    assert figures["requests"] == 9
    assert figures["batch_rows"] == 450
    assert figures["batch_accuracy"] > 0.9
    assert all(row["predicted"] for row in figures["single"])
    port = figures["endpoint"].rsplit(":", 1)[1]
    leftovers = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True, check=False)
    assert leftovers.stdout == "", "the endpoint process must be gone"
    assert not Path(figures["artifact"]).exists(), "the demo's temporary files are removed"
