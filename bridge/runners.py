"""Runtimes behind one interface: ``run(feeds: dict[name, ndarray]) -> dict[name, ndarray]``.

The device is chosen once, when a runner is built; ``check_device`` fails with one clear line
when the GPU path lacks a GPU or a GPU build.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

import numpy as np

from bridge.errors import BridgeError

DEVICES = ("cpu", "gpu")


class Runner(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_device(device: str, frameworks: tuple[str, ...] = ("onnxruntime", "paddle")) -> None:
    """Fail early, naming what is missing, when ``device`` cannot be used."""
    if device not in DEVICES:
        raise BridgeError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return
    if "onnxruntime" in frameworks:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BridgeError(
                "--device gpu: ONNX Runtime has no CUDAExecutionProvider "
                f"(installed: {', '.join(ort.get_available_providers())}); run `make install-gpu`"
            )
    if "paddle" in frameworks:
        import paddle

        if not paddle.device.is_compiled_with_cuda():
            raise BridgeError("--device gpu: this paddlepaddle is a CPU build; run `make install-gpu`")
        if paddle.device.cuda.device_count() == 0:
            raise BridgeError("--device gpu: Paddle sees no CUDA device")
    if "torch" in frameworks:
        import torch

        if not torch.cuda.is_available():
            raise BridgeError("--device gpu: torch sees no CUDA device (torch CPU build or no GPU)")


class TorchRunner:
    name = "torch"

    def __init__(self, module, input_names: list[str], output_names: list[str], device: str = "cpu"):
        import torch

        self._torch = torch
        self.device = "cuda" if device == "gpu" else "cpu"
        self.module = module.to(self.device).eval()
        self.input_names = input_names
        self.output_names = output_names

    def run(self, feeds):
        from bridge.stages.export import flatten_outputs

        torch = self._torch
        args = [torch.from_numpy(_contiguous(feeds[n])).to(self.device) for n in self.input_names]
        with torch.no_grad():
            outs = flatten_outputs(self.module(*args))
        return {n: t.detach().cpu().numpy() for n, (_, t) in zip(self.output_names, outs)}


class OrtRunner:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = (["CUDAExecutionProvider"] if device == "gpu" else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:
            raise BridgeError(f"{onnx_path}: ONNX Runtime cannot load it: {str(exc).strip().splitlines()[0]}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds):
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


def inference_config(inference_dir: Path, device: str = "cpu", threads: int | None = None,
                     settings: dict | None = None):
    """The ``paddle.inference.Config`` for a converted model, from the settings saved beside it
    (``paddle/inference_config.json``, chosen and checked at convert time by
    ``bridge.inference_settings``). Used by validate, bench and users' serving code alike;
    ``threads`` overrides the saved CPU thread count."""
    from paddle import inference

    from bridge.inference_settings import read_settings

    settings = settings if settings is not None else read_settings(inference_dir.parent)
    model_file = inference_dir / "model.json"
    if not model_file.exists():
        model_file = inference_dir / "model.pdmodel"  # Paddle 2.x layout
    config = inference.Config(str(model_file), str(inference_dir / "model.pdiparams"))
    if device == "gpu":
        config.enable_use_gpu(settings["gpu"]["memory_pool_mb"], settings["gpu"]["device_id"])
    else:
        cpu = settings["cpu"]
        config.disable_gpu()
        if cpu["mkldnn"]:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(cpu["mkldnn_cache_capacity"])  # kernel cache per input shape
        else:  # Paddle 3.3.1 turns oneDNN on unless told otherwise
            config.disable_mkldnn()
        if threads or cpu.get("math_threads"):
            config.set_cpu_math_library_num_threads(threads or cpu["math_threads"])
    for name in settings.get("delete_passes", []):
        config.delete_pass(name)
    if not settings.get("glog_info", False):
        config.disable_glog_info()
    return config


class PaddleInferenceRunner:
    name = "paddle_inference"

    def __init__(self, paddle_dir: Path, inputs: dict[str, str], output_names: list[str],
                 device: str = "cpu", threads: int | None = None, settings: dict | None = None,
                 rank0_outputs: Collection[str] = ()):
        """``inputs``: the ONNX inputs the Paddle model takes (ONNX name -> Paddle name); a
        feed for any other input is not fed. ``rank0_outputs``: outputs the ONNX graph declares
        rank 0, given back 0-d where Paddle returns them as shape [1] (``reshaped_outputs``)."""
        from paddle import inference

        self.predictor = inference.create_predictor(
            inference_config(paddle_dir / "inference_model", device, threads, settings)
        )
        self.inputs = inputs
        self.output_names = output_names
        self.rank0_outputs = frozenset(rank0_outputs)
        self.reshaped_outputs: set[str] = set()  # rank-0 outputs Paddle gave as [1], reshaped
        missing = sorted(set(inputs.values()) - set(self.predictor.get_input_names()))
        if missing:
            raise BridgeError(f"{paddle_dir}: inference model has no input {missing[0]!r}")

    def run(self, feeds):
        for onnx_name, paddle_name in self.inputs.items():
            handle = self.predictor.get_input_handle(paddle_name)
            value = _contiguous(feeds[onnx_name])  # 0-d: handle.reshape([]) takes it
            handle.reshape(value.shape)
            handle.copy_from_cpu(value)
        self.predictor.run()
        fetch = self.predictor.get_output_names()
        outs = {n: self.predictor.get_output_handle(f).copy_to_cpu() for n, f in zip(self.output_names, fetch)}
        return _rank0_as_declared(outs, self.rank0_outputs, self.reshaped_outputs)


def _contiguous(value) -> np.ndarray:
    """A C-contiguous array of ``value``; unlike ``np.ascontiguousarray``, a 0-d value stays
    0-d (Paddle and torch take 0-d tensors: a scalar stays a scalar through the model)."""
    return np.asarray(value, order="C")


def _rank0_as_declared(outs: dict[str, np.ndarray], rank0: frozenset[str], reshaped: set[str]) -> dict[str, np.ndarray]:
    """Outputs in ``rank0`` (declared rank 0 by the ONNX graph) that came back as shape [1],
    reshaped to 0-d and their names added to ``reshaped``. X2Paddle's code writes some
    scalars as [1]; only that exact case is reshaped: any other shape is a real mismatch."""
    for name in rank0 & outs.keys():
        if outs[name].shape == (1,):
            outs[name] = outs[name].reshape(())
            reshaped.add(name)
    return outs


def load_generated_module(code_path: Path):
    """Import a generated ``x2paddle_code.py`` under a name unique to its path."""
    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()  # the generated code imports x2paddle's custom layers
    name = f"bridge_x2paddle_code_{abs(hash(str(code_path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, code_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class PaddleDygraphRunner:
    name = "paddle_dygraph"

    def __init__(self, paddle_dir: Path, inputs: dict[str, str], output_names: list[str],
                 device: str = "cpu", model_class: str = "ONNXModel", rank0_outputs: Collection[str] = ()):
        """As ``PaddleInferenceRunner``: ``inputs`` in the order ``forward`` takes them."""
        import paddle

        self._paddle = paddle
        paddle.set_device("gpu" if device == "gpu" else "cpu")
        module = load_generated_module(paddle_dir / "x2paddle_code.py")
        # X2Paddle names parameters explicitly (attr='x2paddle_fc_weight'); Paddle refuses a
        # name twice per namespace, so each converted model gets a namespace of its own.
        with paddle.utils.unique_name.guard():
            self.model = getattr(module, model_class)()
        self.model.set_dict(paddle.load(str(paddle_dir / "model.pdparams")))
        self.model.eval()
        self.inputs = inputs
        self.output_names = output_names
        self.rank0_outputs = frozenset(rank0_outputs)
        self.reshaped_outputs: set[str] = set()

    def run(self, feeds):
        paddle = self._paddle
        args = [paddle.to_tensor(_contiguous(feeds[n])) for n in self.inputs]
        with paddle.no_grad():
            outs = self.model(*args)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        outs = {n: t.numpy() for n, t in zip(self.output_names, outs)}
        return _rank0_as_declared(outs, self.rank0_outputs, self.reshaped_outputs)
