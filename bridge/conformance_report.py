"""``conformance/README.md``, rendered from ``results.jsonl`` only (never edited by hand)."""
from __future__ import annotations

import importlib.metadata
import re
from collections import Counter, defaultdict
from pathlib import Path

from bridge.conformance import (
    BASELINE_FILE, DEFAULT_JOBS, RESULTS_FILE, STATUSES, SUITES, latest_results, read_results,
)
from bridge.conformance_case import ATOL, RTOL
from bridge.conformance_limits import LIMITS, apply_limits

README_FILE = "README.md"
COMMAND = f".venv/bin/python scripts/conformance.py --jobs {DEFAULT_JOBS}"

# The baseline, measured before this harness: X2Paddle 1.6.0 alone on each case's
# model, and the pytorch-* suites with only the opset upgrade in front of it.
BASELINE = {"node": (320, 1884), "pytorch-converted": (1, 82), "pytorch-operator": (2, 35)}
BASELINE_UPGRADE_ONLY = {"pytorch-converted": (73, 82), "pytorch-operator": (28, 35)}
TOOLS = ("onnx", "onnxruntime", "onnxsim", "x2paddle", "paddlepaddle")


_NO_MAPPING = re.compile(r"has no mapping for op types? ([\w., ]+) \(")


def failure_reason(record: dict, coarse: bool = False) -> str:
    """A record's failure as a line shared by the cases failing the same way: node and tensor
    names and numbers are blanked out; ``coarse`` blanks the unmapped op types too."""
    error = record.get("error") or ""
    error = re.sub(r"^BridgeError: ", "", error)
    error = re.sub(r"<work>/\S+: ", "", error)  # the case's files
    error = re.sub(r"^node '[^']*' \([^)]*\): ", "", error)  # describe_node's prefix
    error = re.sub(r"'[^'\s]*'", "'…'", error)
    error = re.sub(r"--input [\w.]+:SHAPE", "--input …:SHAPE", error)
    error = re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?!\w|\.\d)", "N", error)  # not X2Paddle 1.6.0
    if coarse:
        error = _NO_MAPPING.sub("has no mapping for op type … (", error)
    return f"{record['status']}: {error}" if error else record["status"]


def unmapped_op_types(records: list[dict]) -> Counter:
    """Op types X2Paddle refused, with the number of cases each one stopped."""
    counts: Counter = Counter()
    for record in records:
        found = _NO_MAPPING.search(record.get("error") or "")
        if record["status"] == "unsupported" and found:
            counts.update(op.strip() for op in found.group(1).split(","))
    return counts


def _pct(passed: int, total: int | None) -> str:
    return f"{100 * passed / total:.1f}%" if total else "-"


def _cell(text: str, limit: int = 150) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _top_reason(records: list[dict]) -> str:
    failing = [failure_reason(r) for r in records if r["status"] != "pass"]
    if not failing:
        return ""
    reason, count = Counter(failing).most_common(1)[0]
    return f"{_cell(reason)} ({count})"


def _totals(latest: list[dict], sizes: dict[str, int]) -> list[str]:
    head = "| suite | cases | run | pass | % of cases | % of run | " + " | ".join(STATUSES[1:]) + \
        " | X2Paddle 1.6.0 alone | with the opset upgrade alone |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for suite in SUITES:
        records = [r for r in latest if r["suite"] == suite]
        statuses = Counter(r["status"] for r in records)
        passed, total = statuses["pass"], sizes.get(suite)
        base = BASELINE.get(suite)
        upgrade = BASELINE_UPGRADE_ONLY.get(suite)
        lines.append(
            f"| {suite} | {total if total is not None else '?'} | {len(records)} | {passed} | {_pct(passed, total)} | {_pct(passed, len(records))} | "
            + " | ".join(str(statuses[s]) for s in STATUSES[1:])
            + f" | {f'{base[0]} / {base[1]}' if base else '-'} | {f'{upgrade[0]} / {upgrade[1]}' if upgrade else '-'} |"
        )
    return lines


def _op_table(latest: list[dict]) -> list[str]:
    by_op: dict[str, list[dict]] = defaultdict(list)
    for record in latest:
        by_op[record["op_type"]].append(record)
    lines = ["| op type | cases | pass | suites | top failure reason (cases) |", "|---|---|---|---|---|"]
    for op in sorted(by_op, key=str.lower):
        records = by_op[op]
        passed = sum(r["status"] == "pass" for r in records)
        suites = ", ".join(s for s in SUITES if any(r["suite"] == s for r in records))
        lines.append(f"| {op} | {len(records)} | {passed} | {suites} | {_top_reason(records)} |")
    return lines


def _reasons(latest: list[dict], limit: int = 20) -> list[str]:
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for record in latest:
        if record["status"] != "pass":
            by_reason[failure_reason(record, coarse=True)].append(record)
    ranked = sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
    lines = ["| cases | reason | e.g. |", "|---|---|---|"]
    for reason, records in ranked:
        lines.append(f"| {len(records)} | {_cell(reason, 200)} | {', '.join(r['case'] for r in records[:3])} |")
    return lines


