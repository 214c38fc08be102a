"""Conformance: ONNX's own backend test cases through bridge's ONNX path.

    python scripts/conformance.py [--suite SUITE]... [--only OP_TYPE]... [--case NAME]...
                                  [--jobs 2] [--timeout 120] [--max-minutes M] [--force]

Cases: the node cases of ``onnx.backend.test.case.node.collect_testcases()`` (model and data
built in memory) and the model folders of ``onnx/backend/test/data/pytorch-converted/`` and
``pytorch-operator/``. Each case runs in a process of its own (``bridge.conformance_case``:
opset upgrade, ``bridge.pipeline.convert``, Paddle Inference, comparison), forked by a server
that imported the frameworks once (``bridge.conformance_server``, one per job), so a case
starts in milliseconds and a crash or a hang still costs that case only. One status per case:

    pass          every output within rtol 1e-3 / atol 1e-4 (bridge.compare's rule)
    mismatch      converted and ran, an output differs (values, shape or dtype)
    run_fail      converted, Paddle Inference could not load or run it
    convert_fail  a conversion error other than an unmapped op
    unsupported   bridge's UnsupportedModel: X2Paddle has no mapping for an op (or failed on it)
    crash         the case's process died (a native abort in X2Paddle or Paddle Inference), or
                  the server it ran under did
    timeout       the case ran past --timeout

Results are appended to ``conformance/results.jsonl`` as each case ends, so an interrupted run
resumes where it stopped: a case already recorded is skipped unless ``--force`` (the README
then counts its latest record). ``conformance/README.md`` is regenerated from the records at
the end of every run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bridge.conformance_case import CODE_FILE, OUTCOME_FILE, PAYLOAD_FILE, CasePayload
from bridge.conformance_limits import apply_limits
from bridge.conformance_server import CaseServer, ServerError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "conformance"
RESULTS_FILE = "results.jsonl"
BASELINE_FILE = "baseline.jsonl"  # bridge.conformance_baseline's records (--baseline)
SUITES = ("pytorch-converted", "pytorch-operator", "node")  # run order: the small suites first
STATUSES = ("pass", "mismatch", "run_fail", "convert_fail", "unsupported", "crash", "timeout")
DEFAULT_JOBS = 2
DEFAULT_TIMEOUT = 120.0
# What a case's forked process runs: (WORK, bridge_code) -> exit status; WORK holds the payload.
CASE_TARGET = "bridge.conformance_case:forked_main"

# Ops that only move data around: a pytorch-* case is filed under its first other op
# (test_AvgPool1d is Unsqueeze → AveragePool → Squeeze: AveragePool).
_PLUMBING = {"Constant", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Identity", "Cast"}


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    op_type: str  # the op under test (node), the first op that is not plumbing (pytorch-*)
    op_types: tuple[str, ...]  # every op type in the graph, in order of first use
    model_dir: Path | None = None  # pytorch-*: the folder with model.onnx and test_data_set_*
    test_case: Any = field(default=None, compare=False, repr=False)  # node: onnx's TestCase

    @property
    def key(self) -> tuple[str, str]:
        return self.suite, self.name

    def payload(self) -> CasePayload:
        if self.model_dir is not None:
            return CasePayload(self.name, model_dir=str(self.model_dir))
        tc = self.test_case
        return CasePayload(self.name, model_bytes=tc.model.SerializeToString(), data_sets=list(tc.data_sets))


def _op_name(node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _op_types(model) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_op_name(n) for n in model.graph.node))


def backend_data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data"


def pytorch_cases(suite: str) -> list[Case]:
    import onnx

    cases = []
    for folder in sorted(p for p in (backend_data_dir() / suite).iterdir() if (p / "model.onnx").exists()):
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        ops = _op_types(model)
        main = next((o for o in ops if o not in _PLUMBING), next((o for o in ops if o != "Constant"), "-"))
        cases.append(Case(suite, folder.name, main, ops, model_dir=folder))
    return cases


_NODE_CASES: list[Case] = []


def node_cases() -> list[Case]:
    """ONNX's node cases (built in memory, ~10 s, once per process), ordered round-robin over
    op types so that a partial run (``--max-minutes``) covers every op type before any twice."""
    if not _NODE_CASES:
        _NODE_CASES.extend(_build_node_cases())
    return list(_NODE_CASES)


def _build_node_cases() -> list[Case]:
    import numpy as np
    import onnx.backend.test.case.node as node_tests

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators divide by zero on purpose
        tests = list(node_tests.collect_testcases())
    by_name = {t.name: t for t in tests}
    by_op: dict[str, list[Case]] = defaultdict(list)
    for t in tests:
        # test_X_expanded[_verN] is test_X's function body: filed under test_X's op.
        base = by_name.get(re.sub(r"_expanded(_ver\d+)?$", "", t.name), t)
        op = _op_name(base.model.graph.node[0]) if base.model.graph.node else "-"
        by_op[op].append(Case("node", t.name, op, _op_types(t.model), test_case=t))
    queues = list(by_op.values())
    ordered = []
    for i in range(max((len(q) for q in queues), default=0)):
        ordered += [q[i] for q in queues if i < len(q)]
    return ordered


def collect(suites: tuple[str, ...], only: list[str] = (), names: list[str] = ()) -> tuple[list[Case], dict[str, int]]:
    """The selected cases in run order, and the size of each suite looked at. ``only`` filters
    by op type (the filed one, or any op in the graph for pytorch-*), ``names`` by case name."""
    cases: list[Case] = []
    sizes: dict[str, int] = {}
    for suite in SUITES:
        if suite not in suites:
            continue
        if suite == "node" and names and all(any(c.name == n for c in cases) for n in names):
            continue  # every named case is a pytorch-* one: skip building the node cases
        found = node_cases() if suite == "node" else pytorch_cases(suite)
        sizes[suite] = len(found)
        cases += found
    if only:
        cases = [c for c in cases if c.op_type in only or (c.suite != "node" and set(only) & set(c.op_types))]
    if names:
        cases = [c for c in cases if c.name in names]
    return cases, sizes


# --- results -------------------------------------------------------------------------------

def read_results(path: Path) -> list[dict]:
    """Every record, in the order written; a line cut short by a kill is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict) and "case" in record:
                records.append(record)
    return records


