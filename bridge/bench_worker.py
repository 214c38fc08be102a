"""The runtime side of the inference benchmark: one runtime of one converted model in a process
of its own, driven over stdin/stdout by ``bridge.bench_inference``.

    python -m bridge.bench_worker serve WORK --runtime NAME --threads 2
    python -m bridge.bench_worker shared WORK --import-order paddle|torch --batch-sizes 1
                                  --runs 20 --warmup 3 --threads 2 --json ROWS.json

A process per runtime because runtimes sharing a process can slow each other down: torch ships
GNU OpenMP, Paddle Intel OpenMP. On this 2-core machine under load (load average 5, other jobs
running), SeqNet under Paddle Inference ran 3-8x slower in a process that had imported torch
first than in one that imported Paddle first; on the idle machine the two orders were within
noise. ``shared`` measures exactly that, all runtimes in one process in a chosen import order,
so every bench run says how it was this time (bench/README.md).

``serve`` protocol, one JSON object per line each way: the worker first answers
``{"ok": true, "threads": ..., "onednn": ..., "frameworks": [...]}`` (or ``"ok": false`` with
``"error"``), then for each request ``{"cmd": "feeds", "batch": B, "seed": S}`` (seeded random
inputs, the same in every worker), ``{"cmd": "check", "path": "out.npz"}`` (one call, outputs
saved), ``{"cmd": "run"}`` (one timed call) and ``{"cmd": "quit"}``; replies carry ``seconds``
measured around ``runner.run(feeds)`` in the worker.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from bridge.bench import RUNTIMES, first_line, thread_env

FRAMEWORKS = ("torch", "paddle", "onnxruntime")


def _model_file(inference_dir: Path) -> Path:
    model_file = inference_dir / "model.json"
    return model_file if model_file.exists() else inference_dir / "model.pdmodel"  # Paddle 2.x


def plain_inference_config(inference_dir: Path, threads: int, onednn: bool | None):
    """``paddle.inference.Config`` as a user writes it: CPU, ``threads`` math threads, and
    oneDNN as Paddle defaults it (``onednn=None``: on in Paddle 3.3.1) or off (``False``)."""
    from paddle import inference

    config = inference.Config(str(_model_file(inference_dir)), str(inference_dir / "model.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if onednn is False:
        config.disable_mkldnn()
    config.disable_glog_info()
    return config


def bridge_settings(paddle_dir: Path) -> dict | None:
    """The Paddle Inference settings ``bridge convert`` chose for this model, if it saves any."""
    try:
        from bridge.inference_settings import read_settings
    except ImportError:  # a bridge whose inference_config is fixed
        return None
    settings = read_settings(paddle_dir)
    return {k: settings.get(k) for k in ("chosen", "cpu", "delete_passes")}


def build_runtime(work: Path, name: str, threads: int):
    """``(runner, info)`` for runtime ``name`` of ``RUNTIMES`` on the work directory ``work``,
    importing only the framework it needs; ``info`` holds the thread count the runtime reports
    and, for Paddle Inference, whether its config has oneDNN on."""
    from bridge import runners as r
    from bridge.workdir import PADDLE_DIR, PATCHED_ONNX, TORCH_STATE, Manifest

    manifest = Manifest.load(work)
    convert = manifest.data["stages"]["convert"]
    input_names = [s["name"] for s in manifest.data["inputs"]]
    # the inputs the Paddle model takes, in the manifest's order (X2Paddle drops unread ones)
    inputs = {n: convert["paddle_inputs"][n] for n in input_names if n in convert["paddle_inputs"]}
    outputs = convert["paddle_outputs"]
    paddle_dir = work / PADDLE_DIR
    if name == "onnxruntime":
        runner = r.OrtRunner(work / PATCHED_ONNX, "cpu", threads)
        return runner, {"threads": runner.session.get_session_options().intra_op_num_threads}
    if name == "torch":
        import torch

        from bridge.spec import load_torch_source, parse_source

        torch.set_num_threads(threads)
        source = manifest.data["source"]
        if source.get("kind") != "torch":
            raise ValueError("the source is an ONNX file: no torch module")
        module, _ = load_torch_source(parse_source(source["resolved"]))
        module.load_state_dict(torch.load(work / TORCH_STATE, weights_only=True))
        return r.TorchRunner(module, input_names, manifest.data["output_names"]), {"threads": torch.get_num_threads()}
    import paddle
    from paddle.base import core

    paddle.set_device("cpu")
    core.set_num_threads(threads)  # Paddle's CPU math library (the dygraph kernels)
    if name == "paddle_dygraph":
        return (r.PaddleDygraphRunner(paddle_dir, inputs, outputs),
                {"threads": f"{threads} (paddle.base.core.set_num_threads)"})
    from paddle import inference

    inference_dir = paddle_dir / "inference_model"
    config = {
        "paddle_inference": lambda: r.inference_config(inference_dir, "cpu", threads),
        "paddle_inference_default": lambda: plain_inference_config(inference_dir, threads, onednn=None),
        "paddle_inference_no_onednn": lambda: plain_inference_config(inference_dir, threads, onednn=False),
    }[name]()
    runner = r.PaddleInferenceRunner.__new__(r.PaddleInferenceRunner)  # its run(), this config
    runner.predictor = inference.create_predictor(config)
    runner.inputs, runner.output_names = inputs, outputs
    runner.rank0_outputs, runner.reshaped_outputs = frozenset(), set()  # what __init__ sets besides
    return runner, {"threads": config.cpu_math_library_num_threads(), "onednn": config.mkldnn_enabled()}


def _input_specs(work: Path):
    from bridge.spec import InputSpec
    from bridge.workdir import Manifest

    return [InputSpec.from_json(s) for s in Manifest.load(work).data["inputs"]]


def frameworks_loaded() -> list[str]:
    return [f for f in FRAMEWORKS if f in sys.modules]


def serve(work: Path, name: str, threads: int) -> int:
    """Answer requests on stdin until ``quit``. The protocol owns the real stdout; whatever the
    runtimes print goes to stderr."""
    import numpy as np

    from bridge.stages.export import random_inputs

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**message) -> None:
        channel.write(json.dumps(message) + "\n")

    try:
        runner, info = build_runtime(work, name, threads)
        specs = _input_specs(work)
    except Exception as exc:  # noqa: BLE001 - the coordinator records it and goes on
        reply(ok=False, error=first_line(exc))
        return 0
    reply(ok=True, **info, settings=bridge_settings(work / "paddle"), frameworks=frameworks_loaded())
    feeds = None
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "quit":
            break
        if request["cmd"] == "feeds":
            feeds = random_inputs(specs, batch=request["batch"], seed=request["seed"])
            reply(ok=True)
            continue
        start = time.perf_counter()
        try:
            outputs = runner.run(feeds)
        except Exception as exc:  # noqa: BLE001 - a runtime failing is a table entry
            reply(ok=False, error=first_line(exc))
            continue
        seconds = time.perf_counter() - start
        if request["cmd"] == "check":  # keys prefixed: an output may be named like savez's own arguments
            np.savez(request["path"], **{f"output:{k}": v for k, v in outputs.items()})
        reply(ok=True, seconds=seconds)
    return 0


def shared(args) -> int:
    """All runtimes in this one process, frameworks imported in ``--import-order``: rows like
    ``bench_inference.measure_model``'s, to show what sharing a process costs."""
    from bridge import bench
    from bridge.stages.export import random_inputs

    order = ("torch", "paddle") if args.import_order == "torch" else ("paddle", "torch")
    for framework in order:
        importlib.import_module(framework)
    runners, infos, errors = {}, {}, {}
    for name in RUNTIMES:
        try:
            runners[name], infos[name] = build_runtime(args.work, name, args.threads)
        except Exception as exc:  # noqa: BLE001
            errors[name] = first_line(exc)
    rows = []
    for batch in args.batch_sizes:
        feeds = random_inputs(_input_specs(args.work), batch=batch, seed=batch)
        outputs = {n: r.run(feeds) for n, r in runners.items()}
        calls = {n: (lambda r=r: r.run(feeds)) for n, r in runners.items()}
        timings, loop_errors = bench.interleaved(calls, args.runs, args.warmup)
        rows.append(bench.inference_row(
            args.label, batch, timings, {**errors, **loop_errors}, outputs, infos, args.runs, args.warmup,
            setup=f"one process, {order[0]} imported first", settings=bridge_settings(args.work / "paddle")))
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("serve", help="one runtime, driven over stdin/stdout")
    one.add_argument("work", type=Path)
    one.add_argument("--runtime", choices=RUNTIMES, required=True)
    one.add_argument("--threads", type=int, required=True)
    many = sub.add_parser("shared", help="every runtime in this one process")
    many.add_argument("work", type=Path)
    many.add_argument("--label", required=True)
    many.add_argument("--import-order", choices=("paddle", "torch"), required=True)
    many.add_argument("--batch-sizes", required=True, type=lambda t: tuple(int(b) for b in t.split(",")))
    many.add_argument("--runs", type=int, required=True)
    many.add_argument("--warmup", type=int, required=True)
    many.add_argument("--threads", type=int, required=True)
    many.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.update(thread_env(args.threads))  # before any framework loads its thread pools
    if args.mode == "serve":
        return serve(args.work, args.runtime, args.threads)
    return shared(args)


if __name__ == "__main__":
    sys.exit(main())
