"""The conformance harness (``bridge.conformance``) on a few of ONNX's backend test cases,
through the real machinery: a fork server per job, one forked process per case, bridge's ONNX
path, Paddle Inference.

test_relu passes; test_scan_sum is refused (X2Paddle 1.6.0 maps no Scan, and no patch or shim adds it);
test_roialign_aligned_true converts and runs but computes other values (X2Paddle's RoiAlign
mapper). The baseline mode (X2Paddle alone) runs test_relu, which passes there too, and
test_softmax_default_axis, which X2Paddle alone gets wrong (it softmaxes the last axis only). A segfault, a dying server and a hang are provoked on purpose,
in cases run by ``_stand_in_case`` under a server that imports only this module.
"""
from __future__ import annotations

import ctypes
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import conformance
from bridge.conformance_case import OUTCOME_FILE, PAYLOAD_FILE, CaseOutcome
from bridge.conformance_report import failure_reason

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "test_relu": ("Relu", "pass"),
    "test_scan_sum": ("Scan", "unsupported"),
    "test_roialign_aligned_true": ("RoiAlign", "mismatch"),
    # Listed in bridge/conformance_limits.py: run, fails, reported unsupported with the reason.
    "test_add_uint32": ("Add", "unsupported"),
}


def _case_args() -> list[str]:
    return [arg for name in EXPECTED for arg in ("--case", name)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conformance")
    code = conformance.main([*_case_args(), "--out", str(out), "--jobs", "2", "--timeout", "120"])
    return code, out


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / conformance.RESULTS_FILE).read_text().splitlines()]


def test_each_case_gets_its_status(first_run):
    code, out = first_run
    assert code == 0
    records = {r["case"]: r for r in _records(out)}
    assert set(records) == set(EXPECTED)
    for name, (op_type, status) in EXPECTED.items():
        record = records[name]
        assert (record["suite"], record["op_type"], record["status"]) == ("node", op_type, status), record
        assert record["seconds"] > 0
        assert record["suite_cases"] > 1800  # onnx 1.23.2 has 1,884 node cases
        assert re.fullmatch(r"[0-9a-f]{12}", record["bridge_modules"])
    assert records["test_relu"]["error"] is None and records["test_relu"]["max_abs_diff"] <= 1e-4
    assert "no mapping for op type Scan" in records["test_scan_sum"]["error"]
    assert re.fullmatch(r"output 'Y': \d+ of 75 elements outside tolerance", records["test_roialign_aligned_true"]["error"])
    limited = records["test_add_uint32"]
    assert limited["failed_as"] == "convert_fail" and "uint32" in limited["error"]
    assert limited["limit"].startswith("uint32 / uint64 tensors")
    assert all("limit" not in records[name] for name in EXPECTED if name != "test_add_uint32")


def test_second_run_skips_recorded_cases(first_run, capsys):
    _, out = first_run
    before = (out / conformance.RESULTS_FILE).read_text()
    assert conformance.main([*_case_args(), "--out", str(out)]) == 0
    assert f"0 case(s) to run, {len(EXPECTED)} already recorded" in capsys.readouterr().out
    assert (out / conformance.RESULTS_FILE).read_text() == before


