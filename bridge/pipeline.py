"""Chains the stages over one work directory; holds no stage logic.

Each ``step_*`` reads its input artifact from the work directory, runs one stage, writes its
artifact and records it in the manifest, and returns the one line the terminal shows.
``convert`` runs the first four steps in a temporary folder and moves it into place only
when all succeeded.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from bridge import __version__, inference_settings, weights_map
from bridge.errors import BridgeError
from bridge.onnx_io import DATA_SUFFIX
from bridge.spec import (
    InputSpec, Source, load_torch_source, parse_dynamic_specs, parse_input_specs, parse_source,
)
from bridge.stages import convert as convert_stage
from bridge.stages import export as export_stage
from bridge.stages import patch as patch_stage
from bridge.stages import simplify as simplify_stage
from bridge.stages import validate as validate_stage
from bridge.workdir import (
    EXPORTED_ONNX, LOGS_DIR, PADDLE_DIR, PATCHED_ONNX, SIMPLIFIED_ONNX, TORCH_STATE,
    VALIDATION_JSON, VALIDATION_TXT, Manifest, atomic_path, capture_fds, check_out_dir,
    require_artifact, sha256_file, sha256_tree, work_lock, write_json_atomic, write_text_atomic,
)

DEFAULT_BATCH_SIZES = (1, 2, 8)
TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim", "x2paddle", "paddlepaddle", "numpy")


# The modules whose code decides what a conversion writes; their sources key the stage cache
# (with the tool versions). Keep in sync when a stage starts using another module.
CONVERSION_MODULES = (
    "bridge", "bridge.errors", "bridge.spec", "bridge.onnx_io", "bridge.opset_upgrade", "bridge.workdir",
    "bridge.pipeline", "bridge.stages.export", "bridge.stages.export_strategies", "bridge.stages.simplify",
    "bridge.stages.patch", "bridge.stages.convert", "bridge.weights", "bridge.weights_map",
    "bridge.inference_settings", "bridge.runners", "bridge.compare", "bridge.train_example",
    "bridge.training", "bridge.training_helpers", "bridge.patches",
)


def _bridge_code_hash() -> str:
    """sha256 over the sources of ``CONVERSION_MODULES`` and every patch: the "tool version"
    of bridge itself for the stage cache (bench, conformance, doctor... do not invalidate it)."""
    import hashlib
    import importlib.util

    paths = [Path(importlib.util.find_spec(name).origin) for name in CONVERSION_MODULES]
    paths += sorted(paths[-1].parent.glob("*.py"))  # the patches package: every patch file
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "bridge": __version__, "bridge_code_sha256": _bridge_code_hash(), "python": platform.python_version(),
    }
    for dist in TOOLS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _source_record(source: Source) -> dict:
    record = {"text": source.text, "kind": source.kind}
    if source.path is not None:
        record["resolved"] = f"{source.path.resolve()}:{source.attr}" if source.attr else str(source.path.resolve())
    else:
        record["resolved"] = source.text
    return record


def step_export(
    work: Path, source: Source, input_specs: list[InputSpec], opset: int | None = None,
    dynamic_axes: dict[str, list[int]] | None = None, weights: Path | None = None,
    strategy: str | None = None,
) -> str:
    work.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(work)
    manifest.data.update({"bridge_version": __version__, "source": _source_record(source), "tools": tool_versions()})
    start = time.perf_counter()
    if source.kind == "onnx":
        if weights is not None:
            raise BridgeError(f"--weights {weights}: only for torch sources ({source.text} is an ONNX file)")
        result = export_stage.copy_onnx(source.path, work / EXPORTED_ONNX, input_specs)
        outputs = _with_data(work, [EXPORTED_ONNX])
    else:
        import torch

        module, example = load_torch_source(source)
        if weights is not None:
            from bridge.weights import load_weights

            load_weights(module, weights)
            manifest.data["weights"] = {"file": str(weights.resolve()), "sha256": sha256_file(weights)}
        result = export_stage.export_torch(
            module, example, input_specs, work / EXPORTED_ONNX, opset=opset, dynamic_axes=dynamic_axes,
            source_text=source.text, log_path=work / LOGS_DIR / "export.log", strategy=strategy,
        )
        with atomic_path(work / TORCH_STATE) as tmp:
            torch.save(module.state_dict(), tmp)
        outputs = [EXPORTED_ONNX, TORCH_STATE]
    seconds = time.perf_counter() - start
    manifest.data["inputs"] = [s.to_json() for s in result.inputs]
    manifest.data["output_names"] = result.output_names
    manifest.data["dynamic_batch"] = result.dynamic_batch
    manifest.data["dynamic_axes"] = dynamic_axes or {}
    manifest.data["stages"] = {}
    manifest.record_stage("export", seconds=seconds, inputs=[], outputs=outputs, **result.to_json())
    manifest.save()
    shapes = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}" for s in result.inputs)
    tried = f" after {len(result.attempts) - 1} failed" if len(result.attempts) > 1 else ""
    return f"export: {seconds:.1f}s {result.exporter}{tried} ({shapes} -> {', '.join(result.output_names)})"


def _require_stage(manifest: Manifest, stage: str) -> None:
    if stage not in manifest.data.get("stages", {}):
        raise BridgeError(f"{manifest.work}: the {stage} stage has not run (or was rerun upstream); run it first")


def step_simplify(work: Path) -> str:
    manifest = Manifest.load(work)
    _require_stage(manifest, "export")
    src = require_artifact(work, EXPORTED_ONNX, "export")
    start = time.perf_counter()
    torch_keys = frozenset(manifest.data["stages"]["export"].get("torch_keys", []))
    result = simplify_stage.run(src, work / SIMPLIFIED_ONNX, torch_keys)
    seconds = time.perf_counter() - start
    manifest.record_stage(
        "simplify", seconds=seconds, inputs=_with_data(work, [EXPORTED_ONNX]),
        outputs=_with_data(work, [SIMPLIFIED_ONNX]), simplified=result.simplified, error=result.error,
        notes=result.notes,
        nodes_before=result.nodes_before, nodes_after=result.nodes_after,
    )
    manifest.save()
    if not result.simplified:
        return f"simplify: {seconds:.1f}s FAILED, kept the unsimplified model ({result.error})"
    return f"simplify: {seconds:.1f}s {result.nodes_before} -> {result.nodes_after} nodes"


def step_patch(work: Path) -> str:
    manifest = Manifest.load(work)
    _require_stage(manifest, "simplify")
    src = require_artifact(work, SIMPLIFIED_ONNX, "simplify")
    start = time.perf_counter()
    result = patch_stage.run(src, work / PATCHED_ONNX, label=manifest.data["source"]["text"])
    seconds = time.perf_counter() - start
    report = result.report
    manifest.record_stage(
        "patch", seconds=seconds, inputs=_with_data(work, [SIMPLIFIED_ONNX]), outputs=_with_data(work, [PATCHED_ONNX]),
        fired=[vars(f) for f in report.fired], declined=[vars(d) for d in report.declined],
        op_diff=report.op_diff(), op_diff_by_patch=report.op_diff_by_patch, checker="full_check passed",
    )
    manifest.save()
    return f"patch: {seconds:.1f}s {result.summary()}; onnx.checker full_check ok"


def _torch_module(work: Path, manifest: Manifest):
    """The source's torch module with the exported weights, or None for an ONNX source."""
    import torch

    source = manifest.data.get("source", {})
    if source.get("kind") != "torch":
        return None
    module, _ = load_torch_source(parse_source(source["resolved"]))
    module.load_state_dict(torch.load(work / TORCH_STATE, weights_only=True))
    return module


