"""A fixed sample of ONNX's backend test cases through the conformance harness, in ``make test``:
for every default patch one case on which it fires, and for every X2Paddle mapper shim one case
of an op type whose mapper it replaces or adds, each of which must pass (Paddle Inference
matches ONNX's expected outputs). The whole suites run in ``make conformance``.

The patches no ONNX backend case exercises are listed with the reason in ``NO_ONNX_CASE``; their
own tests (tests/test_patch_<name>.py), the property tests (tests/test_fuzz_patches.py) and the
example zoo cover them. ``test_the_sample_covers_every_patch_and_shim`` keeps both tables in step
with ``DEFAULT_PATCHES`` and ``SHIMS``.
"""
from __future__ import annotations

import json

import pytest

from bridge import conformance
from bridge.patches import DEFAULT_PATCHES
from bridge.patches.x2paddle_shims import SHIMS

# patch name -> a case on which it fires (picked from a full `make conformance` run: the fastest
# passing case whose patch-stage note names the patch).
PATCH_CASES = {
    "maxpool_dilated": "test_maxpool_2d_dilations",
    "pool_default_strides": "test_averagepool_2d_same_upper",
    "softmax_default_axis": "test_logsoftmax_example_1",
    "decompose_attention": "test_attention_4d_with_past_and_present",
    "decompose_rotary_embedding": "test_rotary_embedding_no_position_ids_interleaved",
    "constant_infinity": "test_attention_4d_with_past_and_present",
    "castlike_to_cast": "test_castlike_FLOAT16_to_FLOAT",
    "sum_variadic": "test_sum_example",
    "decompose_selu": "test_selu_default",
    "decompose_celu": "test_celu",
    "decompose_mish": "test_mish",
    "decompose_hardswish": "test_hardswish",
    "decompose_swish": "test_swish",
    "decompose_gelu": "test_gelu_default_1",
    "decompose_hyperbolic": "test_sinh_example",
    "decompose_inverse_hyperbolic": "test_atanh",
    "decompose_round": "test_round",
    "decompose_isnan": "test_isnan",
    "decompose_mean": "test_mean_example",
    "decompose_layer_normalization": "test_layer_normalization_2d_axis0",
    "decompose_rms_normalization": "test_rms_normalization_2d_axis1",
    "decompose_group_normalization": "test_group_normalization_example",
    "decompose_lp_normalization": "test_lpnormalization_default",
    "decompose_argmin": "test_argmin_default_axis_random",
    "decompose_hardmax": "test_hardmax_axis_1",
    "decompose_trilu": "test_tril_out_pos",
    "decompose_softmax_cross_entropy_loss": "test_sce_mean_3d",
    "decompose_nll_loss": "test_nllloss_NCd1d2_reduction_mean",
    "cast_unsupported_dtypes": "test_equal_uint16",
    "opset_fit": "test_logsoftmax_axis_1_expanded_ver18",
    "shape_start_end": "test_shape_start_1",
}

NO_ONNX_CASE = {
    "maxpool_unbatched": "its pattern (a 2-D MaxPool on a rank-3 tensor) is invalid ONNX that torch's "
                         "TorchScript exporter writes; ONNX's cases are valid (the seed model has it)",
    "drop_unit_dilations": "no ONNX case has a pool whose dilations are all ones",
    "lstm_initial_states": "ONNX's LSTM cases stop in X2Paddle's LSTM mapper first ('name should not be "
                           "empty', weights given as graph inputs)",
    "gru_unroll": "ONNX's GRU cases give the weights as graph inputs; the patch unrolls GRUs with constant weights",
    "flatten_dynamic_dims": "ONNX's cases have static shapes",
    "resize_half_pixel": "ONNX's Resize cases give scales/sizes as graph inputs, which X2Paddle's Resize "
                         "mapper cannot take",
}

