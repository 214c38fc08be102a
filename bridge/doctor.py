"""Preflight: every node X2Paddle 1.6.0 will refuse or mishandle, and what in bridge fixes it.

``diagnose(model)`` scans the model as given (``bridge.doctor_rules.scan``), then simulates
the pipeline's steps after export: onnxsim (``bridge.stages.simplify.simplify_model``) and
each of ``DEFAULT_PATCHES`` in order (the real ``apply_patches``), scanning after every step
that changed the model. A finding is fixed by the step after which it is gone for good, and
blocks when it is still there in the model X2Paddle would get. Findings that only appear
after a step (a patch exposing another problem) are reported too. X2Paddle's conversion never
runs; its shape inference and op tables are read, so a diagnosis takes seconds.

``diagnose_source`` does the same for what users type: an ONNX file, or a torch spec exported
with the strategies ``bridge convert`` uses, diagnosed as exported (not simplified, not
patched), so the report shows what the pipeline fixes.
"""
from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from bridge.doctor_rules import MODEL, Issue, scan
from bridge.onnx_io import load_onnx
from bridge.patches import DEFAULT_PATCHES, apply_patches
from bridge.spec import load_torch_source, parse_input_specs, parse_source
from bridge.stages import export as export_stage
from bridge.stages.simplify import simplify_model

SIMPLIFY_STEP = "onnxsim"  # the name of the simplify step in ``fixed_by``/``found_in``
AS_GIVEN = "model"  # ``found_in`` of findings in the model as given


@dataclass
class Finding:
    node: str  # node name; a tensor name for graph inputs/outputs and initializers; "(model)"
    op_type: str
    opset: int  # the model's ONNX opset (default domain)
    code: str  # reason code, see bridge.doctor_rules
    reason: str
    fixed_by: str | None  # the patch (or "onnxsim") after which it is gone, else None
    blocking: bool  # still there after every bridge step, and not a note
    severity: str  # "error": conversion fails; "mismatch": converts, computes something else; "note"
    rule: str  # the rule's id (bridge.doctor_rules)
    found_in: str = AS_GIVEN  # AS_GIVEN, or the step after which it first appeared

    @property
    def status(self) -> str:
        if self.fixed_by:
            return f"fixed by {self.fixed_by}"
        return "BLOCKS" if self.blocking else "note"


@dataclass
class DoctorReport:
    findings: list[Finding]
    opset: int  # the model's ONNX opset
    x2paddle_opset: int  # the opset mapper X2Paddle would run
    steps: list[str] = field(default_factory=list)  # simulated steps that changed the model
    source: str | None = None
    export: dict[str, Any] | None = None  # strategy and opset, for torch sources
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def blocking(self) -> bool:
        return any(f.blocking for f in self.findings)

    def summary(self) -> str:
        where = f"opset {self.opset}" + (f", X2Paddle mapper {self.x2paddle_opset}" if self.x2paddle_opset != self.opset else "")
        if self.export:
            where += f", {self.export['strategy']} export"
        if not self.findings:
            return f"no findings ({where}): X2Paddle 1.6.0 takes this model as is"
        fixed = Counter(f.fixed_by for f in self.findings if f.fixed_by)
        blocking = sum(f.blocking for f in self.findings)
        parts = [f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''} ({where})"]
        if fixed:
            parts.append(f"{sum(fixed.values())} fixed by bridge ({', '.join(f'{k} ×{v}' for k, v in fixed.items())})")
        notes = sum(1 for f in self.findings if not f.blocking and not f.fixed_by)
        if notes:
            parts.append(f"{notes} note{'s' if notes != 1 else ''}")
        if blocking:
            verdict = f"{blocking} block{'s' if blocking == 1 else ''}: X2Paddle 1.6.0 will refuse or mishandle this model even after bridge's steps"
        else:
            verdict = "none blocks: X2Paddle 1.6.0 will convert it after bridge's steps"
        return ", ".join(parts) + "; " + verdict

    def render(self) -> str:
        """One line per finding (node, op type, reason, fixed by / BLOCKS / note), then a summary."""
        rows = [(f.node, f.op_type, f.reason + ("" if f.found_in == AS_GIVEN else f" (after {f.found_in})"), f.status)
                for f in self.findings]
        lines = []
        if rows:
            w_node = min(max(len(r[0]) for r in rows), 48)
            w_op = max(len(r[1]) for r in rows)
            lines = [f"{node:<{w_node}}  {op:<{w_op}}  {reason}  -> {status}" for node, op, reason, status in rows]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.summary())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocking": self.blocking,
            "summary": self.summary(),
            "source": self.source,
            "export": self.export,
            "opset": self.opset,
            "x2paddle_opset": self.x2paddle_opset,
            "steps": self.steps,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "findings": [asdict(f) | {"status": f.status} for f in self.findings],
        }


