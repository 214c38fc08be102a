"""Conformance cases that cannot pass through bridge, each with the reason: one reviewed table.

The harness still runs every case (a future bridge that handles one shows up as a pass); a case
that fails and matches an entry is recorded as ``unsupported`` with the entry's reason
(``limit``) and the status it failed with (``failed_as``), and it stays in the totals. An entry
names op types (fnmatch patterns over the case's op types, domain included for non-default
domains) and/or a case-name regex; ``verified`` says how its claim was checked (Paddle 3.3.1,
X2Paddle 1.6.0, Paddle Inference's Python API on CPU).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Limit:
    reason: str
    op_types: tuple[str, ...] = ()  # fnmatch patterns over a case's op types
    case_pattern: str | None = None  # regex searched in the case name
    verified: str = ""

    def matches(self, record: dict) -> bool:
        ops = [record.get("op_type") or "", *(record.get("op_types") or [])]
        if any(fnmatchcase(op, pattern) for pattern in self.op_types for op in ops):
            return True
        return bool(self.case_pattern and re.search(self.case_pattern, record.get("case", "")))


LIMITS: tuple[Limit, ...] = (
    Limit("string tensors: Paddle Inference feeds and returns numeric tensors only",
          op_types=("StringNormalizer", "StringSplit", "StringConcat", "RegexFullMatch"),
          case_pattern=r"(?i)(_string(_|$)|STRING|label_encoder_string)",
          verified="paddle.to_tensor(np.array(['a'])) raises 'tensor.set() supports array with bool, float16, "
                   "float32, ...' (no str); the cases' inputs or outputs are string tensors"),
    # Optional* ops on plain tensors (test_optional_get_element_tensor, has_element on a tensor
    # or on no input) are an Identity or a constant: fixable, so not listed.
    Limit("sequence values: Paddle Inference feeds and returns dense tensors only",
          op_types=("Sequence*", "SplitToSequence", "ConcatFromSequence"),
          case_pattern=r"^test_(identity_(sequence|opt)|if_(seq|opt)|loop\d+_seq|optional_get_element_(optional_)?sequence)",
          verified="Paddle Inference's predictor takes and gives paddle Tensors only; the harness reports a "
                   "sequence/optional input or output as not a tensor"),
    Limit("training-only ops (ai.onnx.preview.training: optimizer steps, gradients): outside an inference "
          "model converter",
          op_types=("ai.onnx.preview.training.*",),
          verified="the ops' domain; X2Paddle 1.6.0 maps the default domain only"),
    Limit("ai.onnx.ml domain (classic ML: trees, label encoders, feature extractors): not emitted by "
          "torch.onnx, outside a PyTorch model converter",
          op_types=("ai.onnx.ml.*",),
          verified="the ops' domain; X2Paddle 1.6.0 maps the default domain only"),
    Limit("random draws: ONNX's expected outputs come from numpy's generator, which Paddle's cannot reproduce",
          op_types=("Bernoulli", "RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike",
                    "Multinomial"),
          case_pattern=r"^test_training_dropout(?!_zero_ratio)",  # a zero ratio draws nothing
          verified="the ONNX op definitions (outputs sampled); test_training_dropout* run Dropout with "
                   "training_mode=1"),
    Limit("float8 / 4-bit / 2-bit tensors at the model's boundary: Paddle 3.3.1 has no dtype for the "
          "FNUZ, E8M0, 4- and 2-bit types, and Paddle Inference cannot hand back float8_e4m3fn/e5m2 outputs",
          case_pattern=r"(?i)(float8|float4|e8m0|(?<![a-z])u?int[24](?!\d))",
          verified="hasattr(paddle, 'float8_e4m3fnuz' | 'float8_e5m2fnuz' | 'float8_e8m0fnu' | 'float4_e2m1fn' | "
                   "'int4' | 'uint4' | 'int2' | 'uint2') all False; float8_e4m3fn/e5m2 outputs fail copy_to_cpu: "
                   "'The type of data we are trying to retrieve (float32) does not match ... (float8_e4m3fn)', "
                   "'Invalid enum data type `float8_e5m2`'"),
    Limit("uint32 / uint64 tensors: Paddle 3.3.1 cannot take them from numpy",
          case_pattern=r"uint(32|64)",
          verified="paddle.to_tensor(np.array([1], np.uint32 | np.uint64)) raises 'Input object type error or "
                   "incompatible array data type'; X2Paddle 1.6.0: 'Not supported numpy dtype uint64'"),
    Limit("int16 / uint16 outputs: Paddle Inference cannot hand back an int16 tensor (copy_to_cpu reads it "
          "as float32) and Paddle's uint16 is bfloat16's storage type",
          case_pattern=r"^test_(add|sub|mul|div|max|min|mod|mod_mixed_sign)_u?int16$",
          verified="a converted Add(int32)->Cast(int16) model fails in copy_to_cpu: 'The type of data we are "
                   "trying to retrieve (float32) does not match the type of data (int16)'; Cast(to=UINT16) "
                   "converts to a bfloat16 cast (tests/test_patch_cast_unsupported_dtypes.py covers the "
                   "comparisons, which return bool and pass)"),
)


def limit_for(record: dict) -> Limit | None:
    """The first table entry matching a failing record (None for a pass or no match)."""
    if record.get("status") == "pass" and not record.get("failed_as"):
        return None
    return next((limit for limit in LIMITS if limit.matches(record)), None)


def apply_limits(record: dict) -> dict:
    """``record`` with a failure that matches the table reported as ``unsupported`` (``limit``:
    the reason, ``failed_as``: the status it failed with); idempotent, so records written before
    an entry existed (or under an older table) are classified the same when rendered."""
    failed_as = record.get("failed_as") or record.get("status")
    record = {k: v for k, v in record.items() if k not in ("limit", "failed_as")}
    record["status"] = failed_as
    if failed_as == "pass":
        return record
    limit = limit_for(record)
    if limit is not None:
        record.update(status="unsupported", limit=limit.reason, failed_as=failed_as)
    return record
