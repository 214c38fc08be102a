"""Models whose weights are in an external data file (what a model over protobuf's 2 GB limit
must be): converted and validated end to end, the weights streamed from stage to stage.

A tiny model saved with ``size_threshold=0`` goes down the same path as the bench's 3 GB one
(``bridge/bench_models.py``, ``scripts/bench.py --only big``), in seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from bridge import pipeline
from bridge.onnx_io import data_path, load_onnx, save_onnx
from bridge.runners import OrtRunner
from bridge.stages import simplify as simplify_stage
from bridge.workdir import EXPORTED_ONNX, PATCHED_ONNX, SIMPLIFIED_ONNX, Manifest

WIDTH = 32
ARTIFACTS = (EXPORTED_ONNX, SIMPLIFIED_ONNX, PATCHED_ONNX)


def write_external_model(folder: Path, seed: int = 0) -> Path:
    """x[N, 32] @ W + B, Relu, then Reshape to [N, 2, 16] (its shape is an initializer too, so
    simplify/patch/X2Paddle must read an external initializer's *value*). Every initializer
    goes to ``weights.bin`` (not bridge's own naming), plus a foldable Add of two inline
    constants that onnxsim must still fold."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)
    bias = rng.standard_normal(WIDTH).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c1"], value=numpy_helper.from_array(np.full(WIDTH, 0.5, np.float32))),
            helper.make_node("Constant", [], ["c2"], value=numpy_helper.from_array(np.full(WIDTH, 0.25, np.float32))),
            helper.make_node("Add", ["c1", "c2"], ["c"], name="fold_me"),
            helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
            helper.make_node("Add", ["mm", "B"], ["biased"], name="bias"),
            helper.make_node("Add", ["biased", "c"], ["shifted"], name="shift"),
            helper.make_node("Relu", ["shifted"], ["relu"], name="relu"),
            helper.make_node("Reshape", ["relu", "shape"], ["y"], name="reshape"),
        ],
        "external_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, WIDTH // 2])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B"),
         numpy_helper.from_array(np.array([-1, 2, WIDTH // 2], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="bridge-tests")
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlp.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return path


def external_initializers(path: Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {t.name: ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("external")
    source = write_external_model(folder / "src")
    lines: list[str] = []
    pipeline.convert(str(source), folder / "work", echo=lines.append)
    return source, folder / "work", lines


def test_source_really_uses_external_data(converted):
    source, _, _ = converted
    assert set(external_initializers(source)) == {"W", "B", "shape"}
    assert (source.parent / "weights.bin").stat().st_size >= WIDTH * WIDTH * 4


def test_every_onnx_artifact_keeps_its_weights_beside_it(converted):
    _, work, _ = converted
    for name in ARTIFACTS:
        locations = external_initializers(work / name)
        assert locations["W"] == name + ".data", name  # bridge's own file, not the source's weights.bin
        assert (work / name).stat().st_size < WIDTH * WIDTH * 4  # the .onnx file holds no weights
        weights = {t.name: numpy_helper.to_array(t) for t in load_onnx(work / name).graph.initializer}
        source_weights = {t.name: numpy_helper.to_array(t) for t in load_onnx(converted[0]).graph.initializer}
        np.testing.assert_array_equal(weights["W"], source_weights["W"])


def test_simplify_still_folds_the_inline_constants(converted):
    _, work, lines = converted
    manifest = Manifest.load(work)
    record = manifest.data["stages"]["simplify"]
    assert record["simplified"], record
    ops = [n.op_type for n in load_onnx(work / SIMPLIFIED_ONNX, weights=False).graph.node]
    assert ops.count("Add") == 2 and ops.count("Constant") <= 1, ops  # c1 + c2 folded into one
    assert any("external data" in note for note in record["notes"])
    simplified = load_onnx(work / SIMPLIFIED_ONNX, weights=False)
    assert {i.name for i in simplified.graph.input} == {"x"}  # the lifted weights are initializers again


def test_converts_and_validates(converted):
    _, work, lines = converted
    assert [line.split(":")[0] for line in lines[:4]] == ["export", "simplify", "patch", "convert"]
    report = pipeline.validate(work, batch_sizes=(1, 3))
    assert report.passed, report.render()
    assert {d.runner for d in report.diffs} >= {"paddle_inference", "paddle_dygraph"}
    stage_runs = {d.stage: d for d in report.stage_diffs}
    assert stage_runs["export"].error is None  # the user's file itself ran as the reference


def test_manifest_hashes_the_data_files(converted):
    _, work, _ = converted
    stages = Manifest.load(work).data["stages"]
    assert EXPORTED_ONNX + ".data" in stages["export"]["outputs"]
    assert SIMPLIFIED_ONNX + ".data" in stages["patch"]["inputs"]
    assert PATCHED_ONNX + ".data" in stages["convert"]["inputs"]


def test_changed_weights_file_reruns_the_stages(tmp_path):
    source = write_external_model(tmp_path / "src")
    work = tmp_path / "work"
    pipeline.convert(str(source), work, echo=lambda line: None)
    lines: list[str] = []
    pipeline.convert(str(source), work, echo=lines.append)
    assert sum("reused" in line for line in lines) == 3, lines
    # Same .onnx file, one weight changed in the data file only.
    weights = tmp_path / "src" / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0x40
    weights.write_bytes(bytes(data))
    lines = []
    pipeline.convert(str(source), work, echo=lines.append)
    assert not any("reused" in line for line in lines), lines
    w = {t.name: numpy_helper.to_array(t) for t in load_onnx(work / PATCHED_ONNX).graph.initializer}["W"]
    assert w.tobytes()[:4] == bytes(data[:4])


def test_save_onnx_streams_and_aligns(tmp_path):
    source = write_external_model(tmp_path / "src")
    model = load_onnx(source, weights=False)
    out = tmp_path / "out" / "copy.onnx"
    save_onnx(model, out, external=True, base_dir=source.parent)
    copied = onnx.load(str(out), load_external_data=False)
    infos = [ExternalDataInfo(t) for t in copied.graph.initializer if uses_external_data(t)]
    assert {i.location for i in infos} == {"copy.onnx.data"}
    assert {t.name for t in copied.graph.initializer if not uses_external_data(t)} == {"B", "shape"}  # < 1 KB: inline
    assert all(i.offset % 4096 == 0 for i in infos)  # ONNX Runtime maps aligned data in place
    feeds = {"x": np.random.default_rng(1).standard_normal((2, WIDTH)).astype(np.float32)}
    # ONNX Runtime cannot run the source itself (Reshape's shape is external data): inline it.
    inline = tmp_path / "inline.onnx"
    onnx.save(onnx.load(str(source)), str(inline))
    expected = OrtRunner(inline).run(feeds)["y"]
    np.testing.assert_array_equal(OrtRunner(out).run(feeds)["y"], expected)
    # Saved again without external data: one self-contained file, the stale .data removed.
    save_onnx(load_onnx(out, weights=False), out, external=False, base_dir=out.parent)
    assert not data_path(out).exists()
    np.testing.assert_array_equal(OrtRunner(out).run(feeds)["y"], expected)


def test_lift_and_restore_round_trip(tmp_path):
    model = load_onnx(write_external_model(tmp_path / "src"), weights=False)
    declared = {i.name for i in model.graph.input}
    lifted = simplify_stage.lift_initializers(model)
    assert set(lifted) == {"W", "B", "shape"}
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    assert {i.name for i in model.graph.input} == {"x", "W", "B", "shape"}
    simplify_stage.restore_lifted(model, lifted, declared)
    assert {i.name for i in model.graph.input} == {"x"}
    assert {t.name for t in model.graph.initializer} == {"W", "B", "shape"}


def test_missing_data_file_is_one_line(tmp_path):
    from bridge.errors import BridgeError

    source = write_external_model(tmp_path / "src")
    (tmp_path / "src" / "weights.bin").unlink()
    with pytest.raises(BridgeError, match="weights.bin .*missing"):
        pipeline.convert(str(source), tmp_path / "work", echo=lambda line: None)