def _same(a: Issue, b: Issue) -> bool:
    """One problem seen in two versions of the graph: steps keep node names (onnxsim, the
    patches' copies) or the output tensor (a node replaced by one producing the same tensor)."""
    if a.rule != b.rule:
        return False
    return a.node == b.node or (a.node != MODEL and bool(a.output) and a.output == b.output)


def _simulate(model: onnx.ModelProto, simplify: bool, notes: list[str]) -> list[tuple[str, list[Issue]]]:
    """The pipeline after export, step by step: (step, issues after it) for each step that
    changed the model."""
    timeline: list[tuple[str, list[Issue]]] = []
    current = model
    if simplify:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        simplified, error = simplify_model(copy)
        if error is None:
            current = simplified
            timeline.append((SIMPLIFY_STEP, scan(current)[1]))
        else:
            notes.append(f"onnxsim failed ({error}); the pipeline goes on with the unsimplified model")
    for patch in DEFAULT_PATCHES:
        # one patch at a time, in DEFAULT_PATCHES order, each to its fixpoint: what the patch
        # stage's apply_patches does, so each firing can be credited with what it fixed
        patched, report = apply_patches(current, (patch,))
        if report.fired:
            current = patched
            timeline.append((patch.name, scan(current)[1]))
    return timeline


def diagnose(model: onnx.ModelProto, *, simplify: bool = True) -> DoctorReport:
    """Findings for ``model`` as given, each with the bridge step that fixes it (or none).
    ``simplify=False`` leaves onnxsim out of the simulation (patches only). ``model`` is not
    modified."""
    start = time.perf_counter()
    view, given = scan(model)
    notes: list[str] = []
    timeline = _simulate(model, simplify, notes)
    final = timeline[-1][1] if timeline else given

    findings: list[Finding] = []

    def finding(issue: Issue, fixed_by: str | None, found_in: str = AS_GIVEN) -> Finding:
        blocking = fixed_by is None and issue.severity != "note"
        return Finding(issue.node, issue.op_type, view.opset, issue.code, issue.reason, fixed_by, blocking,
                       issue.severity, issue.rule, found_in)

    for issue in given:
        seen = [any(_same(issue, later) for later in issues) for _, issues in timeline]
        if not timeline or seen[-1]:
            findings.append(finding(issue, None))
            continue
        last_seen = max((i for i, s in enumerate(seen) if s), default=-1)
        findings.append(finding(issue, timeline[last_seen + 1][0]))
    for issue in final:  # problems the steps exposed or introduced
        if any(_same(issue, g) for g in given):
            continue
        first = len(timeline) - 1
        while first > 0 and any(_same(issue, x) for x in timeline[first - 1][1]):
            first -= 1
        findings.append(finding(issue, None, timeline[first][0]))
    return DoctorReport(findings, view.opset, view.mapper_opset, [step for step, _ in timeline],
                        notes=notes, seconds=time.perf_counter() - start)


def diagnose_source(source_text: str, input_texts: list[str]) -> DoctorReport:
    """``bridge doctor SOURCE [--input ...]``: SOURCE and ``--input`` as ``bridge convert``
    takes them (the same parsing, the same export strategies and errors); the exported or
    given ONNX is diagnosed as it comes out of that stage."""
    start = time.perf_counter()
    source = parse_source(source_text)
    specs = parse_input_specs(input_texts)
    export_record = None
    with tempfile.TemporaryDirectory(prefix="bridge-doctor-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        if source.kind == "onnx":
            export_stage.copy_onnx(source.path, onnx_path, specs)  # checks --input names like convert
        else:
            module, example = load_torch_source(source)
            result = export_stage.export_torch(
                module, example, specs, onnx_path, source_text=source.text, log_path=Path(tmp) / "export.log",
            )
            export_record = {"strategy": result.exporter, "opset": result.opset, "attempts": result.attempts}
        model = load_onnx(onnx_path)
    report = diagnose(model)
    report.source = source_text
    report.export = export_record
    report.seconds = time.perf_counter() - start
    return report


__all__ = ["DoctorReport", "Finding", "diagnose", "diagnose_source"]
