"""Shared helpers for tests: build tiny ONNX graphs, run them in ORT and through X2Paddle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser

from bridge.runners import OrtRunner, PaddleInferenceRunner
from bridge.stages import convert as convert_stage


def parse_model(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp: Path) -> dict[str, np.ndarray]:
    path = save(model, tmp / "ort_model.onnx")
    return OrtRunner(path).run(feeds)


def convert_and_run_paddle(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp: Path) -> dict[str, np.ndarray]:
    """Convert ``model`` with X2Paddle (through bridge's convert stage) and run Paddle Inference."""
    onnx_path = save(model, tmp / "model.onnx")
    paddle_dir = tmp / "paddle"
    result = convert_stage.run(onnx_path, paddle_dir, tmp / "convert.log")
    runner = PaddleInferenceRunner(paddle_dir, result.inputs, result.outputs)
    return runner.run(feeds)


def rerecord(work: Path, *names: str) -> None:
    """Record the current sha256 of ``names`` (relative to ``work``) in the manifest, as if the
    conversion had written them: for tests that plant a wrong artifact on purpose (a converter
    bug), which bridge's integrity check would otherwise refuse as edited by hand."""
    from bridge.integrity import ARTIFACT_STAGES
    from bridge.workdir import Manifest, sha256_file

    manifest = Manifest.load(work)
    for name in names:
        stage = next(s for s in reversed(ARTIFACT_STAGES)
                     if name in manifest.data["stages"].get(s, {}).get("outputs", {}))
        manifest.data["stages"][stage]["outputs"][name] = sha256_file(work / name)
    manifest.save()
