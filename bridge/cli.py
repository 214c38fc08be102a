"""The ``bridge`` command line. Decides exit codes; holds no stage logic.

Exit codes: 0 success; 1 validation mismatch (or, for ``doctor``, a blocking node); 2 bad input, a refused conversion or a runtime
error; 3 an internal error (a bug in bridge: rerun with --debug and report the traceback);
130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Callable

from bridge import __version__
from bridge.errors import BridgeError


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def run_guarded(action: Callable[[], int], debug: bool) -> int:
    """Run ``action``; turn exceptions into one stderr line and an exit code."""
    try:
        return action()
    except BridgeError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except SystemExit as exc:  # raised by code bridge drives (user modules, tools), not by argparse
        if debug:
            traceback.print_exc()
        _err(f"internal error: SystemExit({exc.code!r}) raised inside bridge's run (rerun with --debug)")
        return 3
    except Exception as exc:  # a bug in bridge or a tool it drives: one line unless --debug
        if debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _err(f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)")
        return 3


def batch_sizes_arg(text: str) -> tuple[int, ...]:
    """argparse type for ``--batch-sizes 1,2,8`` (also used by scripts/zoo.py)."""
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def _threads_arg(text: str) -> int:
    try:
        threads = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got {text!r}") from None
    if threads < 1:
        raise argparse.ArgumentTypeError(f"threads must be >= 1, got {text!r}")
    return threads


def _cmd_convert(args) -> int:
    from bridge import pipeline

    pipeline.convert(args.source, Path(args.out), args.input or [], opset=args.opset,
                     dynamic_texts=args.dynamic or [], weights=Path(args.weights) if args.weights else None,
                     force=args.force, threads=args.threads)
    return 0


def _cmd_validate(args) -> int:
    from bridge import pipeline
    from bridge.compare import parse_tolerance_override

    per_output = dict(parse_tolerance_override(t) for t in args.tol or [])
    report = pipeline.validate(
        Path(args.dir), device=args.device, batch_sizes=args.batch_sizes,
        atol=args.atol, rtol=args.rtol, threads=args.threads,
        inputs_file=Path(args.inputs) if args.inputs else None, layerwise=args.layerwise,
        per_output_tolerance=per_output, noise_runs=args.noise_runs,
    )
    print(report.render())
    print(f"wrote {Path(args.dir) / 'validation.json'} and {Path(args.dir) / 'report.html'}")
    # The table is on stdout; a failing run also says why in one stderr line, like every error.
    if report.errors:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        _err(f"{args.dir}: runner error: {report.errors[0].splitlines()[0]}{more}")
        return 2
    if not report.passed:
        _err(f"{args.dir}: validation {report.summary()}")
        return 1
    return 0


def _cmd_stage(args) -> int:
    from bridge import pipeline
    from bridge.spec import parse_dynamic_specs, parse_input_specs, parse_source
    from bridge.workdir import Manifest, work_lock

    work = Path(args.dir)
    if args.stage != "export":
        Manifest.load(work)  # a clear error for a folder that is not a work directory, before locking
    with work_lock(work):
        if args.stage == "export":
            line = pipeline.step_export(work, parse_source(args.source), parse_input_specs(args.input or []),
                                        args.opset, parse_dynamic_specs(args.dynamic or []),
                                        Path(args.weights) if args.weights else None)
        else:
            line = {"simplify": pipeline.step_simplify, "patch": pipeline.step_patch,
                    "convert": pipeline.step_convert}[args.stage](work)
    print(line)
    return 0


def _cmd_doctor(args) -> int:
    from bridge.doctor import diagnose_source

    report = diagnose_source(args.source, args.input or [])
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 1 if report.blocking else 0


def _cmd_train_check(args) -> int:
    from bridge.train_check import TrainConfig, run_train_check

    config = TrainConfig.from_toml(Path(args.config)) if args.config else TrainConfig()
    if args.steps is not None:
        config.steps = args.steps
    report = run_train_check(Path(args.dir), config)
    print(report.render())
    return 0 if report.passed else 1


def _cmd_conformance(args) -> int:
    from bridge.conformance import main as conformance_main

    return conformance_main(args.args)


def _cmd_load_weights(args) -> int:
    from bridge.load_weights import load_weights

    print(load_weights(Path(args.dir), Path(args.file)))
    return 0


def _cmd_reduce(args) -> int:
    from bridge import reduce as reducer

    if args.check:
        check, recorded = reducer.check_repro(Path(args.dir), atol=args.atol, rtol=args.rtol)
        for d in check.diffs:
            size = "-" if d.max_abs_diff is None else f"{d.max_abs_diff:.2e}"
            shape = "x".join(map(str, d.shape)) + ("" if d.shape == d.ref_shape else f" (ONNX Runtime {'x'.join(map(str, d.ref_shape))})")
            print(f"  {d.output}: {shape} max_abs {size}  {'ok' if d.passed else 'FAIL: ' + str(d.problem)}")
        if check.failure is None:
            print(f"passes: {args.dir} converts and matches ONNX Runtime now")
            return 0
        same = "" if recorded is None else (" (as recorded)" if recorded.same_as(check.failure)
                                             else f" (recorded: {recorded.kind}: {recorded.detail})")
        print(f"FAILS: {check.failure.kind}: {check.failure.detail}{same}")
        return 1
    result = reducer.reduce(Path(args.dir), out=Path(args.out) if args.out else None, max_trials=args.max_trials,
                            batch=args.batch, atol=args.atol, rtol=args.rtol)
    if result.failure is None:
        print(f"nothing to reduce: {result.source} converts and matches ONNX Runtime")
        return 1
    seconds = sum(t.seconds for t in result.trials)
    print(f"failure: {result.failure.kind}: {result.failure.detail}")
    print(f"kept {len(result.kept)} of {result.total_nodes} nodes after {len(result.trials)} trials ({seconds:.0f}s)"
          + (f"; stopped at --max-trials {args.max_trials}, may not be minimal" if result.exhausted else "") + ":")
    for name in result.kept_names:
        print(f"  {name}")
    print(f"wrote {result.repro}/ (model.onnx, inputs.npz, failure.json, command.txt)")
    print(f"shows the failure: bridge reduce --check {result.repro}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="PyTorch -> ONNX -> PaddlePaddle, proven numerically."
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    conv = sub.add_parser("convert", help="export, simplify, patch and convert a model")
    conv.add_argument("source", help="path/file.py:Name, package.module:Name, or model.onnx")
    conv.add_argument("--out", required=True, help="work directory to write (replaced atomically)")
    conv.add_argument("--input", action="append", metavar="NAME:SHAPE[:DTYPE]",
                      help="model input, e.g. x:2x12x5000:float32 (repeatable)")
    conv.add_argument("--force", action="store_true",
                      help="rerun every stage (default: reuse stages whose inputs and tools are unchanged)")
    conv.add_argument("--weights", metavar="FILE",
                      help="state_dict to load before export (.pt/.pth via weights_only=True, or .safetensors)")
    conv.add_argument("--dynamic", action="append", metavar="NAME:AXIS",
                      help="another dynamic axis besides batch, e.g. input_ids:1 (repeatable)")
    conv.add_argument("--opset", type=int, default=None,
                      help="export at this opset only (X2Paddle maps 7-15; default: try 13, then 15)")
    conv.add_argument("--threads", type=_threads_arg, default=None,
                      help="CPU threads Paddle Inference will serve with: the inference settings are checked "
                           "and timed at this count and saved with it (default: Paddle's)")
    common(conv)
    conv.set_defaults(func=_cmd_convert)

    doc = sub.add_parser("doctor", help="before converting: which nodes X2Paddle will refuse, and what fixes them")
    doc.add_argument("source", help="path/file.py:Name, package.module:Name, or model.onnx")
    doc.add_argument("--input", action="append", metavar="NAME:SHAPE[:DTYPE]")
    doc.add_argument("--json", action="store_true", help="print the findings as JSON")
    common(doc)
    doc.set_defaults(func=_cmd_doctor)

    tc = sub.add_parser("train-check", help="train torch and the converted Paddle model side by side, compare per step")
    tc.add_argument("dir", help="work directory written by `bridge convert` (a torch source)")
    tc.add_argument("--config", metavar="TOML", help="optimizer, schedule, loss, steps... (default: the seed's setup)")
    tc.add_argument("--steps", type=int, default=None, help="override the config's step count")
    common(tc)
    tc.set_defaults(func=_cmd_train_check)

    conf = sub.add_parser("conformance", add_help=False,
                          help="ONNX's backend test cases through bridge (`bridge conformance --help`)")
    conf.add_argument("args", nargs=argparse.REMAINDER)
    conf.set_defaults(func=_cmd_conformance, debug=False)

    lw = sub.add_parser("load-weights", help="load a torch checkpoint into a converted model (weights map)")
    lw.add_argument("dir", help="work directory written by `bridge convert`")
    lw.add_argument("file", help="torch state_dict (.pt/.pth, weights_only) or .safetensors")
    common(lw)
    lw.set_defaults(func=_cmd_load_weights)

    stage = sub.add_parser("stage", help="run one stage on a work directory (what scripts/0N_*.py call)")
    stage_sub = stage.add_subparsers(dest="stage", required=True)
    exp = stage_sub.add_parser("export", help="torch module or ONNX file -> DIR/model.onnx")
    exp.add_argument("source")
    exp.add_argument("--out", dest="dir", required=True)
    exp.add_argument("--input", action="append", metavar="NAME:SHAPE[:DTYPE]")
    exp.add_argument("--dynamic", action="append", metavar="NAME:AXIS")
    exp.add_argument("--weights", metavar="FILE")
    exp.add_argument("--opset", type=int, default=None)
    common(exp)
    for name, text in (("simplify", "DIR/model.onnx -> DIR/model.simplified.onnx (onnxsim)"),
                       ("patch", "DIR/model.simplified.onnx -> DIR/model.patched.onnx"),
                       ("convert", "DIR/model.patched.onnx -> DIR/paddle/ (X2Paddle)")):
        p = stage_sub.add_parser(name, help=text)
        p.add_argument("dir")
        common(p)
    stage.set_defaults(func=_cmd_stage)

    val = sub.add_parser("validate", help="compare torch, ONNX Runtime and Paddle on the same inputs")
    val.add_argument("dir", help="work directory written by `bridge convert`")
    val.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    val.add_argument("--batch-sizes", type=batch_sizes_arg, default=(1, 2, 8), help="default 1,2,8")
    val.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-5)")
    val.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 1e-4)")
    val.add_argument("--tol", action="append", metavar="OUTPUT=ATOL,RTOL",
                     help="this output's own tolerances, e.g. logits=1e-4,1e-3 (repeatable)")
    val.add_argument("--noise-runs", type=int, default=2,
                     help="runs of each reference on the same inputs for the noise floor (default 2; 1: off)")
    val.add_argument("--threads", type=int, default=None, help="CPU threads for ONNX Runtime and Paddle Inference")
    val.add_argument("--inputs", metavar="FILE.npz", default=None,
                     help="feed these arrays (one per model input, any batch) instead of seeded random inputs")
    val.add_argument("--layerwise", action="store_true",
                     help="also compare every intermediate tensor (ONNX Runtime vs Paddle) and name the first "
                          "node whose own Paddle code diverges")
    common(val)
    val.set_defaults(func=_cmd_validate)

    red = sub.add_parser("reduce", help="shrink a failing model to a small subgraph that fails the same way")
    red.add_argument("dir", help="work directory (reduces model.patched.onnx) or ONNX file; with --check, a repro folder")
    red.add_argument("--check", action="store_true",
                     help="run a repro folder: X2Paddle, then Paddle Inference vs ONNX Runtime on its inputs.npz (exit 1: fails)")
    red.add_argument("--out", metavar="REPRO", help="repro folder to write (default DIR/repro)")
    red.add_argument("--max-trials", type=int, default=64, help="conversions to try at most (default 64)")
    red.add_argument("--batch", type=int, default=None, help="batch of the seeded inputs (default 1, as validate's first)")
    red.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-5)")
    red.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 1e-4)")
    common(red)
    red.set_defaults(func=_cmd_reduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["conformance"]:  # its own parser and --help
        from bridge.conformance import main as conformance_main

        return conformance_main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: args.func(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