def step_convert(work: Path) -> str:
    manifest = Manifest.load(work)
    _require_stage(manifest, "patch")
    src = require_artifact(work, PATCHED_ONNX, "patch")
    log = work / LOGS_DIR / "convert.log"
    start = time.perf_counter()
    result = convert_stage.run(src, work / PADDLE_DIR, log)
    specs = [InputSpec.from_json(s) for s in manifest.data["inputs"]]
    if manifest.data.get("dynamic_batch", True):
        feeds = [export_stage.random_inputs(specs, batch=b, seed=100 + b) for b in (1, 2)]
    else:  # fixed shapes: the example shapes only
        feeds = [export_stage.random_inputs(specs, seed=101)]
    with capture_fds(log):  # checked and timed at the serving thread count when given (--threads)
        settings = inference_settings.choose(work / PADDLE_DIR, feeds, result.inputs, result.outputs,
                                             threads=manifest.data.get("inference_threads"))
    module = _torch_module(work, manifest)
    wmap = None
    if module is not None:
        wmap = weights_map.build(module, manifest.data["stages"]["export"], specs,
                                 manifest.data.get("dynamic_axes"), work / PADDLE_DIR, log)
    seconds = time.perf_counter() - start
    manifest.record_stage(
        "convert", seconds=seconds, inputs=_convert_reads(work), outputs=[PADDLE_DIR],
        paddle_inputs=result.inputs, paddle_outputs=result.outputs,
        unused_inputs=result.unused_inputs, rank0_outputs=result.rank0_outputs,
        x2paddle_opset=result.x2paddle_opset, relocated_paths=result.relocated_paths,
        notes=result.notes, log=str(log.relative_to(work)),
        inference_settings={"chosen": settings["chosen"], "tried": settings["tried"]},
        weights_map=None if wmap is None else {
            "params": len(wmap["params"]), "torch_keys": len(wmap["torch_keys_used"]), "unmapped": wmap["unmapped"]},
    )
    manifest.save()
    if module is not None:  # a Paddle training script for the converted model (reads the record)
        from bridge.train_example import write_train_example

        write_train_example(work)
        manifest.data["stages"]["convert"]["outputs"] = _hashes(work, [PADDLE_DIR])
        manifest.save()
    mapped = f"; inference settings {settings['chosen']}"
    mapped += f"; weights map: {len(wmap['torch_keys_used'])} torch keys" if wmap else ""
    if wmap and wmap["unmapped"]:
        mapped += f", {len(wmap['unmapped'])} params unmapped"
    return (f"convert: {seconds:.1f}s X2Paddle -> {PADDLE_DIR}/ (code, params, inference model){mapped}; "
            f"log {LOGS_DIR}/convert.log")