def _pytorch_failures(latest: list[dict]) -> list[str]:
    lines = ["| suite | case | ops | status | first error line | max abs diff |", "|---|---|---|---|---|---|"]
    for record in sorted(latest, key=lambda r: (r["suite"], r["case"])):
        if record["suite"] == "node" or record["status"] == "pass":
            continue
        diff = record.get("max_abs_diff")
        lines.append(
            f"| {record['suite']} | {record['case']} | {' '.join(record.get('op_types', []))} | {record['status']} | "
            f"{_cell(record.get('error') or '', 200)} | {'-' if diff is None else f'{diff:.3g}'} |"
        )
    return lines


def _unmapped(latest: list[dict]) -> list[str]:
    counts = unmapped_op_types(latest)
    if not counts:
        return ["(none so far)"]
    return [", ".join(f"{op} ({n})" for op, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))]


def _limits(latest: list[dict]) -> list[str]:
    """The table of bridge.conformance_limits: reason → the failing cases it covers."""
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for record in latest:
        if record.get("limit"):
            by_reason[record["limit"]].append(record)
    lines = [
        f"{sum(map(len, by_reason.values()))} cases failed in a way bridge cannot fix; each was still run and "
        "is counted in the totals as unsupported (the status it failed with in parentheses). The table is "
        "`bridge/conformance_limits.py`, each entry with how its claim was checked; a case that starts to "
        "pass leaves it.",
        "",
        "| reason | cases | which (status it failed with) |",
        "|---|---|---|",
    ]
    for limit in LIMITS:
        records = sorted(by_reason.get(limit.reason, []), key=lambda r: r["case"])
        if records:
            which = ", ".join(f"{r['case']} ({r['failed_as']})" for r in records)
            lines.append(f"| {_cell(limit.reason, 300)} | {len(records)} | {which} |")
    return lines


def _code_versions(latest: list[dict]) -> str:
    counts = Counter(r.get("bridge_modules") or "not recorded" for r in latest)
    listed = ", ".join(f"`{code}` ({n} cases)" for code, n in counts.most_common())
    note = "" if len(counts) == 1 else (
        " Records of different code compare only as far as the code did not change behaviour; `--force` "
        "reruns cases under the current code.")
    return ("Bridge code each case ran (sha256 of the bridge modules its process imported, this harness "
            f"left out): {listed}.{note}")


def suite_sizes(records: list[dict]) -> dict[str, int]:
    """Cases per suite, as the latest record of each suite says (``suite_cases``); a pytorch-*
    suite without one is counted from its folder (cheap, unlike building the node cases)."""
    from bridge.conformance import backend_data_dir

    sizes: dict[str, int] = {}
    for record in records:
        if record.get("suite_cases") is not None:
            sizes[record["suite"]] = record["suite_cases"]
    for suite in SUITES:
        folder = backend_data_dir() / suite
        if suite not in sizes and suite != "node" and folder.is_dir():
            sizes[suite] = sum((p / "model.onnx").exists() for p in folder.iterdir())
    return sizes


def _against_baseline(latest: list[dict], baseline: list[dict]) -> list[str]:
    """Per suite, the baseline's passes rerun case by case, and every case that passed there
    but does not pass through bridge (the issue: none may)."""
    if not baseline:
        return ["No per-case baseline recorded: run `" + COMMAND + " --baseline` (X2Paddle alone on every "
                f"case, into `{BASELINE_FILE}`)."]
    base = latest_results(baseline)
    now = {(r["suite"], r["case"]): r for r in latest}
    last = max((r.get("recorded_at", "") for r in base.values()), default="")
    lines = [
        f"X2Paddle 1.6.0 alone, rerun case by case by `{COMMAND} --baseline` (`bridge/conformance_baseline.py`: "
        "the model as ONNX ships it, no opset upgrade, onnxsim or patch; only the shims X2Paddle needs to "
        "import and to stay off the network; Paddle Inference with a plain `Config`; the same comparison), "
        f"recorded in `{BASELINE_FILE}` ({len(base)} cases, last {last or '-'}).",
        "",
        "| suite | baseline cases | baseline pass | bridge pass | passed in the baseline, not through bridge |",
        "|---|---|---|---|---|",
    ]
    lost: list[tuple[dict, dict | None]] = []
    for suite in SUITES:
        keys = [k for k in base if k[0] == suite]
        passed = [k for k in keys if base[k]["status"] == "pass"]
        bridge_pass = sum(now.get(k, {}).get("status") == "pass" for k in keys)
        gone = [k for k in passed if now.get(k, {}).get("status") != "pass"]
        lost += [(base[k], now.get(k)) for k in gone]
        lines.append(f"| {suite} | {len(keys)} | {len(passed)} | {bridge_pass} | {len(gone)} |")
    lines.append("")
    if not lost:
        lines.append("Every case that passed in the baseline passes through bridge.")
        return lines
    lines += ["| case | bridge status | bridge's first error |", "|---|---|---|"]
    for was, record in sorted(lost, key=lambda pair: pair[0]["case"]):
        status = record["status"] if record else "not run"
        lines.append(f"| {was['case']} | {status} | {_cell((record or {}).get('error') or '')} |")
    return lines


