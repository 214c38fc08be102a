"""Where a converted model's time goes: per-op-type profiles of Paddle Inference (bridge's
config) and ONNX Runtime at batch 1, and the table ``bench/README.md`` shows from them.

    python -m bridge.bench_profile WORK --runtime paddle_inference|onnxruntime --threads 2
                                   --runs 20 --warmup 3 --json PROFILE.json

Each runtime is profiled in a process of its own (as ``bridge.bench_worker`` times them):

- Paddle Inference: the predictor ``bridge.runners.inference_config`` builds from the model's
  saved ``paddle/inference_config.json`` (what the bench's "bridge config" column times), run
  under ``paddle.profiler.Profiler`` (CPU target). Its trace has one ``Operator`` event per
  kernel the new executor ran, named after the op *after* Paddle Inference's passes
  (``onednn_op.fused_conv2d``, ``pd_op.add``): real per-kernel wall times, infer-meta included.
- ONNX Runtime: ``SessionOptions.enable_profiling``; one ``Node`` event per kernel
  (``<node>_kernel_time``, ``args.op_name``), after ORT's own fusions (``FusedConv``...).

Per op type: kernel calls and seconds per model call. ``wall_s`` is the mean time of
``run(feeds)`` while profiled (input copy and output fetch included); what the op events do
not cover is the executor between kernels plus feed/fetch (``outside_s``). ``unprofiled_s``
is the median of the same calls before the profiler started: the profiler's own cost is the
difference, and the table scales every op type's time by unprofiled / profiled
(``RuntimeProfile.scaled``). ``where_time_goes`` turns two such profiles into the rows of the
README table, with a "why" computed from the numbers. Neither framework is imported at import
time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUNTIMES = ("paddle_inference", "onnxruntime")
TOP = 5
PADDLE_METHOD = ("paddle.profiler.Profiler (CPU target) around the predictor's run(): one Operator event per "
                 "kernel the executor ran, after Paddle Inference's passes")
ORT_METHOD = "onnxruntime SessionOptions.enable_profiling: one Node event per kernel, after ORT's fusions"

# Paddle op (prefix and ``fused_`` dropped) -> the ONNX Runtime op types doing the same work.
# Where a name is missing, a case- and underscore-blind match of the names is tried (Tanh,
# Concat...). Constants (full, full_int_array) have no entry: ORT holds them as initializers.
SAME_KIND: dict[str, tuple[str, ...]] = {
    "conv2d": ("Conv", "FusedConv"), "depthwise_conv2d": ("Conv", "FusedConv"),
    "conv2d_transpose": ("ConvTranspose",), "conv3d": ("Conv", "FusedConv"),
    "matmul": ("MatMul", "Gemm", "FusedMatMul", "FusedGemm"), "fc": ("MatMul", "Gemm", "FusedMatMul", "FusedGemm"),
    "add": ("Add",), "subtract": ("Sub",), "multiply": ("Mul",), "divide": ("Div",),
    "elementwise_pow": ("Pow",), "pow": ("Pow",), "sqrt": ("Sqrt",), "rsqrt": ("Sqrt",),
    "batch_norm": ("BatchNormalization",),
    "layer_norm": ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"),
    "pool2d": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"),
    "embedding": ("Gather",), "gather": ("Gather", "GatherElements"), "index_select": ("Gather",),
    "bilinear_interp": ("Resize",), "nearest_interp": ("Resize",),
    "gelu": ("Gelu", "BiasGelu", "FastGelu"), "hardswish": ("HardSwish",), "hardsigmoid": ("HardSigmoid",),
    "mean": ("ReduceMean",), "sum": ("ReduceSum",), "max": ("ReduceMax",),
    "lstm": ("LSTM",), "rnn": ("LSTM", "GRU", "RNN"), "gru": ("GRU",),
    "softmax": ("Softmax",), "split": ("Split",), "split_with_num": ("Split",),
}
# What an op type with no ONNX Runtime counterpart is (the why column says so).
NO_COUNTERPART = {
    "onednn_to_paddle_layout": "oneDNN → Paddle layout conversion, which ORT does not need",
    "full": "a constant made at run time (ORT holds constants as initializers)",
    "full_int_array": "a shape constant made at run time (ORT holds constants as initializers)",
    "shape": "a shape read at run time", "shape64": "a shape read at run time",
}


@dataclass
class OpTime:
    """One op type's kernels: calls and seconds per model call."""
    op_type: str
    calls: float
    seconds: float