def latest_results(records: list[dict]) -> dict[tuple[str, str], dict]:
    latest: dict[tuple[str, str], dict] = {}
    for record in records:
        latest[(record["suite"], record["case"])] = record
    return latest


class ResultLog:
    """Appends one JSON line per finished case (flushed, fsynced: a kill loses at most the
    running cases)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        with self._lock, open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# --- running one case in a forked process -------------------------------------------------

class _Servers:
    """One fork server per job, lent to one case at a time; all killed on Ctrl-C."""

    def __init__(self, jobs: int, preload: tuple[str, ...] | None = None):
        self.all = [CaseServer() if preload is None else CaseServer(preload) for _ in range(max(1, jobs))]
        self._free: queue.Queue[CaseServer] = queue.Queue()
        for server in self.all:
            self._free.put(server)

    @contextlib.contextmanager
    def lend(self):
        server = self._free.get()
        try:
            yield server
        finally:
            self._free.put(server)

    def close(self, kill: bool = False) -> None:
        for server in self.all:
            server.close(kill=kill)


# Paddle's report of a fatal signal, after the line that says what went wrong.
_SIGNAL_REPORT = re.compile(r"\[(TimeInfo|SignalInfo): |FatalError: |-+$|C\+\+ Traceback|Error Message Summary|\d+ +\w+::")


def _last_line(work: Path) -> str:
    """What a dead case's process said last: in child.log, else in the stage log it was writing
    (X2Paddle's output goes to the convert log of the folder being built); a C++ exception's
    ``what():`` line first, Paddle's signal report left out."""
    for log in [work / "child.log", *sorted(work.rglob("logs/*.log"))[::-1]]:
        if not log.exists():
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("what():")] or [
            line for line in lines if not _SIGNAL_REPORT.match(line)]
        if said:
            return said[-1][:300]
    return "(no output)"