def _convert_reads(work: Path) -> list[str]:
    # The weights map is built from the torch weights too.
    return _with_data(work, [PATCHED_ONNX]) + ([TORCH_STATE] if (work / TORCH_STATE).exists() else [])


# What each cacheable stage reads and writes. Export always runs: it is cheap, and its
# byte-identical output (same model, same options) is what lets the later stages be reused.
STAGE_STEPS = (
    ("simplify", step_simplify, lambda work: [EXPORTED_ONNX], [SIMPLIFIED_ONNX]),
    ("patch", step_patch, lambda work: [SIMPLIFIED_ONNX], [PATCHED_ONNX]),
    ("convert", step_convert, _convert_reads, [PADDLE_DIR]),
)


def _with_data(work: Path, names: list[str]) -> list[str]:
    """``names`` and the external data file beside each ONNX artifact that has one (a model
    over 2 GB: ``model.patched.onnx.data``): a changed weights file must rerun the stages."""
    return [m for n in names for m in (n, n + DATA_SUFFIX) if m == n or (work / m).is_file()]


def _hashes(work: Path, names: list[str]) -> dict[str, str]:
    return {k: v for n in _with_data(work, names) if (work / n).exists() for k, v in sha256_tree(work / n).items()}


def _reuse_stage(stage: str, reads: list[str], writes: list[str], work: Path, previous: Manifest | None) -> bool:
    """Copy a stage's artifacts from the previous run when what it read, the tool versions
    and bridge's own code are unchanged, and its artifacts are still as recorded."""
    if previous is None:
        return False
    old = previous.data["stages"].get(stage)
    fresh = Manifest.load(work)
    if not old or previous.data.get("tools") != fresh.data.get("tools"):
        return False
    if stage == "convert" and previous.data.get("inference_threads") != fresh.data.get("inference_threads"):
        return False  # its inference settings were chosen at another thread count (--threads)
    if _hashes(work, reads) != old["inputs"] or _hashes(previous.work, writes) != old["outputs"]:
        return False
    for name in _with_data(previous.work, writes):
        src = previous.work / name
        if src.is_dir():
            shutil.copytree(src, work / name)
        else:
            shutil.copy2(src, work / name)
    fresh.data["stages"][stage] = {**old, "cached": True}
    fresh.save()
    return True