@dataclass
class RuntimeProfile:
    runtime: str
    method: str
    runs: int
    wall_s: float  # mean run(feeds) while profiled
    unprofiled_s: float  # median run(feeds) before the profiler started
    ops: list[OpTime] = field(default_factory=list)  # by seconds, largest first

    @property
    def op_s(self) -> float:
        return sum(o.seconds for o in self.ops)

    @property
    def kernels(self) -> float:
        return sum(o.calls for o in self.ops)

    def scaled(self) -> list[OpTime]:
        """The op types' times × unprofiled / profiled run time. A profiler costs each kernel
        event about the same (ORT's: several µs, more than a small kernel's own time), so raw
        times overstate small kernels most; scaled, they add up to at most the unprofiled run
        (``op_s <= wall_s``) and keep their shares of it."""
        factor = self.unprofiled_s / self.wall_s if self.wall_s > 0 else 0.0
        return [OpTime(o.op_type, o.calls, o.seconds * factor) for o in self.ops]

    def to_json(self) -> dict:
        return {**asdict(self), "op_s": self.op_s, "outside_s": self.wall_s - self.op_s, "kernels": self.kernels}

    @classmethod
    def from_json(cls, data: dict) -> "RuntimeProfile":
        ops = [OpTime(**o) for o in data["ops"]]
        return cls(data["runtime"], data["method"], data["runs"], data["wall_s"], data["unprofiled_s"], ops)


def _by_type(durations: list[tuple[str, float]], runs: int) -> list[OpTime]:
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for op_type, seconds in durations:
        total[op_type] += seconds
        calls[op_type] += 1
    ops = [OpTime(t, calls[t] / runs, total[t] / runs) for t in total]
    return sorted(ops, key=lambda o: -o.seconds)


def paddle_trace_ops(trace: dict, runs: int) -> list[OpTime]:
    """Per op type from a ``paddle.profiler`` chrome trace: its ``Operator`` events, one per
    kernel run (the infer-meta and launch steps inside a kernel are events of other kinds).
    Not checked for nesting by time: ``ts`` is whole microseconds and ``dur`` is not, so
    back-to-back kernels seem to overlap by a fraction of a microsecond."""
    durations = [(re.sub(r"\[[^\]]*\]$", "", e["name"]), e["dur"] / 1e6)  # "pd_op.add[12.3 us]", µs
                 for e in trace.get("traceEvents", []) if e.get("cat") == "Operator" and e.get("ph") == "X"]
    return _by_type(durations, runs)


