"""``DIR/report.html``: one self-contained page a person opens in a browser after ``bridge
validate``, rendered from ``validation.json`` and ``manifest.json`` only (data in, page out).

Sections, in the pipeline's order: the verdict; the stages with their timings, artifact sizes
and diff against the reference; what each patch changed (op-count diff per patch); the
tolerance model and the noise floor; per-output error statistics; an error histogram per
output (inline SVG: no plotting dependency, no network); the layerwise table with the first
divergent node highlighted (``id="first-divergent"``). Every number is formatted the way the
terminal's table formats it (``fmt``), so the page and the terminal can be read side by side.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from bridge.compare import ErrorHistogram
from bridge.workdir import MANIFEST, STAGE_ORDER, VALIDATION_JSON, write_text_atomic

REPORT_HTML = "report.html"
LAYERWISE_MAX_ROWS = 5000  # a browser stays responsive; validation.json has every row

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-family: ui-monospace, monospace; white-space: nowrap; }
th { background: #f0f0f0; }
.verdict { font-size: 1.3em; font-weight: bold; padding: .3em .6em; display: inline-block; }
.passed { background: #d8f5d8; } .failed { background: #ffd6d6; }
tr.fail td { background: #fff0f0; }
tr.divergent td { background: #ffb3b3; font-weight: bold; }
tr.inherited td { background: #fff5e0; }
code { background: #f4f4f4; padding: 0 3px; }
figure { display: inline-block; margin: .5em 1em .5em 0; }
figcaption { font-size: .9em; color: #444; max-width: 560px; }
div.scroll { overflow-x: auto; }
"""


def fmt(x: float | None) -> str:
    """A diff as the terminal prints it."""
    return "-" if x is None else f"{x:.2e}"


def fmt_cos(x: float | None) -> str:
    return "-" if x is None else f"{x:.6f}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _table(header: list[str], rows: list[str], attrs: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></div>")


