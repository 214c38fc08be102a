"""Layerwise validation (``bridge validate --layerwise``): every intermediate tensor of the
patched ONNX graph under ONNX Runtime against the same tensor in the converted Paddle model.

For each ONNX node, in the graph's (topological) order, and each of its outputs:

* the whole-model difference: Paddle's value when the whole model runs, against ONNX Runtime's;
  it includes whatever error the node inherits from upstream;
* the local error: the node's own generated Paddle statements run on ONNX Runtime's values of
  its inputs, against ONNX Runtime's output. Only a node whose conversion is wrong has one.

The first node whose local error is over tolerance (``bridge.compare``'s rule) is the first
divergent node. The ONNX tensor → Paddle variable mapping is explicit in every row: X2Paddle
renames tensors (``bridge.stages.convert.x2paddle_name``), and a tensor with no variable in the
generated code (dropped or fused by X2Paddle) says so instead of being skipped silently.
Intermediate dtypes may differ (X2Paddle keeps some index tensors int32): values are compared
in ONNX's dtype and a dtype difference is noted in the row.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge.compare import compare_arrays
from bridge.layerwise_paddle import NodeRun, PaddleProgram
from bridge.stages.convert import x2paddle_name
from bridge.stages.validate import ValidationReport


@dataclass
class LayerRow:
    """One ONNX node output: where it lives in Paddle and how far Paddle is from ONNX Runtime."""

    index: int  # the node's position in the patched ONNX graph (topological)
    node: str
    op_type: str
    output: str  # ONNX tensor name
    paddle_var: str | None  # the variable in paddle/x2paddle_code.py; None: not in the code
    shape: list[int] | None  # ONNX Runtime's
    max_abs: float | None = None  # whole model
    max_rel: float | None = None
    passed: bool | None = None
    local_max_abs: float | None = None  # the node's statements on ONNX Runtime's inputs
    local_max_rel: float | None = None
    local_pass: bool | None = None  # None: not computed (see note)
    note: str | None = None  # the whole run's problem, or how Paddle holds the tensor differently
    local_problem: str | None = None


@dataclass
class FirstDivergent:
    node: str
    op_type: str
    attributes: dict[str, Any]
    output: str
    paddle_var: str | None
    local_max_abs: float | None
    local_max_rel: float | None
    problem: str | None


@dataclass
class LayerwiseReport:
    batch: int
    atol: float
    rtol: float
    seconds: float
    rows: list[LayerRow] = field(default_factory=list)
    first_divergent: FirstDivergent | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "layerwise": {
                "batch": self.batch, "atol": self.atol, "rtol": self.rtol, "seconds": round(self.seconds, 3),
                "nodes": len({r.index for r in self.rows}), "tensors": len(self.rows),
                "unmapped": [r.output for r in self.rows if r.paddle_var is None],
                "rows": [asdict(r) for r in self.rows],
            },
            "first_divergent": None if self.first_divergent is None else asdict(self.first_divergent),
        }

    def render(self, max_rows: int = 40) -> str:
        """The table when short; else the rows that decide: every local failure and the first
        whole-model ones. validation.json has every row."""
        def num(x):
            return "-" if x is None else f"{x:.2e}"

        over = [r for r in self.rows if r.passed is False]
        local_bad = [r for r in self.rows if r.local_pass is False]
        shown = self.rows if len(self.rows) <= max_rows else sorted(
            {id(r): r for r in local_bad[:max_rows // 2] + over[:max_rows // 2]}.values(), key=lambda r: r.index)
        unmapped = sum(r.paddle_var is None for r in self.rows)
        lines = [
            f"layerwise at batch {self.batch} ({len({r.index for r in self.rows})} nodes, {len(self.rows)} tensors, "
            f"{unmapped} without a Paddle variable; {self.seconds:.1f}s); local = the node's Paddle code on "
            f"ONNX Runtime's inputs:",
            f"  {'#':>4}  {'node':<28} {'op':<12} {'paddle variable':<32} {'max_abs':>9} {'local_abs':>9}  result",
        ]
        for r in shown:
            if r.local_pass is False:
                result = "DIVERGES HERE"
            elif r.passed is False:
                result = "inherited" if r.local_pass else "over tolerance"
            else:
                result = "ok" if r.passed else "-"
            extra = "; ".join(x for x in (r.local_problem and f"local: {r.local_problem}", r.note) if x)
            extra = f" ({extra})" if extra else ""
            lines.append(f"  {r.index:>4}  {r.node[:28]:<28} {r.op_type[:12]:<12} {(r.paddle_var or '-')[:32]:<32} "
                         f"{num(r.max_abs):>9} {num(r.local_max_abs):>9}  {result}{extra}")
        if not shown:
            lines[-1] = f"  no tensor over tolerance; all {len(self.rows)} rows are in validation.json"
        elif len(shown) < len(self.rows):
            lines.append(f"  ... {len(self.rows) - len(shown)} more rows in validation.json")
        lines.append(f"tensors over tolerance: {len(over)} whole-model, {len(local_bad)} local")
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        d = self.first_divergent
        if d is None:
            return "first divergent node: none (every node's Paddle code matches ONNX Runtime on its inputs)"
        attrs = ", ".join(f"{k}={v}" for k, v in d.attributes.items())
        error = f"local max_abs {d.local_max_abs:.2e}" if d.local_max_abs is not None else ""
        error += f"{'; ' if error else ''}{d.problem}" if d.problem else ""
        return f"first divergent node: {d.node} ({d.op_type}{': ' + attrs if attrs else ''}), output {d.output}: {error}"


@dataclass
class LayerwiseValidationReport(ValidationReport):
    """A validation report with the layerwise table (``validation.json`` keys ``layerwise`` and
    ``first_divergent``)."""

    layerwise: LayerwiseReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **(self.layerwise.to_json() if self.layerwise else {})}

    def render(self) -> str:
        text = super().render()
        return text if self.layerwise is None else f"{text}\n{self.layerwise.render()}"


def with_layerwise(report: ValidationReport, layerwise: LayerwiseReport) -> LayerwiseValidationReport:
    fields = {k: getattr(report, k) for k in ValidationReport.__dataclass_fields__}
    return LayerwiseValidationReport(**fields, layerwise=layerwise)


def ort_all_tensors(onnx_path: Path, feeds: dict[str, np.ndarray], device: str = "cpu",
                    threads: int | None = None) -> dict[str, np.ndarray]:
    """Every node output of ``onnx_path`` under ONNX Runtime (each made a graph output)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    exposed = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in exposed:
                model.graph.output.append(onnx.ValueInfoProto(name=name))  # ORT infers the type
                exposed.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    providers = (["CUDAExecutionProvider"] if device == "gpu" else []) + ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, feeds)))
    values.update(feeds)
    return {k: v for k, v in values.items() if isinstance(v, np.ndarray)}


