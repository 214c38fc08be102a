"""Unit tests of bridge.spec: ``--input`` specs, SOURCE strings, and loading torch sources."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch

from bridge.errors import BridgeError
from bridge.spec import (
    DTYPES, InputSpec, Source, load_torch_source, parse_input_spec, parse_input_specs, parse_source,
)

# ---------------------------------------------------------------------------------------------
# parse_input_spec


@pytest.mark.parametrize(
    "text, name, shape, dtype",
    [
        pytest.param("x:2x12x5000", "x", (2, 12, 5000), "float32", id="x-separated-default-dtype"),
        pytest.param("x:2,3:int64", "x", (2, 3), "int64", id="comma-separated-with-dtype"),
        pytest.param("x:2x12x5000:float32", "x", (2, 12, 5000), "float32", id="explicit-float32"),
        pytest.param("tokens:7", "tokens", (7,), "float32", id="one-dim"),
        pytest.param("_feat.in:1x3,4:bool", "_feat.in", (1, 3, 4), "bool", id="dotted-name-mixed-separators"),
        pytest.param("x:08x3", "x", (8, 3), "float32", id="leading-zero"),
    ],
)
def test_parse_input_spec_good(text, name, shape, dtype):
    spec = parse_input_spec(text)
    assert spec == InputSpec(name, shape, dtype)
    assert isinstance(spec.shape, tuple) and all(type(d) is int for d in spec.shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parse_input_spec_every_dtype(dtype):
    assert parse_input_spec(f"x:2x3:{dtype}").dtype == dtype


@pytest.mark.parametrize(
    "text, expect",
    [
        pytest.param("x2x3", "NAME:SHAPE", id="no-colon"),
        pytest.param(":2x3", "NAME:SHAPE", id="empty-name"),
        pytest.param("x:2x3:float32:extra", "NAME:SHAPE", id="too-many-parts"),
        pytest.param("1x:2x3", "bad input name '1x'", id="name-starts-with-digit"),
        pytest.param("x-y:2x3", "bad input name 'x-y'", id="name-with-dash"),
        pytest.param("x:", "got ''", id="empty-shape"),
        pytest.param("x:2xa", "got '2xa'", id="letter-dim"),
        pytest.param("x:2xx3", "got '2xx3'", id="empty-dim"),
        pytest.param("x:-1x3", "got '-1x3'", id="negative-dim"),
        pytest.param("x:2.5", "got '2.5'", id="fractional-dim"),
        pytest.param("x:2 x3", "got '2 x3'", id="space-in-shape"),
        pytest.param("x:0x3", ">= 1", id="zero-dim"),
        pytest.param("x:2x0", ">= 1", id="zero-last-dim"),
        pytest.param("x:2x3:float128", "unknown dtype 'float128'", id="unknown-dtype"),
        pytest.param("x:2x3:", "unknown dtype ''", id="empty-dtype"),
        pytest.param("x:2x3:Float32", "unknown dtype 'Float32'", id="dtype-case"),
    ],
)
def test_parse_input_spec_bad(text, expect):
    with pytest.raises(BridgeError) as info:
        parse_input_spec(text)
    message = str(info.value)
    assert message.startswith(f"--input {text!r}:"), message  # names the argument at fault
    assert expect in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_parse_input_specs_keeps_order():
    specs = parse_input_specs(["b:1x2", "a:3:int64"])
    assert specs == [InputSpec("b", (1, 2)), InputSpec("a", (3,), "int64")]
    assert parse_input_specs([]) == []


def test_parse_input_specs_duplicates_named_once_each_sorted():
    with pytest.raises(BridgeError) as info:
        parse_input_specs(["mel:1x2", "ids:3:int64", "mel:4x5", "ok:1", "ids:3"])
    message = str(info.value)
    assert message.startswith("--input")
    assert "duplicate input name(s): ids, mel" in message
    assert "ok" not in message.split("duplicate")[1]


def test_parse_input_specs_reports_bad_spec_before_duplicates():
    with pytest.raises(BridgeError, match="'x:0'"):
        parse_input_specs(["x:1", "x:0"])


def test_input_spec_json_round_trip():
    spec = InputSpec("x", (2, 12, 5000), "float16")
    data = spec.to_json()
    assert data == {"name": "x", "shape": [2, 12, 5000], "dtype": "float16"}
    assert InputSpec.from_json(data) == spec


# ---------------------------------------------------------------------------------------------
# parse_source


def test_parse_source_onnx(tmp_path):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x")
    source = parse_source(str(f))
    assert source == Source(str(f), "onnx", path=f)


def test_parse_source_py_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "net.py").write_text("")
    source = parse_source("sub/net.py:Net")
    assert source == Source("sub/net.py:Net", "torch", path=Path("sub/net.py"), attr="Net")
    assert source.module is None


def test_parse_source_dotted_module():
    source = parse_source("pkg.sub_mod:make_model")
    assert source == Source("pkg.sub_mod:make_model", "torch", module="pkg.sub_mod", attr="make_model")
    assert source.path is None


def test_parse_source_colon_in_path_uses_last_colon(tmp_path):
    d = tmp_path / "a:b"
    d.mkdir()
    (d / "net.py").write_text("")
    source = parse_source(f"{d}/net.py:Net")
    assert source.path == d / "net.py" and source.attr == "Net"


@pytest.mark.parametrize(
    "text, expect",
    [
        pytest.param("missing.onnx", "missing.onnx: no such file", id="onnx-missing"),
        pytest.param("missing.py:Net", "missing.py: no such file", id="py-missing"),
        pytest.param("model", "model: expected a .onnx file", id="no-colon"),
        pytest.param("model.ONNX", "model.ONNX: expected a .onnx file", id="uppercase-suffix"),
        pytest.param("net.py", "net.py: expected a .onnx file", id="py-without-name"),
        pytest.param(":Net", ":Net: expected a .onnx file", id="empty-module"),
        pytest.param("pkg.mod:", "pkg.mod:: expected a .onnx file", id="empty-name"),
        pytest.param("pkg.mod:1Net", "pkg.mod:1Net: expected a .onnx file", id="name-not-identifier"),
        pytest.param("pkg.mod:a.b", "pkg.mod:a.b: expected a .onnx file", id="dotted-attr"),
        pytest.param("my-pkg:Net", "'my-pkg' is neither a .py file nor a dotted module name", id="dash-in-module"),
        pytest.param("pkg..mod:Net", "'pkg..mod' is neither", id="empty-module-part"),
    ],
)
def test_parse_source_errors(text, expect, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BridgeError) as info:
        parse_source(text)
    assert expect in str(info.value)
    assert info.value.exit_code == 2


def test_parse_source_onnx_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.onnx").mkdir()
    with pytest.raises(BridgeError, match=r"^x\.onnx: is a directory"):
        parse_source("x.onnx")


def test_parse_source_py_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.py").mkdir()
    with pytest.raises(BridgeError, match=r"^x\.py: no such file"):
        parse_source("x.py:Net")


# ---------------------------------------------------------------------------------------------
# load_torch_source

MODELS_PY = """\
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x))