def test_readme_is_regenerated_from_results(first_run):
    _, out = first_run
    readme = (out / "README.md").read_text()
    assert "| Relu | 1 | 1 | node |  |" in readme
    assert "| Scan | 1 | 0 | node | unsupported: X2Paddle 1.6.0 has no mapping for op type Scan (N node(s)) (1) |" in readme
    assert "| node | 1884 | 4 | 1 | 0.1% | 25.0% | 1 | 0 | 0 | 2 | 0 | 0 | 320 / 1884 | - |" in readme
    assert "4 cases, 4 of the 1884 node cases" in readme
    assert "| uint32 / uint64 tensors: Paddle 3.3.1 cannot take them from numpy | 1 | test_add_uint32 (convert_fail) |" in readme
    assert "## Op types X2Paddle 1.6.0 does not map (cases refused)\n\nScan (1)\n" in readme
    assert re.search(r"this harness left out\): `[0-9a-f]{12}` \(4 cases\)\.\n", readme)

    # A later record of a case wins; a line cut short by a kill is skipped; the hand edit goes.
    copy = out.parent / "regenerated"
    copy.mkdir()
    relu = next(r for r in _records(out) if r["case"] == "test_relu")
    later = {**relu, "status": "mismatch", "error": "output 'y': 1 of 60 elements outside tolerance"}
    (copy / conformance.RESULTS_FILE).write_text(
        (out / conformance.RESULTS_FILE).read_text() + json.dumps(later) + '\n{"case": "test_cut'
    )
    (copy / "README.md").write_text("edited by hand\n")
    proc = subprocess.run(
        [sys.executable, "scripts/conformance.py", "--report-only", "--out", str(copy)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    regenerated = (copy / "README.md").read_text()
    assert "edited by hand" not in regenerated
    assert "| Relu | 1 | 0 | node | mismatch: output '…': N of N elements outside tolerance (1) |" in regenerated
    assert f"({len(EXPECTED) + 1} records, {len(EXPECTED)} cases;" in regenerated


def test_baseline_runs_x2paddle_alone_and_the_readme_compares(first_run):
    _, out = first_run
    cases = ["--case", "test_relu", "--case", "test_softmax_default_axis"]
    assert conformance.main([*cases, "--baseline", "--out", str(out), "--jobs", "1", "--timeout", "120"]) == 0
    base = {r["case"]: r for r in _records_of(out / conformance.BASELINE_FILE)}
    assert base["test_relu"]["status"] == "pass"
    assert base["test_softmax_default_axis"]["status"] == "mismatch"
    assert "limit" not in base["test_softmax_default_axis"]  # the baseline is recorded as it failed
    readme = (out / "README.md").read_text()
    assert "| node | 2 | 1 | 1 | 0 |" in readme  # test_softmax_default_axis was not run through bridge here
    assert "Every case that passed in the baseline passes through bridge." in readme

    # A baseline pass that bridge fails is listed by name.
    copy = out.parent / "lost"
    copy.mkdir()
    relu = next(r for r in _records(out) if r["case"] == "test_relu")
    (copy / conformance.RESULTS_FILE).write_text(json.dumps({**relu, "status": "mismatch", "error": "worse"}) + "\n")
    (copy / conformance.BASELINE_FILE).write_text((out / conformance.BASELINE_FILE).read_text())
    from bridge.conformance_report import write_readme

    lost = write_readme(copy).read_text()
    assert "| node | 2 | 1 | 0 | 1 |" in lost and "| test_relu | mismatch | worse |" in lost


def _records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stand_in_case(work: Path, bridge_code: str) -> int:
    """A case's process that does what its case's name says (run under a server that imports
    this module only). It notes its pid in the folder $BRIDGE_TEST_PIDS."""
    name = pickle.loads((work / PAYLOAD_FILE).read_bytes()).name
    (Path(os.environ["BRIDGE_TEST_PIDS"]) / name).write_text(str(os.getpid()))
    if name == "test_segfault":
        ctypes.string_at(0)  # SIGSEGV, as a native crash in Paddle would
    elif name == "test_kill_server":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)  # dies with its server (PR_SET_PDEATHSIG)
    elif name == "test_hang":
        time.sleep(60)
    (work / OUTCOME_FILE).write_text(json.dumps(CaseOutcome("pass", max_abs_diff=0.0).to_json()))
    return 0


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_crash_a_dead_server_or_a_hang_cost_that_case_only(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("BRIDGE_TEST_PIDS", str(pids))
    names = ["test_ok_first", "test_segfault", "test_ok_after_segfault", "test_kill_server",
             "test_ok_after_server_died", "test_hang", "test_ok_after_hang"]
    cases = [conformance.Case("node", n, "Relu", ("Relu",), model_dir=ROOT) for n in names]
    start, lines = time.monotonic(), []
    records = conformance.run(cases, tmp_path / "out", jobs=1, timeout=2, echo=lines.append,
                              target=f"{__name__}:_stand_in_case", preload=(__name__,))
    assert time.monotonic() - start < 60
    assert lines[-1] == "fork servers restarted 1 time(s): 0 after the code changed, 1 after a server died"
    by_name = {r["case"]: r for r in records}
    assert [r["case"] for r in records] == names  # one job: in order, and each one ran
    for name in names:
        if name.startswith("test_ok"):
            assert by_name[name]["status"] == "pass", by_name[name]
    assert by_name["test_segfault"]["status"] == "crash"
    assert by_name["test_segfault"]["error"].startswith("child died (signal SIGSEGV)")
    assert by_name["test_kill_server"]["status"] == "crash"
    assert by_name["test_kill_server"]["error"].startswith(
        "conformance server died while the case ran (signal SIGKILL)")
    assert by_name["test_hang"]["status"] == "timeout" and by_name["test_hang"]["seconds"] < 10
    for name in ("test_kill_server", "test_hang"):  # no case process left behind
        assert _gone(int((pids / name).read_text())), name
    # Each case in a process of its own, forked by a server that outlived them (but the one killed).
    assert len({(pids / n).read_text() for n in names}) == len(names)


def test_a_server_that_cannot_start_stops_the_run(tmp_path, capsys, monkeypatch):
    real = conformance.CaseServer
    monkeypatch.setattr(conformance, "CaseServer", lambda *args: real(("bridge.no_such_module",)))
    assert conformance.main(["--case", "test_relu", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert ("error: conformance server did not start: ModuleNotFoundError: "
            "No module named 'bridge.no_such_module' (log: ") in err
    Path(re.search(r"\(log: ([^)]+)\)", err).group(1)).unlink()  # kept for the user to read


def test_failure_reasons_group_cases_failing_the_same_way():
    a = {"status": "unsupported", "error": "node 'n1' (output 'y', Gelu): X2Paddle 1.6.0 has no mapping for op type Gelu (1 node(s))"}
    b = {"status": "unsupported", "error": "node 'n2' (Gelu): X2Paddle 1.6.0 has no mapping for op type Gelu (3 node(s))"}
    assert failure_reason(a) == failure_reason(b)
    c = {"status": "convert_fail", "error": "<work>/model.onnx: input 'cond' has shape []; give it with --input cond:SHAPE"}
    assert failure_reason(c) == "convert_fail: input '…' has shape []; give it with --input …:SHAPE"
    d = {**a, "error": a["error"].replace("Gelu", "Selu")}
    assert failure_reason(a) != failure_reason(d)
    assert failure_reason(a, coarse=True) == failure_reason(d, coarse=True)


STAND_IN_MODULE = '''
import json
from bridge.conformance_case import OUTCOME_FILE, CaseOutcome

CODE = "first"


def case(work, bridge_code):
    """Reports CODE, then edits this file: the next case must run the edited code."""
    (work / OUTCOME_FILE).write_text(json.dumps(CaseOutcome("mismatch", error=CODE).to_json()))
    with open(__file__) as fh:
        text = fh.read()
    with open(__file__, "w") as fh:
        fh.write(text.replace('CODE = "first"', 'CODE = "edited"'))
    return 0
'''


def test_code_edited_during_a_run_is_what_the_next_case_runs(tmp_path, monkeypatch):
    (tmp_path / "stand_in_edits_itself.py").write_text(STAND_IN_MODULE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    cases = [conformance.Case("node", n, "Relu", ("Relu",), model_dir=ROOT) for n in ("test_one", "test_two")]
    lines = []
    records = conformance.run(cases, tmp_path / "out", jobs=1, echo=lines.append,
                              target="stand_in_edits_itself:case", preload=("stand_in_edits_itself",))
    assert [r["error"] for r in records] == ["first", "edited"]
    assert lines[-1] == "fork servers restarted 1 time(s): 1 after the code changed, 0 after a server died"


def test_cases_that_cannot_pass_are_unsupported_with_the_reason_and_stay_in_the_totals():
    from bridge.conformance_limits import LIMITS, apply_limits
    from bridge.conformance_report import render

    def record(case, op_type, status, error=None, suite="node"):
        return {"case": case, "suite": suite, "op_type": op_type, "op_types": [op_type], "status": status,
                "error": error, "suite_cases": 5}

    records = [
        record("test_string_concat", "StringConcat", "unsupported", "X2Paddle 1.6.0 has no mapping for op type StringConcat (1 node(s))"),
        record("test_cast_FLOAT_to_FLOAT8E5M2", "Cast", "run_fail", "RuntimeError: Invalid enum data type `float8_e5m2`."),
        record("test_bernoulli", "Bernoulli", "pass"),  # a case that starts to pass leaves the table
        record("test_training_dropout_zero_ratio", "Dropout", "convert_fail", "Model is not supported yet."),
        record("test_relu", "Relu", "mismatch", "output 'y': 1 of 4 elements outside tolerance"),
    ]
    classified = {r["case"]: apply_limits(r) for r in records}
    assert classified["test_string_concat"]["limit"] == LIMITS[0].reason
    assert classified["test_cast_FLOAT_to_FLOAT8E5M2"] | {} == {
        **records[1], "status": "unsupported", "failed_as": "run_fail", "limit": classified["test_cast_FLOAT_to_FLOAT8E5M2"]["limit"]}
    assert "float8" in classified["test_cast_FLOAT_to_FLOAT8E5M2"]["limit"]
    assert classified["test_bernoulli"]["status"] == "pass" and "limit" not in classified["test_bernoulli"]
    for name in ("test_training_dropout_zero_ratio", "test_relu"):  # not in the table: status kept
        assert classified[name] == records[[r["case"] for r in records].index(name)]
    # idempotent, and undone when the table no longer matches (the record keeps the raw status)
    again = apply_limits(classified["test_cast_FLOAT_to_FLOAT8E5M2"])
    assert again == classified["test_cast_FLOAT_to_FLOAT8E5M2"]

    text = render(records)  # raw records: the report classifies them under the current table
    totals = next(line for line in text.splitlines() if line.startswith("| node |"))
    cells = [c.strip() for c in totals.strip("|").split("|")]
    assert cells[:4] == ["node", "5", "5", "1"]  # every case in the total, the listed ones too
    assert cells[9] == "2"  # unsupported: the string case and the float8 one (run_fail before)
    section = text.split("## Cases that cannot pass")[1].split("\n## ")[0]
    assert "2 cases failed in a way bridge cannot fix" in section
    assert "test_cast_FLOAT_to_FLOAT8E5M2 (run_fail)" in section and "test_string_concat (unsupported)" in section
    assert "test_bernoulli" not in section and "test_relu" not in section