def _attributes(node) -> dict[str, Any]:
    from onnx import helper

    found = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, list):
            value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
        elif not isinstance(value, (int, float, str)):  # a tensor or a graph: its kind only
            value = type(value).__name__
        found[attr.name] = value
    return found


def _compare(got: np.ndarray, ref: np.ndarray, name: str, batch: int, atol: float, rtol: float):
    """compare_arrays on values: in ONNX's dtype, and a 0-d ONNX tensor against X2Paddle's
    shape-[1] stand-in for it (Paddle 2.x, which X2Paddle 1.6.0 targets, had no 0-d tensors)."""
    got = np.asarray(got)
    if ref.ndim == 0 and got.shape == (1,):
        got = got.reshape(())
    if got.shape == ref.shape and got.dtype != ref.dtype:
        got = got.astype(ref.dtype)
    return compare_arrays(got, ref, batch=batch, output=name, runner="paddle", reference="onnxruntime",
                          atol=atol, rtol=rtol)


def _representation(got: np.ndarray, ref: np.ndarray) -> str | None:
    """How Paddle holds the tensor differently from ONNX, when its values still compare."""
    notes = []
    if ref.ndim == 0 and got.shape == (1,):
        notes.append("shape [1] in Paddle, 0-d in ONNX")
    if got.dtype != ref.dtype:
        notes.append(f"dtype {got.dtype} in Paddle, {ref.dtype} in ONNX")
    return ", ".join(notes) or None