def render(records: list[dict], baseline: list[dict] | None = None) -> str:
    # Classified again under the current table: records written before an entry existed count too.
    latest = [apply_limits(r) for r in latest_results(records).values()]
    sizes = suite_sizes(records)
    run_node = sum(r["suite"] == "node" for r in latest)
    seconds = sum(r.get("seconds") or 0 for r in latest)
    versions = ", ".join(f"{t} {_version(t)}" for t in TOOLS)
    last = max((r.get("recorded_at", "") for r in latest), default="")
    upgraded = sum(r.get("upgraded_from") is not None for r in latest)
    out = [
        "# Conformance: ONNX's backend test cases through bridge",
        "",
        f"Generated by `scripts/conformance.py` from `{RESULTS_FILE}` ({len(records)} records, "
        f"{len(latest)} cases; the latest record of a case counts). Do not edit: rerun the command.",
        "",
        "```sh",
        f"{COMMAND}                    # runs the cases not yet recorded, then rewrites this file",
        f"{COMMAND} --max-minutes 40   # the same, starting no case after 40 minutes",
        f"{COMMAND} --only Gelu --force  # one op type again, e.g. while writing a patch",
        "```",
        "",
        "Each case runs in a process of its own, forked from a server per job that imported onnx, onnxruntime, "
        "onnxsim, Paddle and X2Paddle once (`bridge/conformance_server.py`; X2Paddle then runs inside the "
        "case's process, `bridge.stages.convert.x2paddle_in_this_process`, where users get a child process of "
        "its own): its model (upgraded with "
        "`bridge.opset_upgrade.upgrade_if_below` when below opset 7) goes through "
        "`bridge.pipeline.convert` (export (copy) → onnxsim → bridge's patches → X2Paddle 1.6.0), then "
        "Paddle Inference (CPU, oneDNN, bridge's `inference_config`) runs each of the case's data sets and "
        f"`bridge.compare.compare_arrays` checks every output against ONNX's expected one: rtol {RTOL:g}, "
        f"atol {ATOL:g}, shapes and dtypes equal. Statuses: pass; mismatch (ran, an output differs); run_fail "
        "(Paddle Inference could not load or run it); convert_fail (a conversion error other than an "
        "unmapped op); unsupported (bridge's `UnsupportedModel`: an op X2Paddle does not map or failed to "
        "map; or a failure listed under \"Cases that cannot pass\"); crash (the case's process died of a signal, converting or running Paddle Inference, or its "
        "server died under it); timeout (the server killed the case after the per-case limit).",
        "",
        f"Run so far: {len(latest)} cases, {run_node} of the {sizes.get('node', '?')} node cases (the node cases "
        "run round-robin over op types, so a partial run covers every op type first; rerunning the command "
        f"resumes with the rest). {upgraded} cases were upgraded from opset < 7. Sum of case times "
        f"{seconds / 60:.0f} min; last case recorded {last or '-'}. Tools: {versions}.",
        "",
        _code_versions(latest),
        "",
        "## Totals",
        "",
        "The last two columns are the issue's baseline, measured before this harness (X2Paddle 1.6.0 alone; "
        "the pytorch-* suites also with only the opset upgrade in front of it); the next section reruns "
        "X2Paddle alone case by case.",
        "",
        *_totals(latest, sizes),
        "",
        "## Against the baseline, case by case",
        "",
        *_against_baseline(latest, baseline or []),
        "",
        "## Most common failure reasons",
        "",
        "Names, numbers and unmapped op types blanked out (`'…'`, `N`, `…`) so that cases failing the same "
        "way count together.",
        "",
        *_reasons(latest),
        "",
        "## Cases that cannot pass",
        "",
        *_limits(latest),
        "",
        "## Op types X2Paddle 1.6.0 does not map (cases refused)",
        "",
        *_unmapped(latest),
        "",
        "## Failing pytorch-converted and pytorch-operator cases",
        "",
        *_pytorch_failures(latest),
        "",
        "## Per ONNX op type",
        "",
        "Node cases are filed under the op they test (`test_X_expanded` under test_X's op); pytorch-* cases "
        "under their first op that is not Constant, Unsqueeze, Squeeze, Reshape, Transpose, Identity or Cast.",
        "",
        *_op_table(latest),
        "",
    ]
    return "\n".join(out)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def write_readme(out: Path) -> Path:
    """Render ``out/README.md`` from ``out/results.jsonl``, atomically."""
    path = out / README_FILE
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{README_FILE}.tmp")
    tmp.write_text(render(read_results(out / RESULTS_FILE), read_results(out / BASELINE_FILE)))
    tmp.replace(path)
    return path
