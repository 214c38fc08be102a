"""``DIR/report.html`` as a person sees it: opened in headless Chromium (Debian's ``chromium``,
which ``make test`` installs), the DOM Chromium built is checked against validation.json and the
terminal's table, and a screenshot proves the page renders.

Two runs on copies of the session's SeqNet conversion: a clean one with a per-output tolerance,
and one with a planted converter fault (a Conv bias of the dygraph params off by 0.5, recorded as
if X2Paddle wrote it), validated with ``--layerwise`` so the page must highlight that Conv.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bridge import cli
from bridge.report_html import fmt
from tests.helpers import rerecord

STAGES = ("export", "simplify", "patch", "convert", "validate")


def chromium() -> str:
    path = os.environ.get("BRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        if os.environ.get("BRIDGE_REQUIRE_CHROMIUM"):  # set by `make test`, which installs it
            pytest.fail(f"{path} missing: `make test` installs Debian's chromium (Makefile target $(CHROMIUM))")
        pytest.skip(f"{path} missing (apt-get install chromium; `make test` installs it and then requires it)")
    return path


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"  # its own profile: parallel runs do not share a lock
    argv = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            f"--user-data-dir={profile}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dump_dom(html: Path, tmp_path: Path) -> str:
    return _chromium(["--dump-dom", html.resolve().as_uri()], tmp_path).stdout


def screenshot(html: Path, png: Path, tmp_path: Path, height: int = 900) -> np.ndarray:
    """The page's top ``height`` pixels (a window that tall) as RGB."""
    from PIL import Image  # Paddle's own dependency

    _chromium([f"--screenshot={png}", f"--window-size=1400,{height}", "--hide-scrollbars", html.resolve().as_uri()],
              tmp_path)
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(png).convert("RGB"))


def has_color(pixels: np.ndarray, rgb: tuple[int, int, int], at_least: int = 500) -> bool:
    return int(np.all(pixels == np.array(rgb, np.uint8), axis=-1).sum()) >= at_least


class Dom(HTMLParser):
    """The rendered page's table rows (attributes, cells by class) and histogram figures."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[dict] = []
        self.figures: list[dict] = []
        self.ids: dict[str, str] = {}
        self._cell: dict | None = None
        self._id_stack: list[tuple[str, str, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append({"attrs": attrs, "cells": []})
        elif tag == "td" and self.rows:
            self._cell = {"class": attrs.get("class", ""), "text": ""}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "figure":
            self.figures.append({"attrs": attrs, "bars": [], "text": ""})
        elif tag == "title" and self.figures:
            self.figures[-1]["bars"].append("")
        if "id" in attrs:
            self._id_stack.append((tag, attrs["id"], []))

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        if self._id_stack and self._id_stack[-1][0] == tag:
            _, ident, parts = self._id_stack.pop()
            self.ids[ident] = "".join(parts)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self.figures:
            self.figures[-1]["text"] += data
            if self.figures[-1]["bars"] and self.lasttag == "title":
                self.figures[-1]["bars"][-1] += data
        for _, _, parts in self._id_stack:
            parts.append(data)

    def row(self, **attrs) -> dict:
        found = [r for r in self.rows if all(r["attrs"].get(f"data-{k}") == str(v) for k, v in attrs.items())]
        assert len(found) == 1, (attrs, len(found))
        return found[0]

    @staticmethod
    def cell(row: dict, cls: str) -> str:
        return next(c["text"].strip() for c in row["cells"] if cls in c["class"].split())


def terminal_rows(out: str) -> dict[tuple[str, str, str, str], list[str]]:
    """The Markdown table bridge validate printed: (batch, output, runner, reference) -> cells."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[0].isdigit():
            rows[tuple(cells[:4])] = cells
    return rows


def _validate(work: Path, capsys, *args: str) -> tuple[int, str, dict]:
    code = cli.main(["validate", str(work), *args])
    out = capsys.readouterr().out
    return code, out, json.loads((work / "validation.json").read_text())


def _histogram_counts(figure: dict) -> dict[str, int]:
    counts = {}
    for bar in figure["bars"]:
        label, _, count = bar.rpartition(": ")
        counts[label] = int(count)
    return counts