def run_layerwise(onnx_path: Path, paddle_dir: Path, feeds: dict[str, np.ndarray], *,
                  atol: float, rtol: float, device: str = "cpu", threads: int | None = None) -> LayerwiseReport:
    """Layerwise validation of ``paddle_dir`` (converted from ``onnx_path``) on ``feeds``."""
    import onnx

    start = time.perf_counter()
    batch = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    ort_values = ort_all_tensors(onnx_path, feeds, device, threads)
    program = PaddleProgram(paddle_dir, onnx_path, device)
    by_var = {x2paddle_name(name): value for name, value in ort_values.items()}
    runs = program.run({x2paddle_name(k): v for k, v in feeds.items()}, by_var)
    owner_of_var = {v: n.owner for n in program.nodes.values() for v in n.outputs}
    model = onnx.load(str(onnx_path), load_external_data=False)
    report = LayerwiseReport(batch, atol, rtol, 0.0)
    for index, node in enumerate(model.graph.node):
        owner = owner_of_var.get(x2paddle_name(node.output[0])) if node.output else None
        code = program.nodes.get(owner) if owner else None
        run = runs.get(owner, NodeRun()) if owner else NodeRun()
        for name in node.output:
            if not name:
                continue
            row = _row(index, node, name, code, run, ort_values.get(name), batch, atol, rtol)
            report.rows.append(row)
            if row.local_pass is False and report.first_divergent is None:
                report.first_divergent = FirstDivergent(
                    node.name or name, node.op_type, _attributes(node), name, row.paddle_var,
                    row.local_max_abs, row.local_max_rel, row.local_problem)
    report.seconds = time.perf_counter() - start
    return report


def _row(index, node, name, code, run: NodeRun, ref, batch, atol, rtol) -> LayerRow:
    var = x2paddle_name(name)
    row = LayerRow(index, node.name or name, node.op_type, name, None,
                   None if ref is None else list(ref.shape))
    if code is None:
        row.note = f"X2Paddle dropped the node ({node.op_type})" if node.op_type == "Dropout" \
            else "no X2Paddle node writes it"
        return row
    if var not in code.writes:
        row.note = (f"X2Paddle writes no statement for it (inlined into its consumers or fused)" if not code.statements
                    else f"X2Paddle's code for {code.owner} does not assign {var} (fused or left out)")
        return row
    row.paddle_var = var
    if ref is None:
        row.note = "ONNX Runtime gave no tensor value"
        return row
    notes = []
    got = run.full.get(var)
    if run.full_error or got is None:
        row.passed = False
        notes.append(f"whole run: {run.full_error or 'no value'}")
    else:
        diff = _compare(got, ref, name, batch, atol, rtol)
        row.max_abs, row.max_rel, row.passed = diff.max_abs_diff, diff.max_rel_diff, diff.passed
        if _representation(got, ref):
            notes.append(_representation(got, ref))
        if diff.problem and diff.max_abs_diff is None:
            notes.append(f"whole run: {diff.problem}")
    row.note = "; ".join(notes) or None
    local = run.local.get(var)
    if run.local_error or local is None:
        row.local_pass = False
        row.local_problem = f"its code failed on ONNX Runtime's inputs: {run.local_error or 'no value'}"
    else:
        diff = _compare(local, ref, name, batch, atol, rtol)
        row.local_max_abs, row.local_max_rel, row.local_pass = diff.max_abs_diff, diff.max_rel_diff, diff.passed
        row.local_problem = None if diff.passed else diff.problem
    return row


def bench_layerwise(nodes: int = 1000, root: Path | None = None) -> dict[str, float]:
    """Convert ``bench_models.scaling_model(nodes)`` and time ``bridge validate --layerwise`` on
    it (batch 1). Returns seconds: ``convert`` and ``layerwise`` (the layerwise part alone), and
    the node count. For bench/; converts into ``root`` (default: a temporary folder)."""
    import contextlib
    import tempfile

    import onnx

    from bridge import pipeline
    from bridge.bench_models import scaling_model

    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-layerwise-bench-")))
        onnx_path = root / f"scaling_{nodes}.onnx"
        onnx.save(scaling_model(nodes), str(onnx_path))
        start = time.perf_counter()
        pipeline.convert(str(onnx_path), root / "work", echo=lambda line: None)
        converted = time.perf_counter()
        report = pipeline.validate(root / "work", batch_sizes=(1,), layerwise=True)
        total = time.perf_counter() - converted
        return {"nodes": len({r.index for r in report.layerwise.rows}), "convert_s": converted - start,
                "validate_layerwise_s": total, "layerwise_s": report.layerwise.seconds}