def run_case(case: Case, server: CaseServer, timeout: float, keep: Path | None = None,
             target: str | None = None, limits: bool = True) -> dict:
    """Run ``case`` in a process forked by ``server``; the record for results.jsonl."""
    record = {"case": case.name, "suite": case.suite, "op_type": case.op_type, "op_types": list(case.op_types)}
    server.ensure_started()  # once per server (and after it died): not this case's time
    work = Path(tempfile.mkdtemp(prefix=f"bridge-conformance-{case.name[:40]}-"))
    start = time.perf_counter()
    try:
        (work / PAYLOAD_FILE).write_bytes(pickle.dumps(case.payload()))
        ended = server.run(work, target or CASE_TARGET, timeout)
        code_file = work / CODE_FILE
        record["bridge_modules"] = code_file.read_text().strip() if code_file.exists() else None
        outcome_path = work / OUTCOME_FILE
        if ended.how == "timeout":
            record.update(status="timeout", error=f"no result within {timeout:.0f}s")
        elif ended.how == "lost":
            record.update(status="crash", error=ended.detail)
        elif outcome_path.exists():
            outcome = json.loads(outcome_path.read_text())
            record.update(status=outcome["status"], error=outcome["error"],
                          max_abs_diff=outcome["max_abs_diff"], upgraded_from=outcome["upgraded_from"],
                          notes=outcome["notes"])
        else:
            how = f"signal {signal_name(ended.code)}" if ended.code < 0 else f"exit status {ended.code}"
            record.update(status="crash", error=f"child died ({how}): {_last_line(work)}")
    finally:
        record["seconds"] = round(time.perf_counter() - start, 2)
        if keep is not None:
            dest = keep / case.suite / case.name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest, symlinks=True)
        shutil.rmtree(work, ignore_errors=True)
    record.setdefault("error", None)
    record.setdefault("max_abs_diff", None)
    # A failure bridge cannot fix (bridge.conformance_limits) is unsupported, with its reason.
    return apply_limits(record) if limits else record


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


# --- the command ---------------------------------------------------------------------------

def _echo(line: str) -> None:
    print(line, flush=True)  # progress shows up in a log file as it happens