def with_tensor():
    return Net(), torch.randn(2, 4)


def with_list():
    return Net(), [torch.randn(2, 4), torch.zeros(1, dtype=torch.int64)]


def just_module():
    return Net()


def bad_pair():
    return 1, 2


def needs_args(width):
    return Net()


def boom():
    raise KeyError("no weights here")


NOT_CALLABLE = 3
"""


@pytest.fixture
def models_py(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS_PY)
    return path


def load(path: Path, attr: str):
    return load_torch_source(parse_source(f"{path}:{attr}"))


def test_load_class(models_py):
    module, example = load(models_py, "Net")
    assert isinstance(module, torch.nn.Module) and type(module).__name__ == "Net"
    assert example is None
    assert not module.training and not module.drop.training  # returned in eval mode


def test_load_factory_returning_module(models_py):
    module, example = load(models_py, "just_module")
    assert type(module).__name__ == "Net" and example is None and not module.training


def test_load_factory_returning_module_and_tensor(models_py):
    module, example = load(models_py, "with_tensor")
    assert type(module).__name__ == "Net" and not module.training
    assert isinstance(example, tuple) and len(example) == 1
    assert example[0].shape == (2, 4)
    out = module(*example)
    assert out.shape == (2, 3)


def test_load_factory_returning_module_and_list(models_py):
    module, example = load(models_py, "with_list")
    assert isinstance(example, tuple) and [t.shape for t in example] == [(2, 4), (1,)]
    assert example[1].dtype == torch.int64


def test_load_dotted_module(tmp_path, monkeypatch):
    name = f"bridge_spec_test_{uuid.uuid4().hex}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODELS_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module, example = load_torch_source(parse_source(f"{name}.models:with_tensor"))
    assert type(module).__name__ == "Net" and example[0].shape == (2, 4)


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("attr", ["Net", "with_tensor"])
def test_two_loads_identical_weights(models_py, attr):
    first, ex1 = load(models_py, attr)
    torch.manual_seed(1234)  # disturb the global RNG between the loads
    torch.rand(1000)
    second, ex2 = load(models_py, attr)
    assert first is not second
    s1, s2 = _state(first), _state(second)
    assert list(s1) == ["fc.weight", "fc.bias"]
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key
    assert s1["fc.weight"].abs().sum() > 0  # really initialised, not zeros
    if ex1 is not None:
        assert all(torch.equal(a, b) for a, b in zip(ex1, ex2))  # example inputs seeded too


def test_loads_from_different_files_same_code_identical(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.py").write_text(MODELS_PY)
    (tmp_path / "b" / "m.py").write_text(MODELS_PY)
    m1, _ = load(tmp_path / "a" / "m.py", "Net")
    m2, _ = load(tmp_path / "b" / "m.py", "Net")
    assert torch.equal(m1.fc.weight, m2.fc.weight)


@pytest.mark.parametrize(
    "attr, expect",
    [
        pytest.param("Missing", "module has no attribute 'Missing'", id="no-attribute"),
        pytest.param("bad_pair", "bad_pair() returned tuple, expected an nn.Module", id="returns-pair-of-ints"),
        pytest.param("needs_args", "calling needs_args() failed: TypeError", id="needs-arguments"),
        pytest.param("boom", "calling boom() failed: KeyError", id="factory-raises"),
        pytest.param("NOT_CALLABLE", "calling NOT_CALLABLE() failed: TypeError", id="not-callable"),
    ],
)
def test_load_errors(models_py, attr, expect):
    with pytest.raises(BridgeError) as info:
        load(models_py, attr)
    message = str(info.value)
    assert message.startswith(f"{models_py}:{attr}: "), message  # names the SOURCE
    assert expect in message
    assert info.value.exit_code == 2


def test_load_import_raises(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\nraise ImportError('needs a GPU build')\n")
    with pytest.raises(BridgeError) as info:
        load(path, "Net")
    assert str(info.value).startswith(f"{path}:Net: ")
    assert "ImportError" in str(info.value) and "needs a GPU build" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_load_dotted_module_not_found():
    name = f"bridge_no_such_pkg_{uuid.uuid4().hex}"
    with pytest.raises(BridgeError) as info:
        load_torch_source(parse_source(f"{name}.models:Net"))
    assert str(info.value).startswith(f"{name}.models:Net: cannot import module")
    assert name in str(info.value).split("cannot import module")[1]


# ---------------------------------------------------------------------------------------------
# an ONNX source's inputs (bridge.stages.export.copy_onnx)

SCALAR_INPUTS = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 4] x, float s, float t) => (float[N, 4] y, float z) {
    y = Mul (x, s)
    z = Add (s, t)
}
"""