def ort_trace_ops(events: list[dict], runs: int) -> list[OpTime]:
    """Per op type from an ORT profile, counting only the kernels of the last ``runs``
    ``model_run`` events (warm-up runs are in the same file)."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[-runs:]
    if not model_runs:
        return []
    start = model_runs[0]["ts"]
    durations = [(e["args"]["op_name"], e["dur"] / 1e6) for e in events
                 if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= start]
    return _by_type(durations, len(model_runs))


# --- the child: one runtime profiled ------------------------------------------------------

def _feeds(work: Path, batch: int) -> dict:
    from bridge.bench_worker import _input_specs
    from bridge.stages.export import random_inputs

    return random_inputs(_input_specs(work), batch=batch, seed=batch)


def _timed(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def profile_paddle(work: Path, threads: int, runs: int, warmup: int, batch: int = 1) -> RuntimeProfile:
    import paddle.profiler as profiler

    from bridge.bench_worker import build_runtime

    runner, _ = build_runtime(work, "paddle_inference", threads)  # bridge's config, as the bench times it
    feeds = _feeds(work, batch)
    _timed(lambda: runner.run(feeds), warmup)
    unprofiled = statistics.median(_timed(lambda: runner.run(feeds), runs))
    # on_trace_ready: by default the profiler also writes ./profiler_log/*.json at stop
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda prof: None)
    prof.start()
    wall = 0.0
    for _ in range(runs):
        wall += _timed(lambda: runner.run(feeds), 1)[0]
        prof.step()
    prof.stop()
    with tempfile.TemporaryDirectory(prefix="bridge-profile-") as scratch:
        path = Path(scratch) / "trace.json"
        prof.export(str(path), format="json")
        trace = json.loads(path.read_text())
    return RuntimeProfile("paddle_inference", PADDLE_METHOD, runs, wall / runs, unprofiled, paddle_trace_ops(trace, runs))


def profile_ort(work: Path, threads: int, runs: int, warmup: int, batch: int = 1) -> RuntimeProfile:
    import onnxruntime as ort

    from bridge.workdir import PATCHED_ONNX

    def session(profiled: bool, prefix: str = ""):
        options = ort.SessionOptions()  # as bridge.runners.OrtRunner builds it, plus profiling
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        if profiled:
            options.enable_profiling, options.profile_file_prefix = True, prefix
        return ort.InferenceSession(str(work / PATCHED_ONNX), options, providers=["CPUExecutionProvider"])

    feeds = _feeds(work, batch)
    plain = session(False)
    feeds = {k: v for k, v in feeds.items() if k in {i.name for i in plain.get_inputs()}}
    _timed(lambda: plain.run(None, feeds), warmup)
    unprofiled = statistics.median(_timed(lambda: plain.run(None, feeds), runs))
    del plain
    with tempfile.TemporaryDirectory(prefix="bridge-profile-") as scratch:
        profiled = session(True, str(Path(scratch) / "ort"))
        _timed(lambda: profiled.run(None, feeds), warmup)
        wall = sum(_timed(lambda: profiled.run(None, feeds), runs))
        events = json.loads(Path(profiled.end_profiling()).read_text())
    return RuntimeProfile("onnxruntime", ORT_METHOD, runs, wall / runs, unprofiled, ort_trace_ops(events, runs))


# --- the coordinator: both runtimes of one model ------------------------------------------

def _saved_settings(work: Path) -> dict | None:
    """What ``bridge convert`` chose for Paddle Inference (``paddle/inference_config.json``)."""
    try:
        saved = json.loads((work / "paddle" / "inference_config.json").read_text())
    except (OSError, ValueError):
        return None
    return {"chosen": saved.get("chosen"), "delete_passes": saved.get("delete_passes"),
            "math_threads": (saved.get("cpu") or {}).get("math_threads")}


def profile_model(work: Path, label: str, threads: int, runs: int, warmup: int, log: Path) -> dict:
    """Both runtimes' profiles of ``work`` at batch 1, each in a child process; a runtime that
    fails is an ``errors`` entry, not an exception."""
    from bridge.bench import run_child, thread_env

    result: dict = {"model": label, "batch": 1, "threads": threads, "profiles": {}, "errors": {},
                    "bridge_settings": _saved_settings(work)}
    with tempfile.TemporaryDirectory(prefix="bridge-profile-") as scratch:
        for runtime in RUNTIMES:
            path = Path(scratch) / f"{runtime}.json"
            child = run_child([sys.executable, "-m", "bridge.bench_profile", str(work), "--runtime", runtime,
                               "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup),
                               "--json", str(path)], log=log, cwd=Path.cwd(), env=thread_env(threads))
            if child.ok and path.exists():
                result["profiles"][runtime] = json.loads(path.read_text())
            else:
                result["errors"][runtime] = child.first_error_line()
    return result


# --- the table ----------------------------------------------------------------------------

def paddle_kind(op_type: str) -> tuple[str, str | None]:
    """``("conv2d", "oneDNN")`` for ``onednn_op.fused_conv2d``: the op's kind, for matching with
    ONNX op types, and its kernel library when not Paddle's own (phi) kernels."""
    prefix, _, name = op_type.rpartition(".")
    name = name.removeprefix("fused_").rstrip("_")  # batch_norm_: the in-place variant
    return name, ("oneDNN" if prefix == "onednn_op" else None)


def kernel_label(op_type: str) -> str:
    """``conv2d (oneDNN)`` for ``onednn_op.fused_conv2d``, ``add`` for ``pd_op.add``."""
    kind, library = paddle_kind(op_type)
    return f"{kind} ({library})" if library else kind


def _plain(name: str) -> str:
    return name.replace("_", "").lower()


def ort_kinds(op_type: str, ort_types: list[str]) -> list[str]:
    """The ORT op types among ``ort_types`` doing the work of Paddle op ``op_type``."""
    kind, _ = paddle_kind(op_type)
    wanted = SAME_KIND.get(kind)
    if wanted is None:
        return [t for t in ort_types if _plain(t) == _plain(kind)]
    return [t for t in ort_types if t in wanted]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _us(seconds: float) -> str:
    if seconds >= 1e-3:
        return _ms(seconds)
    return f"{seconds * 1e6:.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.2g} µs"


def _calls(n: float) -> str:
    return f"{n:.0f}" if abs(n - round(n)) < 0.05 else f"{n:.1f}"


