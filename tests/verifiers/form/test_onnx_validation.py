"""ONNX files as untrusted input: empty or graph-less files, NaN/Inf constants and bad input
dims are refused with one UserError line naming the problem, before any node is evaluated."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import robustbench_mr.verifiers.form.chain_from_onnx as onnx_import  # noqa: E402
from robustbench_mr.errors import UnsupportedLayerError, UserError  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx  # noqa: E402

RNG = np.random.default_rng(0)


def _save(tmp_path, nodes, inits, in_dims=(1, 4), name="m", check=True):
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(np.asarray(a, dtype=np.float32), n) for n, a in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if check:
        onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _mlp(tmp_path, **overrides):
    """x (1, 4) -> Gemm(W, b) -> Relu -> Gemm(V, c) -> y (1, 3); ``overrides`` replace initializers."""
    inits = {"W": RNG.standard_normal((4, 5)), "b": np.zeros(5), "V": RNG.standard_normal((5, 3)), "c": np.zeros(3)}
    inits.update(overrides)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "V", "c"], ["y"], name="fc2"),
    ]
    return _save(tmp_path, nodes, inits)


@pytest.fixture
def no_node_evaluated(monkeypatch):
    """Fail the test if the importer evaluates any node (validation must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a node was evaluated before validation")

    for op in list(onnx_import.OPS):
        monkeypatch.setitem(onnx_import.OPS, op, refuse)


def _refused(path, *fragments):
    with pytest.raises(UserError) as err:
        load_onnx(path)
    assert type(err.value) is UserError  # a bad file, not an unsupported layer
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_the_reference_mlp_imports(tmp_path):
    net = load_onnx(_mlp(tmp_path))
    assert net.num_inputs == 4


def test_empty_file_says_it_is_empty(tmp_path, no_node_evaluated):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    msg = _refused(p, "the file is empty (0 bytes)")
    assert "inputs" not in msg and "outputs" not in msg


def test_file_that_parses_but_holds_no_graph(tmp_path, no_node_evaluated):
    p = tmp_path / "nograph.onnx"
    p.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    _refused(p, "holds no graph")


def test_nan_initializer_is_refused_naming_it(tmp_path, no_node_evaluated):
    W = RNG.standard_normal((4, 5))
    W[2, 3] = np.nan
    _refused(_mlp(tmp_path, W=W), "initializer 'W' has 1 NaN value(s)", "corrupt or training diverged")


def test_inf_initializer_is_refused_naming_it(tmp_path, no_node_evaluated):
    c = np.array([0.0, np.inf, -np.inf])
    _refused(_mlp(tmp_path, c=c), "initializer 'c' has 2 Inf value(s)")


def test_batchnorm_running_variance_counts_too(tmp_path, no_node_evaluated):
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Flatten", ["bn"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "V"], ["y"], name="fc"),
    ]
    inits = {"s": np.ones(2), "b": np.zeros(2), "m": np.zeros(2), "v": np.array([1.0, np.nan]), "V": RNG.standard_normal((4, 3))}
    _refused(_save(tmp_path, nodes, inits, in_dims=(1, 2, 1, 2)), "initializer 'v' has 1 NaN value(s)")


def test_constant_node_with_inf_is_refused_naming_it(tmp_path, no_node_evaluated):
    k = numpy_helper.from_array(np.array([1.0, np.inf, 2.0], dtype=np.float32), "kval")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Constant", [], ["k"], name="scale_const", value=k),
        helper.make_node("Mul", ["h", "k"], ["y"], name="scale"),
    ]
    _refused(_save(tmp_path, nodes, {"W": RNG.standard_normal((4, 3))}), "Constant node 'scale_const' (output 'k') has 1 Inf value(s)")


def test_unused_nan_initializer_is_not_part_of_the_imported_graph(tmp_path):
    # dead weights (an initializer nothing live reads) do not change the imported function
    inits = {"W": RNG.standard_normal((4, 3)), "unused": np.array([np.nan])}
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")], inits)
    assert load_onnx(path).num_inputs == 4


def test_non_positive_input_dim_is_refused(tmp_path, no_node_evaluated):
    inits = {"W": RNG.standard_normal((4, 3))}
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")], inits, in_dims=(1, -4), check=False)
    _refused(path, "input 'x' declares size -4 for axis 1", "positive size")


def test_unsupported_ops_are_still_reported_as_such(tmp_path):
    # the finiteness check does not mask the structural refusal
    W = RNG.standard_normal((4, 3))
    W[0, 0] = np.nan
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"), helper.make_node("Softmax", ["h"], ["y"], name="sm")]
    with pytest.raises(UnsupportedLayerError, match="Softmax"):
        load_onnx(_save(tmp_path, nodes, {"W": W}))