def _onnx_file(tmp_path: Path, text: str) -> Path:
    import onnx
    import onnx.parser

    path = tmp_path / "model.onnx"
    onnx.save(onnx.parser.parse_model(text), str(path))
    return path


def test_onnx_source_rank_0_inputs_are_known_shapes(tmp_path):
    from bridge.stages.export import copy_onnx, random_inputs

    result = copy_onnx(_onnx_file(tmp_path, SCALAR_INPUTS), tmp_path / "out.onnx", [])
    assert result.inputs == [InputSpec("x", (2, 4)), InputSpec("s", ()), InputSpec("t", ())]
    assert result.dynamic_batch  # a scalar has no batch axis to fix
    feeds = random_inputs(result.inputs, batch=8)
    assert [feeds[n].shape for n in ("x", "s", "t")] == [(8, 4), (), ()]


def test_onnx_source_input_without_a_shape_still_needs_input(tmp_path):
    from bridge.stages.export import copy_onnx

    path = _onnx_file(tmp_path, SCALAR_INPUTS)
    import onnx

    model = onnx.load(str(path))
    model.graph.input[1].type.tensor_type.ClearField("shape")  # 's': rank unknown, not rank 0
    onnx.save(model, str(path))
    with pytest.raises(BridgeError, match=r"input 's' has shape unknown; give it with --input s:SHAPE"):
        copy_onnx(path, tmp_path / "out.onnx", [])
    result = copy_onnx(path, tmp_path / "out.onnx", [parse_input_spec("s:1")])
    assert result.inputs[1] == InputSpec("s", (1,))


@pytest.fixture(scope="module")
def scalar_validation(tmp_path_factory):
    from bridge import pipeline

    tmp = tmp_path_factory.mktemp("scalars")
    out = tmp / "work"
    pipeline.convert(str(_onnx_file(tmp, SCALAR_INPUTS)), out, echo=lambda line: None)
    return pipeline.validate(out, batch_sizes=(1, 3))


def test_rank_0_inputs_convert_and_validate(scalar_validation):
    """Scalars through X2Paddle and Paddle Inference: the converted model takes the 0-d feeds
    and matches ONNX Runtime at every batch size."""
    rows = [c for c in scalar_validation.diffs if c.output == "y"]
    assert len(rows) == 4 and all(c.passed for c in rows), [c.problem for c in rows]


def test_rank_0_output_keeps_its_shape(scalar_validation):
    """0-d feeds stay 0-d in the Paddle runners (np.ascontiguousarray made them [1]), so a
    rank-0 output computed from scalars is rank 0 in both, as in ONNX Runtime."""
    rows = [c for c in scalar_validation.diffs if c.output == "z"]
    assert len(rows) == 4 and all(c.passed for c in rows), [c.problem for c in rows]