# Mapper shim -> a case of an op type whose X2Paddle mapper the shim replaces or adds.
SHIM_CASES = {
    "reduce_sum_keepdims": "test_reduce_sum_default_axes_keepdims_example",
    "pad_constant": "test_operator_pad",
    "reduce_tensor_axes": "test_reduce_mean_keepdims_example",
    "reduce_sum_tensor_axes": "test_reduce_sum_keepdims_example",
    "reduce_lp_axes": "test_reduce_l2_keep_dims_example",
    "constant_value_forms": "test_leakyrelu_expanded",
    "tensor_attrs_typed_fields": "test_constantofshape_int_zeros",
    "clip_bounds": "test_clip_default_min",
    "conv_kernel_shape": "test_basic_conv_without_padding",
    "gather_input_table": "test_gather_0",
    "mappers_math": "test_einsum_batch_matmul",
    "mappers_tensor": "test_gridsample",
    "multi_output_graph_outputs": "test_top_k",
    "topk_values_readers": "test_top_k_negative_axis",
    "argmax_defaults": "test_argmax_default_axis_example",
    "gemm_all_forms": "test_gemm_alpha",
    "split_tensor_sizes": "test_split_variable_parts_1d_opset13",
    "squeeze_unsqueeze_tensor_axes": "test_squeeze_negative_axes",
    "dropout": "test_dropout_default_mask_ratio",
    "expand_tensor_shape": "test_expand_dim_changed",
    "div_integers": "test_div_int32_trunc",
    "topk_stable_ties": "test_top_k_same_values",
    "scatter_nd_reduction": "test_scatternd_max",
    "narrow_max_min_mod": "test_mod_int64_fmod",
    "maxpool_indices": "test_maxpool_with_argmax_2d_precomputed_pads",
    "gather_nd_batch_dims": "test_gathernd_example_int32_batch_dim1",
}
# Other stages' fixes, each with a case that needs it.
OTHER_CASES = {
    # onnxsim folds Shape of a static input into a constant output; X2Paddle then writes nothing.
    "simplify keeps an output that a graph input reaches": "test_shape",
}
# Shims every case goes through: X2Paddle's imports, no network, its exit(0), its speed and memory.
EVERY_CASE = {"require_undeclared_deps", "import_onnx_version", "provide_onnx_mapping", "disable_feedback",
              "exit_raises", "pattern_matcher_linear", "name_struct_linear", "decoder_streams_weights",
              "release_weights_after_dump"}


def test_the_sample_covers_every_patch_and_shim():
    patches = {p.name for p in DEFAULT_PATCHES}
    assert not set(PATCH_CASES) & set(NO_ONNX_CASE)
    assert set(PATCH_CASES) | set(NO_ONNX_CASE) == patches, "a new patch needs a case here (or a reason)"
    assert not set(SHIM_CASES) & EVERY_CASE
    assert set(SHIM_CASES) | EVERY_CASE == {s.name for s in SHIMS}, "a new shim needs a case here"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("conformance-sample")
    cases = sorted(set(PATCH_CASES.values()) | set(SHIM_CASES.values()) | set(OTHER_CASES.values()))
    args = [arg for case in cases for arg in ("--case", case)]
    assert conformance.main([*args, "--out", str(out), "--jobs", "2", "--timeout", "120"]) == 0
    lines = (out / conformance.RESULTS_FILE).read_text().splitlines()
    return {r["case"]: r for r in map(json.loads, lines)}


@pytest.mark.parametrize("patch", sorted(PATCH_CASES))
def test_the_patch_fires_and_the_case_passes(sample, patch):
    record = sample[PATCH_CASES[patch]]
    assert record["status"] == "pass", record
    fired = " ".join(note for note in record["notes"] if "fired (" in note)
    assert f"{patch} ×" in fired, record["notes"]


@pytest.mark.parametrize("fix", sorted(OTHER_CASES))
def test_the_stages_fix_passes(sample, fix):
    assert sample[OTHER_CASES[fix]]["status"] == "pass", sample[OTHER_CASES[fix]]


@pytest.mark.parametrize("shim", sorted(SHIM_CASES))
def test_the_shims_op_passes(sample, shim):
    record = sample[SHIM_CASES[shim]]
    assert record["status"] == "pass", record