def _td(value: Any, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    return f"<td{f' class={chr(34)}{classes}{chr(34)}' if classes else ''}>{escape(str(value))}</td>"


def _stage_details(name: str, record: dict) -> str:
    if name == "export":
        return f"exporter {record.get('exporter', '?')}, opset {record.get('opset', '?')}"
    if name == "simplify":
        if not record.get("simplified", True):
            return f"onnxsim failed, unsimplified model kept ({record.get('error')})"
        return f"{record.get('nodes_before')} -> {record.get('nodes_after')} nodes"
    if name == "patch":
        return f"{len(record.get('fired', []))} rewrites; {record.get('checker', '')}"
    if name == "convert":
        return f"X2Paddle at opset {record.get('x2paddle_opset', '?')}"
    if name == "validate":
        return f"{'passed' if record.get('passed') else 'failed'} on {record.get('device')}, batch {record.get('batch_sizes')}"
    return ""


def _stages_section(work: Path, manifest: dict, validation: dict) -> str:
    stage_diff = {s["stage"]: s for s in validation.get("stage_diffs", [])}
    ref = validation["stage_diffs"][0]["reference"] if validation.get("stage_diffs") else "-"
    rows, total = [], 0.0
    for name in STAGE_ORDER:
        record = manifest.get("stages", {}).get(name)
        if record is None:
            continue
        total += record.get("seconds", 0.0)
        files = list(record.get("outputs", {}))
        sizes = [(work / f).stat().st_size for f in files if (work / f).is_file()]
        top = sorted({f.split("/")[0] for f in files})
        artifacts = ", ".join(t + ("/" if any(f.startswith(t + "/") for f in files) else "") for t in top)
        size = f"{_size(sum(sizes))} in {len(sizes)} file{'s' if len(sizes) != 1 else ''}" if sizes else "-"
        diff = stage_diff.get(name)
        if diff is None:
            result = ""
        elif diff["passed"] is None:
            result = f"not run: {diff.get('error')}"
        else:
            result = "ok" if diff["passed"] else "EXCEEDS TOLERANCE"
        cls = "fail" if diff and diff["passed"] is False else ""
        rows.append(f'<tr data-stage="{escape(name)}" class="{cls}">' + _td(name)
                    + _td(f"{record.get('seconds', 0.0):.2f}" + (" (reused)" if record.get("cached") else ""), num=True)
                    + _td(artifacts) + _td(size, num=True) + _td(_stage_details(name, record))
                    + _td(fmt(diff and diff.get("max_abs_diff")), num=True, cls="max_abs")
                    + _td(fmt(diff and diff.get("noise_floor")), num=True) + _td(result) + "</tr>")
    first = validation.get("first_divergent_stage")
    return ("<h2 id=\"stages\">Pipeline stages</h2>"
            + _table(["stage", "seconds", "artifacts", "size", "details", f"max_abs vs {ref}", "noise floor", "result"],
                     rows)
            + f"<p>Total {total:.1f} s. The stage diff runs each stage's artifact (ONNX under ONNX Runtime, "
            f"then Paddle Inference) on the same inputs; worst over outputs and batches.</p>"
            + (f"<p><b>First stage over tolerance: <span id=\"first-divergent-stage\">{escape(first)}</span></b></p>"
               if first else ""))


def _patches_section(manifest: dict) -> str:
    record = manifest.get("stages", {}).get("patch")
    if record is None:
        return ""
    fired: dict[str, list[str]] = {}
    for f in record.get("fired", []):
        fired.setdefault(f["patch"], []).append(f"{f['node'] or '(unnamed)'} ({f['op_type']})")
    by_patch = record.get("op_diff_by_patch")
    rows = []
    for patch, nodes in fired.items():
        if by_patch is None:
            diff = "not recorded (converted by an older bridge)"
        else:
            diff = ", ".join(f"{op} {d}" for op, d in by_patch.get(patch, {}).items()) or "no op-count change"
        shown = ", ".join(nodes[:8]) + (f" and {len(nodes) - 8} more" if len(nodes) > 8 else "")
        rows.append(f'<tr data-patch="{escape(patch)}">' + _td(patch) + _td(len(nodes), num=True) + _td(shown)
                    + _td(diff, cls="op_diff") + "</tr>")
    total = ", ".join(f"{op} {d}" for op, d in record.get("op_diff", {}).items()) or "none"
    body = (_table(["patch", "fired", "nodes", "op-count diff"], rows) if rows
            else "<p>No patch fired: the simplified model went to X2Paddle as it was.</p>")
    declined = len(record.get("declined", []))
    return (f"<h2 id=\"patches\">Patches</h2>{body}<p>All patches together: {escape(total)}. "
            f"{declined} match{'es' if declined != 1 else ''} declined (reasons in manifest.json).</p>")


def _tolerance_section(validation: dict) -> str:
    tol = validation.get("tolerance", {"atol": validation["atol"], "rtol": validation["rtol"], "per_output": {}})
    overrides = "".join(f"<li><code>{escape(k)}</code>: atol {v['atol']:g}, rtol {v['rtol']:g}</li>"
                        for k, v in tol.get("per_output", {}).items())
    noise = validation.get("noise_floor", {"runs": 1, "rows": []})
    worst: dict[tuple[str, str], float] = {}
    for n in noise.get("rows", []):
        key = (n["reference"], n["output"])
        worst[key] = max(worst.get(key, 0.0), n["max_abs_spread"])
    rows = [f'<tr data-reference="{escape(r)}" data-output="{escape(o)}">' + _td(r) + _td(o)
            + _td(fmt(w), num=True, cls="spread") + _td("bit-identical" if w == 0 else "varies") + "</tr>"
            for (r, o), w in worst.items()]
    if noise.get("runs", 1) < 2 or not rows:
        noise_html = "<p>Noise floor not measured (<code>--noise-runs 1</code>).</p>"
    else:
        zero = all(w == 0 for w in worst.values())
        noise_html = (
            f"<p>Noise floor: each reference ran {noise['runs']}&times; on the same inputs; the largest "
            f"|run<sub>k</sub> &minus; run<sub>1</sub>| over batches:</p>"
            + _table(["reference", "output", "max spread", ""], rows)
            + ("<p>Every reference repeated itself bit for bit here, so the floor is 0: any non-zero diff "
               "below comes from the conversion (or the runtime's different kernels), not from run-to-run "
               "noise. With more threads or on a GPU, reductions may run in another order and the floor "
               "rises.</p>" if zero else
               "<p>The reference does not repeat itself exactly: diffs at or below this spread are not the "
               "conversion's.</p>"))
    return (f"<h2 id=\"tolerance\">Tolerance</h2><p>atol <b>{tol['atol']:g}</b>, rtol <b>{tol['rtol']:g}</b>"
            + (f"; per output:</p><ul>{overrides}</ul>" if overrides else ".</p>")
            + "<p>Pass rule: an element fails when |got &minus; ref| &gt; atol <b>and</b> |got &minus; ref| &gt; "
              "rtol&middot;|ref|. A NaN or &plusmn;Inf fails whatever the tolerance, unless the reference holds "
              "the same NaN / same-signed Inf at that position (counted as <i>matched non-finite</i>). Shapes "
              "and dtypes must be equal. An output passes when no element fails; the run passes when every "
              "comparison passes and no runner failed.</p>" + noise_html)


def _outputs_section(validation: dict) -> str:
    rows = []
    for d in validation.get("diffs", []):
        cls = "" if d["passed"] else "fail"
        result = "ok" if d["passed"] else f"FAIL: {d['problem']}"
        rows.append(
            f'<tr class="{cls}" data-batch="{d["batch"]}" data-output="{escape(d["output"])}" '
            f'data-runner="{escape(d["runner"])}" data-reference="{escape(d["reference"])}">'
            + _td(d["batch"], num=True) + _td(d["output"]) + _td(d["runner"]) + _td(d["reference"])
            + _td("x".join(map(str, d["shape"])) or "scalar") + _td(d["dtype"])
            + _td(fmt(d["max_abs_diff"]), num=True, cls="max_abs") + _td(fmt(d.get("mean_abs_diff")), num=True)
            + _td(fmt(d.get("median_abs_diff")), num=True) + _td(fmt(d.get("p99_abs_diff")), num=True, cls="p99_abs")
            + _td(fmt(d["max_rel_diff"]), num=True) + _td(fmt_cos(d.get("cosine_similarity")), num=True, cls="cosine")
            + _td(fmt(d.get("noise_floor")), num=True, cls="noise")
            + _td(f"{d['atol']:g} / {d['rtol']:g}", num=True)
            + _td(f"{d['failed_elements']}/{d['total_elements']}", num=True)
            + _td(d.get("nonfinite_matched", 0), num=True) + _td(result, cls="result") + "</tr>")
    return ("<h2 id=\"outputs\">Per-output error statistics</h2>"
            + _table(["batch", "output", "runner", "reference", "shape", "dtype", "max abs", "mean abs", "median abs",
                      "p99 abs", "max rel", "cosine", "noise floor", "atol / rtol", "failed", "matched NaN/Inf",
                      "result"], rows, ' id="output-stats"'))


def histogram_svg(hist: ErrorHistogram, atol: float, title: str) -> str:
    """Bars per error decade (log-scaled heights, counts written on top), atol as a dashed line."""
    labels = ["0", f"<{hist.edges[0]:.0e}"] + [f"{e:.0e}" for e in hist.edges] + ["NaN/Inf"]
    labels[-2] = f">={hist.edges[-1]:.0e}"
    counts = [hist.zero] + list(hist.counts) + [hist.nonfinite]
    bar, gap, left, top, height = 34, 4, 40, 20, 150
    width = left + len(counts) * (bar + gap) + 10
    peak = math.log10(1 + max(counts)) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="{width}" height="{top + height + 60}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<line x1="{left}" y1="{top + height}" x2="{width - 10}" y2="{top + height}" stroke="#444"/>']
    for i, (count, label) in enumerate(zip(counts, labels)):
        x = left + i * (bar + gap)
        h = height * math.log10(1 + count) / peak
        color = "#c0392b" if i == len(counts) - 1 else ("#2e86c1" if i else "#7dcea0")
        parts.append(f'<rect x="{x}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" fill="{color}">'
                     f'<title>{escape(label)}: {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar / 2}" y="{top + height - h - 3:.1f}" font-size="9" '
                         f'text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + bar / 2}" y="{top + height + 12}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-45 {x + bar / 2} {top + height + 12})">{escape(label)}</text>')
    ax = _atol_x(atol, hist.edges, left, bar + gap)
    parts.append(f'<line x1="{ax:.1f}" y1="{top - 10}" x2="{ax:.1f}" y2="{top + height}" stroke="#c0392b" '
                 f'stroke-dasharray="4 3"/><text x="{ax + 3:.1f}" y="{top - 2}" font-size="10" fill="#c0392b">'
                 f'atol {atol:g}</text>')
    parts.append(f'<text x="4" y="{top + height / 2}" font-size="10" transform="rotate(-90 10 {top + height / 2})">'
                 f'elements (log)</text></svg>')
    return "".join(parts)


def _atol_x(atol: float, edges: list[float], left: float, step: float) -> float:
    """Where atol sits on the decade axis: bin 0 is exact zeros, bin 1 below edges[0], bin k+2
    starts at edges[k]."""
    if atol <= 0:
        return left + step
    if atol < edges[0]:
        return left + 1.5 * step
    if atol >= edges[-1] * 10:
        return left + (len(edges) + 2) * step
    k = math.floor(math.log10(atol / edges[0]) + 1e-12)
    frac = math.log10(atol) - math.log10(edges[0] * 10 ** k)
    return left + (k + 2 + frac) * step


def _histograms_section(validation: dict) -> str:
    """One histogram per output and converted runner (Paddle Inference, Paddle dygraph) against
    the primary reference, summed over batches."""
    diffs = [d for d in validation.get("diffs", []) if d.get("histogram")]
    if not diffs:
        return ""
    primary = validation["pairs"][0][1] if validation.get("pairs") else diffs[0]["reference"]
    runners = [r for r in dict.fromkeys(d["runner"] for d in diffs if d["reference"] == primary)
               if r.startswith("paddle")] or [diffs[0]["runner"]]
    figures = []
    for output in dict.fromkeys(d["output"] for d in diffs):
        for runner in runners:
            chosen = [d for d in diffs if d["output"] == output and d["runner"] == runner and d["reference"] == primary]
            if not chosen:
                continue
            hist = ErrorHistogram.from_json(chosen[0]["histogram"])
            for d in chosen[1:]:
                hist = hist.add(ErrorHistogram.from_json(d["histogram"]))
            batches = ", ".join(str(d["batch"]) for d in chosen)
            title = f"|{runner} - {primary}| for output {output}"
            figures.append(
                f'<figure class="histogram" data-output="{escape(output)}" data-runner="{escape(runner)}">'
                f'{histogram_svg(hist, chosen[0]["atol"], title)}'
                f"<figcaption>{escape(title)}, batch {escape(batches)} (bars labelled by their lower edge): "
                f"{hist.total} elements, {hist.zero} exactly equal, {hist.nonfinite} NaN/Inf mismatches; max abs "
                f"{escape(fmt(max(d['max_abs_diff'] for d in chosen)))}.</figcaption></figure>")
    return "<h2 id=\"histograms\">Error histograms</h2>" + "".join(figures)


def _layerwise_section(validation: dict) -> str:
    layers = validation.get("layerwise")
    if not layers:
        return ""
    first = validation.get("first_divergent")
    rows = []
    for r in layers["rows"][:LAYERWISE_MAX_ROWS]:
        divergent = first is not None and r["node"] == first["node"] and r["output"] == first["output"]
        if divergent:
            attrs, result = ' class="divergent" id="first-divergent"', "DIVERGES HERE"
        elif r["local_pass"] is False:
            attrs, result = ' class="fail"', "diverges (local)"
        elif r["passed"] is False:
            attrs, result = ' class="inherited"', "inherited"
        else:
            attrs, result = "", "ok" if r["passed"] else "-"
        notes = "; ".join(x for x in (r.get("local_problem") and f"local: {r['local_problem']}", r.get("note")) if x)
        rows.append(f'<tr{attrs} data-node="{escape(r["node"])}">' + _td(r["index"], num=True) + _td(r["node"])
                    + _td(r["op_type"]) + _td(r["output"]) + _td(r["paddle_var"] or "-")
                    + _td("x".join(map(str, r["shape"])) if r.get("shape") is not None else "-")
                    + _td(fmt(r["max_abs"]), num=True) + _td(fmt(r["local_max_abs"]), num=True)
                    + _td(result) + _td(notes) + "</tr>")
    more = (f"<p>First {LAYERWISE_MAX_ROWS} of {len(layers['rows'])} rows; validation.json has all.</p>"
            if len(layers["rows"]) > LAYERWISE_MAX_ROWS else "")
    if first is None:
        head = "<p>First divergent node: <b>none</b> (every node's Paddle code matches ONNX Runtime on its inputs).</p>"
    else:
        attrs = ", ".join(f"{k}={v}" for k, v in first.get("attributes", {}).items())
        head = (f'<p>First divergent node: <a href="#first-divergent"><b class="first-divergent-name">'
                f'{escape(first["node"])}</b></a> ({escape(first["op_type"])}{": " + escape(attrs) if attrs else ""}), '
                f"output <code>{escape(first['output'])}</code>, local max abs {escape(fmt(first.get('local_max_abs')))}"
                f"{'; ' + escape(first['problem']) if first.get('problem') else ''}.</p>")
    return (f"<h2 id=\"layerwise\">Layerwise (batch {layers['batch']}, {layers['nodes']} nodes)</h2>{head}"
            "<p><i>max abs</i>: Paddle's whole-model tensor against ONNX Runtime's (inherited error included); "
            "<i>local abs</i>: the node's own Paddle code on ONNX Runtime's inputs.</p>"
            + _table(["#", "node", "op", "ONNX tensor", "Paddle variable", "shape", "max abs", "local abs", "result",
                      "notes"], rows, ' id="layerwise-table"') + more)


def render_report(work: Path, validation: dict, manifest: dict) -> str:
    passed = validation["passed"]
    source = manifest.get("source", {}).get("text", str(work))
    tools = manifest.get("tools", {})
    worst = max((d for d in validation.get("diffs", []) if d["max_abs_diff"] is not None),
                key=lambda d: d["max_abs_diff"], default=None)
    worst_text = (f"worst max abs {fmt(worst['max_abs_diff'])} ({worst['runner']} vs {worst['reference']}, "
                  f"output {worst['output']}, batch {worst['batch']})" if worst else "no comparison ran")
    issues = "".join(f"<li class=\"error\">error: {escape(e)}</li>" for e in validation.get("errors", []))
    issues += "".join(f"<li>note: {escape(n)}</li>" for n in validation.get("notes", []))
    versions = ", ".join(f"{k} {v}" for k, v in tools.items() if k != "bridge_code_sha256" and v)
    body = (
        f"<h1>bridge validate: <code>{escape(source)}</code></h1>"
        f"<p><span id=\"verdict\" class=\"verdict {'passed' if passed else 'failed'}\">"
        f"{'PASSED' if passed else 'FAILED'}</span> {escape(worst_text)}; device {escape(str(validation['device']))}, "
        f"batch {escape(', '.join(map(str, validation['batch_sizes'])))}.</p>"
        + (f"<ul>{issues}</ul>" if issues else "")
        + _stages_section(work, manifest, validation) + _patches_section(manifest) + _tolerance_section(validation)
        + _outputs_section(validation) + _histograms_section(validation) + _layerwise_section(validation)
        + f"<p style=\"margin-top:2em;color:#666\">{escape(versions)}. Data: validation.json, manifest.json.</p>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bridge validate: "
            f"{escape(source)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


def write_report_html(work: Path) -> Path:
    """Render ``work/report.html`` from the folder's validation.json and manifest.json, atomically."""
    validation = json.loads((work / VALIDATION_JSON).read_text())
    manifest = json.loads((work / MANIFEST).read_text())
    path = work / REPORT_HTML
    write_text_atomic(path, render_report(work, validation, manifest))
    return path