def run(cases: list[Case], out: Path, *, sizes: dict[str, int] | None = None, jobs: int = DEFAULT_JOBS,
        timeout: float = DEFAULT_TIMEOUT, force: bool = False, max_minutes: float | None = None,
        keep: Path | None = None, echo: Callable[[str], None] = _echo,
        target: str | None = None, preload: tuple[str, ...] | None = None,
        baseline: bool = False) -> list[dict]:
    """Run the cases not yet recorded in ``out/results.jsonl`` (all of them with ``force``);
    returns the new records. Stops starting cases after ``max_minutes``. ``sizes`` (cases per
    suite) goes into each record, so that the README is rendered from results.jsonl alone.
    ``target`` and ``preload`` replace what a case's process runs and what its server imports
    (the tests' stand-ins for a crashing case). ``baseline``: X2Paddle alone instead of bridge
    (``bridge.conformance_baseline``), recorded in ``out/baseline.jsonl``, limits not applied."""
    if baseline:
        from bridge import conformance_baseline

        target, preload = conformance_baseline.TARGET, conformance_baseline.PRELOAD
    log = ResultLog(out / (BASELINE_FILE if baseline else RESULTS_FILE))
    done = set(latest_results(read_results(log.path))) if not force else set()
    todo = [c for c in cases if c.key not in done]
    skipped = len(cases) - len(todo)
    echo(f"{len(todo)} case(s) to run, {skipped} already recorded in {log.path} (--force reruns them)")
    deadline = None if max_minutes is None else time.monotonic() + max_minutes * 60
    servers, records = _Servers(jobs, preload), []
    stop = threading.Event()

    def one(case: Case) -> dict | None:
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            return None
        with servers.lend() as server:
            return run_case(case, server, timeout, keep, target, limits=not baseline)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [pool.submit(one, c) for c in todo]
        for future in as_completed(futures):
            record = future.result()
            if record is None:
                continue
            record["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            record["suite_cases"] = (sizes or {}).get(record["suite"])
            log.append(record)
            records.append(record)
            error = f"  {record['error'][:140]}" if record["error"] else ""
            echo(f"[{len(records)}/{len(todo)}] {record['suite']} {record['case']} ({record['op_type']}): "
                 f"{record['status']} {record['seconds']:.1f}s{error}")
    except BaseException:  # Ctrl-C, or a server that cannot start: stop the cases in flight
        stop.set()
        servers.close(kill=True)
        raise
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        servers.close()
    restarts = sum(max(0, server.starts - 1) for server in servers.all)
    if restarts:  # a few seconds each: say why they happened
        stale = sum(server.stale for server in servers.all)
        echo(f"fork servers restarted {restarts} time(s): {stale} after the code changed, "
             f"{restarts - stale} after a server died")
    not_started = len(todo) - len(records)
    if not_started:
        echo(f"stopped after --max-minutes {max_minutes:g}: {not_started} case(s) not run (rerun to resume)")
    return records


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/conformance.py",
        description="Run ONNX's backend test cases through bridge (simplify -> patch -> X2Paddle -> Paddle "
                    "Inference) and write conformance/results.jsonl and conformance/README.md.",
    )
    parser.add_argument("--suite", action="append", choices=SUITES, help="repeatable; default: all three")
    parser.add_argument("--only", action="append", default=[], metavar="OP_TYPE",
                        help="cases of this ONNX op type (repeatable)")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="this case (repeatable)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help=f"cases at a time (default {DEFAULT_JOBS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per case (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--max-minutes", type=float, help="start no case after this many minutes (resume later)")
    parser.add_argument("--force", action="store_true", help="rerun cases already in results.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results and README folder (default conformance/)")
    parser.add_argument("--keep", type=Path, help="keep each case's work folder under DIR/SUITE/CASE (for debugging)")
    parser.add_argument("--baseline", action="store_true",
                        help="run X2Paddle alone (no upgrade, simplify or patch; loading shims only) into "
                             "OUT/baseline.jsonl, which README.md compares bridge's results with")
    parser.add_argument("--report-only", action="store_true", help="only regenerate README.md from results.jsonl")
    return parser


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a CI timeout, a background job's kill) ends it like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _main(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    from bridge.conformance_report import write_readme

    suites = tuple(args.suite or SUITES)
    if not args.report_only:
        cases, sizes = collect(suites, args.only, args.case)
        missing = sorted(set(args.case) - {c.name for c in cases})
        if missing:
            print(f"error: --case {missing[0]}: no such case in suite(s) {', '.join(suites)}"
                  + (f" with op type {', '.join(args.only)}" if args.only else ""), file=sys.stderr)
            return 2
        if not cases:
            print(f"error: no case matches (suites {', '.join(suites)}, --only {', '.join(args.only)})", file=sys.stderr)
            return 2
        try:
            run(cases, args.out, sizes=sizes, jobs=args.jobs, timeout=args.timeout, force=args.force,
                max_minutes=args.max_minutes, keep=args.keep, baseline=args.baseline)
        except KeyboardInterrupt:
            print("interrupted; finished cases are recorded (rerun to resume)", file=sys.stderr)
            write_readme(args.out)
            return 130
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            write_readme(args.out)
            return 1
    readme = write_readme(args.out)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