def test_clean_report_shows_the_figures_of_the_run(seqnet_work, tmp_path, capsys):
    work = tmp_path / "work"
    shutil.copytree(seqnet_work, work)
    code, out, report = _validate(work, capsys, "--batch-sizes", "1,2", "--tol", "output=2e-5,3e-4")
    assert code == 0, out
    dom = Dom(dump_dom(work / "report.html", tmp_path))

    assert dom.ids["verdict"] == "PASSED"
    terminal = terminal_rows(out)
    assert len(report["diffs"]) == len(terminal) == 10  # 5 pairs x 2 batches
    for d in report["diffs"]:
        row = dom.row(batch=d["batch"], output=d["output"], runner=d["runner"], reference=d["reference"])
        shown = Dom.cell(row, "max_abs")
        assert shown == fmt(d["max_abs_diff"]) == terminal[(str(d["batch"]), d["output"], d["runner"], d["reference"])][4]
        assert Dom.cell(row, "result") == "ok"
        assert d["median_abs_diff"] <= d["p99_abs_diff"] <= d["max_abs_diff"] < 1e-5
        assert 0.999999 < d["cosine_similarity"] <= 1.0 and Dom.cell(row, "cosine") == f"{d['cosine_similarity']:.6f}"
        assert (d["atol"], d["rtol"]) == (2e-5, 3e-4)  # the per-output override, not the default
        assert d["noise_floor"] is not None and Dom.cell(row, "noise") == fmt(d["noise_floor"])
    assert report["tolerance"]["per_output"] == {"output": {"atol": 2e-5, "rtol": 3e-4}}
    assert report["noise_floor"]["runs"] == 2 and len(report["noise_floor"]["rows"]) == 4  # (ort, torch) x 2 batches

    for stage in STAGES:  # every stage with its recorded seconds
        row = dom.row(stage=stage)
        seconds = json.loads((work / "manifest.json").read_text())["stages"][stage]["seconds"]
        assert row["cells"][1]["text"].startswith(f"{seconds:.2f}")
    patches = {f["patch"] for f in json.loads((work / "manifest.json").read_text())["stages"]["patch"]["fired"]}
    assert patches and all(dom.row(patch=p) for p in patches)

    figures = {f["attrs"]["data-runner"]: f for f in dom.figures if f["attrs"].get("data-output") == "output"}
    assert set(figures) == {"paddle_inference", "paddle_dygraph"}
    for runner, figure in figures.items():
        counts = _histogram_counts(figure)
        total = sum(d["total_elements"] for d in report["diffs"]
                    if d["runner"] == runner and d["reference"] == "onnxruntime")
        assert sum(counts.values()) == total
        assert sum(c for label, c in counts.items() if label.startswith(("1e-05", "1e-04", "1e-03", "1e-02", "1e-01",
                                                                          "1e+00", ">=", "NaN"))) == 0

    pixels = screenshot(work / "report.html", tmp_path / "clean.png", tmp_path)
    assert has_color(pixels, (216, 245, 216))  # the PASSED badge, styled