def cause(op: OpTime, ort_ops: list[OpTime], kinds: list[str], per_op_s: float | None) -> str:
    """A few words on why Paddle spends ``op.seconds`` on this op type, from the numbers alone:
    against ORT's kernels of the same kinds, either Paddle runs more kernels (X2Paddle's ops,
    unfused) or each takes longer. A Paddle kernel no longer than twice the per-op cost
    (``per_op_s``, the bench's Sigmoid chains, when measured) is dispatch: its time is the
    executor's, not arithmetic."""
    average = op.seconds / op.calls if op.calls else 0.0
    dispatch = per_op_s is not None and average <= 2 * per_op_s
    ort_s, ort_calls = sum(o.seconds for o in ort_ops), sum(o.calls for o in ort_ops)
    if not kinds or ort_s <= 0 or ort_calls <= 0:
        kind = paddle_kind(op.op_type)[0]
        return NO_COUNTERPART.get(kind, "no ORT kernel of this kind (fused into another, or folded away)") + \
            (f"; dispatch: each ≤ 2× the {_us(per_op_s)} per-op cost" if dispatch else "")
    if op.seconds <= ort_s:
        return "not the gap"
    more, longer = op.calls / ort_calls, (op.seconds / op.calls) / (ort_s / ort_calls)
    if more >= longer:
        return f"{more:.1f}× the kernels (X2Paddle's ops unfused)"
    if dispatch:
        return f"dispatch: each kernel ≤ 2× the {_us(per_op_s)} per-op cost"
    return f"each kernel {longer:.1f}× slower"


def why(op: OpTime, ort_ops: list[OpTime], kinds: list[str], per_op_s: float | None) -> str:
    """One line: the op type's time, kernels and time per kernel against ORT's kernels of the
    same kinds, their ratio, and ``cause``."""
    label = kernel_label(op.op_type)
    average = op.seconds / op.calls if op.calls else 0.0
    ort_s, ort_calls = sum(o.seconds for o in ort_ops), sum(o.calls for o in ort_ops)
    if not kinds or ort_s <= 0 or ort_calls <= 0:
        return f"{label}: {_calls(op.calls)} × {_us(average)}; {cause(op, ort_ops, kinds, per_op_s)}"
    return (f"{label} {_ms(op.seconds)} ({_calls(op.calls)} × {_us(average)}) vs ORT {'+'.join(kinds)} "
            f"{_ms(ort_s)} ({_calls(ort_calls)} × {_us(ort_s / ort_calls)}): {op.seconds / ort_s:.1f}×; "
            f"{cause(op, ort_ops, kinds, per_op_s)}")


def where_time_goes(profiled: dict, per_op_s: float | None = None, top: int = TOP) -> dict:
    """The README rows of one model: its totals, and its ``top`` Paddle op types by time with the
    ORT time of the same kinds and a why, all times scaled (``RuntimeProfile.scaled``);
    ``{"model", "error"}`` when Paddle's profile is missing."""
    profiles = profiled.get("profiles", {})
    if "paddle_inference" not in profiles:
        return {"model": profiled["model"], "error": profiled.get("errors", {}).get("paddle_inference", "not profiled")}
    paddle = RuntimeProfile.from_json(profiles["paddle_inference"])
    ort = RuntimeProfile.from_json(profiles["onnxruntime"]) if "onnxruntime" in profiles else None
    ort_ops = ort.scaled() if ort else []
    rows = []
    for op in paddle.scaled()[:top]:
        kinds = ort_kinds(op.op_type, [o.op_type for o in ort_ops])
        same = [o for o in ort_ops if o.op_type in kinds]
        rows.append({"op_type": op.op_type, "calls": op.calls, "seconds": op.seconds,
                     "share": op.seconds / paddle.unprofiled_s if paddle.unprofiled_s else None,
                     "ort_kinds": kinds, "ort_calls": sum(o.calls for o in same),
                     "ort_seconds": sum(o.seconds for o in same) if same else None,
                     "cause": cause(op, same, kinds, per_op_s), "why": why(op, same, kinds, per_op_s)})
    # Time the per-op cost explains: kernels no longer than twice it, and the executor between kernels.
    small = None
    if per_op_s is not None and paddle.unprofiled_s > 0:
        scaled = paddle.scaled()
        small = sum(o.seconds for o in scaled if o.calls and o.seconds / o.calls <= 2 * per_op_s)
        small += paddle.unprofiled_s - sum(o.seconds for o in scaled)

    def totals(profile: RuntimeProfile | None) -> dict | None:
        if profile is None:
            return None
        in_kernels = sum(o.seconds for o in profile.scaled())
        return {"seconds": profile.unprofiled_s, "profiled_seconds": profile.wall_s, "kernels": profile.kernels,
                "in_kernels_seconds": in_kernels, "outside_seconds": profile.unprofiled_s - in_kernels}

    return {"model": profiled["model"], "paddle": totals(paddle), "onnxruntime": totals(ort), "rows": rows,
            "dispatch_seconds": small, "ort_error": profiled.get("errors", {}).get("onnxruntime")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--runtime", choices=RUNTIMES, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    from bridge.bench import thread_env

    os.environ.update(thread_env(args.threads))  # before the framework loads its thread pools
    profile = (profile_paddle if args.runtime == "paddle_inference" else profile_ort)(
        args.work, args.threads, args.runs, args.warmup)
    args.json.write_text(json.dumps(profile.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
