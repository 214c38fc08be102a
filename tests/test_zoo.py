"""Two cheap zoo models end to end through `scripts/zoo.py --only` (the real CLI, each in its
own process), at batch 1 and 2: every runner within 1e-5 of torch and ONNX Runtime (the issue
asks <= 1e-4). They need the newer patches: signal_pools (patches repeated until stable, pool
variants), gru_text (gru_unroll). About 30 s on 2 idle cores."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHEAP = ("signal_pools", "gru_text")


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    args = [arg for name in CHEAP for arg in ("--only", name)]
    proc = subprocess.run(
        [sys.executable, "scripts/zoo.py", *args, "--out", str(out), "--batch-sizes", "1,2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return proc, out


def test_zoo_cheap_models_pass(zoo_run):
    proc, out = zoo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    results = {r["name"]: r for r in data["results"]}
    assert sorted(results) == sorted(CHEAP)
    for name, r in results.items():
        assert r["outcome"] == "pass", (name, r["error"])
        assert r["batch_sizes"] == [1, 2]
        assert r["max_abs_overall"] is not None and r["max_abs_overall"] <= 1e-4, name
        for runner in ("paddle_inference", "paddle_dygraph"):
            assert r["max_abs_vs_torch"][runner] <= 1e-5, (name, runner)
    fired = {name: r["patches_fired"] for name, r in results.items()}
    assert fired["signal_pools"]["maxpool_unbatched"] == 4
    assert fired["gru_text"] == {"gru_unroll": 1}


def test_zoo_partial_run_writes_its_report_beside_the_work_dirs(zoo_run):
    proc, out = zoo_run
    readme = (out / "README.md").read_text()
    assert "python scripts/zoo.py --only signal_pools" in readme
    for name in CHEAP:
        assert f"| [{name}](../examples/{name}.py) |" in readme
        assert (out / name / "validation.json").is_file()