def convert(
    source_text: str, out: Path, input_texts: list[str] = (), opset: int | None = None,
    dynamic_texts: list[str] = (), weights: Path | None = None, echo: Callable[[str], None] = print,
    force: bool = False, threads: int | None = None,
) -> None:
    """export → simplify → patch → convert into ``out``, atomically. A stage whose inputs,
    tools and bridge code are unchanged since the previous run into ``out`` is reused, unless
    ``force``. ``threads``: the CPU threads Paddle Inference will serve with; the inference
    settings are checked and timed at it and saved with it (None: Paddle's default)."""
    source = parse_source(source_text)
    input_specs = parse_input_specs(list(input_texts))
    dynamic_axes = parse_dynamic_specs(list(dynamic_texts))
    created_parents = check_out_dir(out)
    try:
        with _disk_errors(out), work_lock(out), atomic_path(out) as tmp:
            previous = None
            if not force and (out / "manifest.json").exists():
                with contextlib.suppress(BridgeError):
                    previous = Manifest.load(out)
            reused = 0
            try:
                echo(step_export(tmp, source, input_specs, opset, dynamic_axes, weights))
                if threads is not None:  # read by step_convert (inference settings) and _reuse_stage
                    manifest = Manifest.load(tmp)
                    manifest.data["inference_threads"] = threads
                    manifest.save()
                for stage, step, reads, writes in STAGE_STEPS:
                    if _reuse_stage(stage, reads(tmp), writes, tmp, previous):
                        reused += 1
                        echo(f"{stage}: reused from the previous run (inputs, tools and bridge unchanged)")
                    else:
                        echo(step(tmp))
            except BridgeError as exc:
                raise _keep_logs(exc, tmp, out) from exc
    except BaseException:
        for folder in created_parents:  # innermost first; only the empty ones we made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if reused == len(STAGE_STEPS):
        echo(f"converted: {out}/ unchanged, no stage rerun (--force reruns everything)")
    else:
        echo(f"converted: {out}/ (run `bridge validate {out}`)")


