"""Stage 2, simplify: onnxsim (constant folding, shape inference). On failure the
unsimplified model is kept and the failure is recorded, never silently passed over."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge.onnx_io import external_data_bytes, has_external_data, load_onnx, save_onnx
from bridge.workdir import atomic_path


@dataclass
class SimplifyResult:
    simplified: bool
    nodes_before: int
    nodes_after: int
    error: str | None = None
    notes: list[str] = field(default_factory=list)


# onnxoptimizer's pass that merges initializers of equal value: at initialisation a model's
# LayerNorm ones, cloned layers (nn.TransformerEncoder deep-copies its layer) and their
# pre-transposed MatMul weights are equal, and merged they would train as one tensor.
MERGE_PASS = "eliminate_duplicate_initializer"


def simplify_model(model, keep_distinct: bool = False):
    """onnxsim on an in-memory model: ``(simplified, None)``, or ``(model, error)`` when it
    failed (the unsimplified model goes on). ``bridge.doctor`` simulates this stage with it.
    ``keep_distinct``: leave initializers of equal value apart (``MERGE_PASS`` skipped)."""
    from onnxsim import simplify

    try:
        # skip_fuse_bn: keep BatchNorm's state_dict-named initializers (see the weights map).
        simplified, ok = simplify(model, skip_fuse_bn=True, skipped_optimizers=[MERGE_PASS] if keep_distinct else None)
        if not ok:
            return model, "onnxsim's check of the simplified model failed"
        folded = sorted(_input_reached_outputs(model) - _input_reached_outputs(simplified))
        if folded:
            # X2Paddle 1.6.0 writes no inference model for an output no graph input reaches
            # (ONNX's test_shape: Shape of a static input folds to a constant).
            return model, (f"onnxsim folded output {folded[0]!r} into a constant, which X2Paddle cannot "
                           "convert (no graph input reaches it)")
        return simplified, None
    except Exception as exc:  # onnxsim raises bare RuntimeErrors from C++; keep going unsimplified
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return model, f"{type(exc).__name__}: {first}"


def _input_reached_outputs(model) -> set[str]:
    """The graph outputs that some graph input (not an initializer) flows into. A node holding
    a subgraph counts as reached (its body may read the outer inputs)."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    reached = {i.name for i in graph.input if i.name not in inits}
    for node in graph.node:  # topologically sorted, as ONNX requires
        has_body = any(a.HasField("g") or len(a.graphs) for a in node.attribute)
        if has_body or any(name in reached for name in node.input if name):
            reached.update(name for name in node.output if name)
    return {o.name for o in graph.output if o.name in reached}


def lift_initializers(model, names: frozenset[str] = frozenset()) -> dict:
    """Turn the initializers whose data is in an external file, and those in ``names``, into
    graph inputs of the same type and shape, in place; returns them by name (data still on
    disk for the external ones).

    onnxsim serializes the model it is given, so a model over protobuf's 2 GB limit cannot go
    in whole ("Message larger than 2GiB"); and loading the weights only to hand them over
    would hold them several times. Lifted, the graph is kilobytes, shapes still infer, and
    only folding through those weights is given up (they are X2Paddle's parameters anyway)."""
    from onnx import helper
    from onnx.external_data_helper import uses_external_data

    lifted = {t.name: t for t in model.graph.initializer if uses_external_data(t) or t.name in names}
    if not lifted:
        return {}
    kept = [t for t in model.graph.initializer if t.name not in lifted]
    stubs = [type(t)() for t in lifted.values()]
    for stub, tensor in zip(stubs, lifted.values()):
        stub.CopyFrom(tensor)  # external: a few hundred bytes, the data is on disk
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(kept)
    declared = {i.name for i in model.graph.input}
    for stub in stubs:
        if stub.name not in declared:
            model.graph.input.append(helper.make_tensor_value_info(stub.name, stub.data_type, list(stub.dims)))
    return {s.name: s for s in stubs}


def restore_lifted(model, lifted: dict, declared_inputs: set[str]) -> None:
    """Undo ``lift_initializers`` on onnxsim's output: the lifted inputs become
    initializers again (those still read by a node or an output)."""
    used = {name for node in _all_nodes(model.graph) for name in node.input} | {o.name for o in model.graph.output}
    inputs = [i for i in model.graph.input if i.name not in lifted or i.name in declared_inputs]
    model.graph.ClearField("input")
    model.graph.input.extend(inputs)
    model.graph.initializer.extend(t for name, t in lifted.items() if name in used)


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(sub)


def run(onnx_in: Path, onnx_out: Path, torch_keys: frozenset[str] = frozenset()) -> SimplifyResult:
    """``torch_keys``: the source module's ``state_dict`` names. The initializers of those
    names go through onnxsim as graph inputs and come back unchanged, each its own tensor.
    Folded, onnxsim drops a multiply by a LayerNorm's initial ones and an add of its zeros,
    parameter and all, and merges equal tensors: the converted model would then lack those
    parameters or train them as one (``bridge train-check``, ``bridge load-weights``)."""
    import onnx

    model = load_onnx(onnx_in, weights=False)
    before = len(model.graph.node)
    external = has_external_data(model)
    declared = {i.name for i in model.graph.input}
    weight_bytes = external_data_bytes(model) if external else 0
    lifted = lift_initializers(model, torch_keys)
    result_model, error = simplify_model(model, keep_distinct=bool(torch_keys))
    restore_lifted(result_model, lifted, declared)
    notes = []
    if external:
        save_onnx(result_model, onnx_out, external=True, base_dir=onnx_in.parent)
        notes.append(f"initializers with external data ({weight_bytes / 1e9:.2f} GB) went through onnxsim as graph "
                     f"inputs (not constant-folded), their data streamed to {onnx_out.name}.data")
    else:
        with atomic_path(onnx_out) as tmp:
            onnx.save(result_model, str(tmp))
    kept = sum(1 for name in lifted if name in torch_keys)
    if kept:
        notes.append(f"{kept} torch parameters and buffers kept as they are (neither folded nor merged with "
                     "equal ones), so each stays a parameter of its own")
    return SimplifyResult(error is None, before, len(result_model.graph.node), error, notes)