def test_planted_fault_report_highlights_the_divergent_conv(seqnet_work, tmp_path, capsys):
    import paddle

    work = tmp_path / "work"
    shutil.copytree(seqnet_work, work)
    params_path = work / "paddle" / "model.pdparams"
    params = paddle.load(str(params_path))
    params["conv2.bias"] = params["conv2.bias"] + 0.5  # the third Conv1D of the generated code
    paddle.save(params, str(params_path))
    rerecord(work, "paddle/model.pdparams")  # a converter bug, not a hand edit (integrity check)

    code, out, report = _validate(work, capsys, "--layerwise", "--batch-sizes", "2", "--noise-runs", "2")
    assert code == 1, out
    first = report["first_divergent"]
    code_text = (work / "paddle" / "x2paddle_code.py").read_text()
    assert first["op_type"] == "Conv" and re.search(rf"{first['paddle_var']} = self\.conv2\(", code_text)
    assert f"first divergent node: {first['node']} (Conv" in out

    dom = Dom(dump_dom(work / "report.html", tmp_path))
    assert dom.ids["verdict"] == "FAILED"
    divergent = [r for r in dom.rows if "divergent" in r["attrs"].get("class", "").split()]
    assert len(divergent) == 1 and divergent[0]["attrs"]["id"] == "first-divergent"
    cells = [c["text"] for c in divergent[0]["cells"]]
    assert cells[1:4] == [first["node"], "Conv", first["output"]] and cells[8] == "DIVERGES HERE"
    assert cells[7] == fmt(first["local_max_abs"]) and first["local_max_abs"] == pytest.approx(0.5, rel=1e-3)

    dygraph = next(d for d in report["diffs"] if d["runner"] == "paddle_dygraph" and d["reference"] == "onnxruntime")
    row = dom.row(batch=2, output="output", runner="paddle_dygraph", reference="onnxruntime")
    assert not dygraph["passed"] and Dom.cell(row, "max_abs") == fmt(dygraph["max_abs_diff"]) != fmt(None)
    assert Dom.cell(row, "result").startswith("FAIL: ") and "fail" in row["attrs"]["class"].split()
    figure = next(f for f in dom.figures if f["attrs"].get("data-runner") == "paddle_dygraph")
    over = sum(c for label, c in _histogram_counts(figure).items() if label[:5] in ("1e-04", "1e-03", "1e-02", "1e-01", "1e+00"))
    assert over > 0  # the bias error shows past atol in the dygraph histogram

    # The whole page in one tall window (headless screenshots do not scroll to a #fragment).
    pixels = screenshot(work / "report.html", tmp_path / "fault.png", tmp_path, height=8000)
    assert has_color(pixels, (255, 179, 179))  # the highlighted row, rendered with its style
    assert has_color(pixels, (255, 214, 214), at_least=100)  # the FAILED badge


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tol", "output"], "--tol 'output': expected OUTPUT=ATOL,RTOL"),
        (["--tol", "logits=1e-4,1e-3"], "--tol logits=...: the model has no output 'logits' (outputs: output)"),
        (["--atol", "-1"], "--atol -1.0: a tolerance must be a finite number >= 0"),
        (["--noise-runs", "0"], "--noise-runs 0: must be >= 1"),
    ],
)
def test_bad_tolerance_arguments_exit_2_and_write_nothing(seqnet_work, capsys, args, message):
    before = {p: p.stat().st_mtime_ns for p in seqnet_work.rglob("*") if p.is_file()}
    assert cli.main(["validate", str(seqnet_work), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in seqnet_work.rglob("*") if p.is_file()} == before


def test_op_count_diff_per_patch_adds_up_to_the_total():
    """The patch stage records what each patch alone changed (the page's op-count column)."""
    from bridge.patches import apply_patches
    from bridge.report_html import _patches_section
    from tests.helpers import parse_model

    model = parse_model("""
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[2, 3] x, int64[2, 3] like) => (int64[2, 3] y)
    {
        a = Selu (x)
        b = Selu (a)
        y = CastLike (b, like)
    }
    """)
    _, report = apply_patches(model)
    assert set(report.op_diff_by_patch) == {"decompose_selu", "castlike_to_cast"}
    assert report.op_diff_by_patch["decompose_selu"]["Selu"] == "-2 (2->0)"
    assert report.op_diff_by_patch["castlike_to_cast"] == {"Cast": "+1 (0->1)", "CastLike": "-1 (1->0)"}
    total: dict[str, int] = {}
    for diff in report.op_diff_by_patch.values():
        for op, text in diff.items():
            total[op] = total.get(op, 0) + int(text.split()[0])
    assert {op: int(text.split()[0]) for op, text in report.op_diff().items()} == {k: v for k, v in total.items() if v}

    record = {"stages": {"patch": {"fired": [vars(f) for f in report.fired], "declined": [],
                                   "op_diff": report.op_diff(), "op_diff_by_patch": report.op_diff_by_patch}}}
    dom = Dom(_patches_section(record))
    assert Dom.cell(dom.row(patch="castlike_to_cast"), "op_diff") == "Cast +1 (0->1), CastLike -1 (1->0)"
    assert dom.row(patch="decompose_selu")["cells"][1]["text"] == "2"