# A full, over-quota or read-only disk under --out is the user's to fix, not a bug in bridge.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@contextlib.contextmanager
def _disk_errors(out: Path, what: str = "--out") -> Iterator[None]:
    """Turn a write that the disk refused into one line naming ``out`` (the build folder is
    already gone by then, and ``out`` as it was)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise BridgeError(f"{what} {out}: cannot write there: {exc.strerror}; {out} is as it was") from exc


def _keep_logs(exc: BridgeError, tmp: Path, out: Path) -> BridgeError:
    """The failed build folder is about to be deleted: keep its logs in a folder of their own
    and point the message there, so "(log: ...)" names a file that exists."""
    message = str(exc)
    logs = tmp / LOGS_DIR
    if logs.is_dir() and str(logs) in message:
        kept = Path(tempfile.mkdtemp(prefix=f"bridge-{out.name}-logs-"))
        shutil.copytree(logs, kept, dirs_exist_ok=True)
        message = message.replace(str(logs), str(kept))
    return type(exc)(message.replace(str(tmp), str(out)))


def _build_runners(work: Path, manifest: Manifest, device: str, threads: int | None, notes: list[str]):
    from bridge import runners as r

    _require_stage(manifest, "convert")
    conv = manifest.data["stages"]["convert"]
    input_names = [s["name"] for s in manifest.data["inputs"]]
    output_names = manifest.data["output_names"]
    frameworks = ("onnxruntime", "paddle")
    built: dict[str, r.Runner] = {}
    try:
        torch_module = _torch_module(work, manifest)
    except BridgeError as exc:  # e.g. a copied folder whose source module is not importable here
        notes.append(f"torch runner skipped: {exc}")
        torch_module = None
    if torch_module is not None:
        frameworks += ("torch",)
    r.check_device(device, frameworks)
    onnx_path = require_artifact(work, PATCHED_ONNX, "patch")
    paddle_dir = require_artifact(work, PADDLE_DIR, "convert")
    # The inputs the Paddle model takes, in its order (X2Paddle drops unread ones: unused_inputs).
    inputs = {name: paddle_name for name, paddle_name in conv["paddle_inputs"].items() if name in input_names}
    rank0 = conv.get("rank0_outputs", [])
    # Built first: loading its params briefly holds them twice, better before the other
    # runners hold theirs (a model of several GB).
    dygraph = r.PaddleDygraphRunner(paddle_dir, inputs, conv["paddle_outputs"], device, rank0_outputs=rank0)
    if torch_module is not None:
        built["torch"] = r.TorchRunner(torch_module, input_names, output_names, device)
    built["onnxruntime"] = r.OrtRunner(onnx_path, device, threads)
    built["paddle_inference"] = r.PaddleInferenceRunner(paddle_dir, inputs, conv["paddle_outputs"], device, threads,
                                                        rank0_outputs=rank0)
    built["paddle_dygraph"] = dygraph
    return built


# Above this much external weight data, the stage diff's two extra ONNX Runtime sessions
# (exported, simplified) are not run: each would hold another copy of the weights.
STAGE_DIFF_MAX_DATA_BYTES = 1 << 30


def _build_stage_runners(work: Path, device: str, threads: int | None):
    """ONNX Runtime on the exported and simplified models, for the per-stage diff. The raw
    export may be invalid ONNX (the seed's is): then the stage is reported as not runnable."""
    from bridge import runners as r

    built, errors = {}, {}
    for name, artifact in (("ort_exported", EXPORTED_ONNX), ("ort_simplified", SIMPLIFIED_ONNX)):
        data = work / (artifact + DATA_SUFFIX)
        if data.is_file() and data.stat().st_size > STAGE_DIFF_MAX_DATA_BYTES:
            errors[name] = (f"{data.stat().st_size / 1e9:.2f} GB of weights; skipped to hold fewer copies "
                            f"of them (the patched model is compared)")
            continue
        try:
            built[name] = r.OrtRunner(work / artifact, device, threads)
        except BridgeError as exc:
            errors[name] = str(exc).split(": ", 1)[-1]
    return built, errors


def validate(
    work: Path, *, device: str = "cpu", batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    atol: float | None = None, rtol: float | None = None, threads: int | None = None,
    layerwise: bool = False, inputs_file: Path | None = None,
    per_output_tolerance: dict | None = None, noise_runs: int = validate_stage.NOISE_RUNS,
) -> validate_stage.ValidationReport:
    """``layerwise``: also compare every intermediate tensor and name the first divergent node
    (``bridge.layerwise``; the report is then a ``LayerwiseValidationReport``). ``inputs_file``:
    an .npz of the model's inputs to feed instead of seeded random ones (``bridge.feeds``; one
    batch, its size). ``per_output_tolerance``: output name -> ``bridge.compare.Tolerance``.
    ``noise_runs``: runs of each reference per batch for the noise floor. Writes
    ``validation.json``, ``validation.txt`` and ``report.html``."""
    Manifest.load(work)  # a clear error for a folder that is not a work directory, before locking
    with work_lock(work):
        return _validate(work, device=device, batch_sizes=batch_sizes, atol=atol, rtol=rtol, threads=threads,
                         layerwise=layerwise, inputs_file=inputs_file,
                         per_output_tolerance=per_output_tolerance or {}, noise_runs=noise_runs)


def _validate(work: Path, *, device, batch_sizes, atol, rtol, threads, layerwise=False,
              inputs_file=None, per_output_tolerance=None, noise_runs=validate_stage.NOISE_RUNS,
              ) -> validate_stage.ValidationReport:
    from bridge.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance, Tolerances, check_tolerance_value
    from bridge.integrity import verify_work
    from bridge.report_html import write_report_html

    manifest = Manifest.load(work)
    _require_stage(manifest, "convert")
    tolerances = Tolerances(
        Tolerance(check_tolerance_value(DEFAULT_ATOL if atol is None else atol, "--atol"),
                  check_tolerance_value(DEFAULT_RTOL if rtol is None else rtol, "--rtol")),
        dict(per_output_tolerance or {}))
    tolerances.check_outputs(manifest.data["output_names"])
    if noise_runs < 1:
        raise BridgeError(f"--noise-runs {noise_runs}: must be >= 1 (1: no noise floor)")
    verify_work(work, manifest)  # before the generated code is imported or any params loaded
    specs = [InputSpec.from_json(s) for s in manifest.data["inputs"]]
    notes: list[str] = []
    if not manifest.data.get("dynamic_batch", True):
        fixed = next((s.shape[0] for s in specs if s.shape), 1)  # a rank-0 input has no batch axis
        notes.append(f"batch axis is static ({fixed}); validated at batch {fixed} only")
        batch_sizes = (fixed,)
    given = None
    if inputs_file is not None:  # checked before any runner is built
        from bridge.feeds import read_feeds

        batch, given = read_feeds(inputs_file, specs, manifest.data.get("dynamic_batch", True),
                                  manifest.data.get("dynamic_axes"))
        batch_sizes = (batch,)
        notes.append(f"inputs from {inputs_file} (batch {batch}), not seeded random ones")
    start = time.perf_counter()
    with capture_fds(work / LOGS_DIR / "validate.log"):
        runners = _build_runners(work, manifest, device, threads, notes)
        stage_runners, stage_errors = _build_stage_runners(work, device, threads)
        # A static batch: the example shapes as they are (inputs' first dims may differ).
        dynamic = manifest.data.get("dynamic_batch", True)
        feeds = {b: export_stage.random_inputs(specs, batch=b if dynamic else None, seed=b) for b in batch_sizes}
        if given is not None:
            feeds = {batch_sizes[0]: given}
        report = validate_stage.run(
            runners, ["onnxruntime", "torch"], feeds, device=device,
            stage_runners=stage_runners, stage_errors=stage_errors, tolerances=tolerances, noise_runs=noise_runs,
        )
        if layerwise:  # at the largest batch: batch-dependent conversion faults show there
            from bridge import layerwise as layerwise_mod

            layers = layerwise_mod.run_layerwise(
                work / PATCHED_ONNX, work / PADDLE_DIR, feeds[max(feeds)],
                atol=report.atol, rtol=report.rtol, device=device, threads=threads)
            report = layerwise_mod.with_layerwise(report, layers)
    report.notes.extend(notes)
    for name, runner in runners.items():
        if getattr(runner, "reshaped_outputs", None):
            report.notes.append(f"{name} gave rank-0 output(s) {', '.join(sorted(runner.reshaped_outputs))} "
                                "as shape [1]; compared as rank 0, as the ONNX graph declares")
    seconds = time.perf_counter() - start
    write_json_atomic(work / VALIDATION_JSON, report.to_json())
    write_text_atomic(work / VALIDATION_TXT, report.render() + "\n")
    manifest.record_stage(
        "validate", seconds=seconds, inputs=_with_data(work, [PATCHED_ONNX, PADDLE_DIR]), outputs=[VALIDATION_JSON],
        passed=report.passed, device=device, batch_sizes=list(batch_sizes), report="report.html",
    )
    manifest.save()
    write_report_html(work)  # last: it shows the validate stage's own record too
    return report
