"""Every supported ONNX op form against onnxruntime on random points (max abs difference <= 1e-5),
each in a graph ``x -> [op form] -> Relu -> Gemm -> y`` so the form is also composed through a
ReLU; and unsupported forms refused with their node named.

The forms are one table (``FORMS``): a name and a builder of (nodes, initializers, input shape).
Shapes follow ONNX/numpy semantics exactly, e.g. ``MatMul(W, x)`` with W of shape (2, 2, 1) and
x of shape (1, 2) has 2 x 2 x 2 = 8 outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from robustbench_mr.errors import UnsupportedLayerError  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx, onnxruntime_forward  # noqa: E402

RNG = np.random.default_rng(7)
N = helper.make_node


def w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.7).astype(np.float32)


# Each builder returns (nodes, initializers, input shape); its last node writes "h".
Builder = Callable[[], tuple[list, dict[str, np.ndarray], tuple[int, ...]]]
FORMS: dict[str, Builder] = {
    "gemm": lambda: ([N("Gemm", ["x", "B", "C"], ["h"])], {"B": w(4, 3), "C": w(3)}, (1, 4)),
    "gemm_transB_alpha_beta": lambda: ([N("Gemm", ["x", "B", "C"], ["h"], transB=1, alpha=0.7, beta=-1.3)], {"B": w(3, 4), "C": w(1, 3)}, (1, 4)),
    "gemm_transA": lambda: ([N("Gemm", ["x", "B"], ["h"], transA=1)], {"B": w(4, 3)}, (4, 1)),
    "gemm_no_bias_shared_init": lambda: ([N("Gemm", ["x", "B"], ["g"]), N("Gemm", ["g", "B2", "B3"], ["h"])],
                                         {"B": w(3, 3), "B2": w(3, 3), "B3": w(3)}, (1, 3)),
    "matmul_x2d_w2d": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(4, 3)}, (1, 4)),
    "matmul_x1d_w2d": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(4, 3)}, (4,)),
    "matmul_x2d_w1d": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(4)}, (3, 4)),
    "matmul_x2d_w3d": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(2, 4, 3)}, (1, 4)),
    "matmul_x3d_w2d": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(4, 3)}, (1, 2, 4)),
    "matmul_x3d_w3d_broadcast": lambda: ([N("MatMul", ["x", "W"], ["h"])], {"W": w(2, 4, 3)}, (1, 1, 4)),
    "matmul_w2d_x2d": lambda: ([N("MatMul", ["W", "x"], ["h"])], {"W": w(3, 4)}, (4, 1)),
    "matmul_w1d_x2d": lambda: ([N("MatMul", ["W", "x"], ["h"])], {"W": w(4)}, (4, 3)),
    "matmul_w2d_x1d": lambda: ([N("MatMul", ["W", "x"], ["h"])], {"W": w(3, 4)}, (4,)),
    "matmul_w3d_x2d": lambda: ([N("MatMul", ["W", "x"], ["h"])], {"W": w(2, 2, 1)}, (1, 2)),  # the 8-output case
    "matmul_w3d_x3d": lambda: ([N("MatMul", ["W", "x"], ["h"])], {"W": w(2, 3, 4)}, (1, 4, 2)),
    "conv_pads_strides_dilations": lambda: ([N("Conv", ["x", "K", "kb"], ["h"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])],
                                            {"K": w(3, 2, 3, 2), "kb": w(3)}, (1, 2, 6, 5)),
    "conv_groups": lambda: ([N("Conv", ["x", "K"], ["h"], group=2, pads=[1, 1, 1, 1])], {"K": w(4, 1, 3, 3)}, (1, 2, 4, 4)),
    "conv_same_upper": lambda: ([N("Conv", ["x", "K"], ["h"], auto_pad="SAME_UPPER", strides=[2, 2])], {"K": w(2, 1, 2, 2)}, (1, 1, 5, 5)),
    "batchnorm": lambda: ([N("BatchNormalization", ["x", "s", "b", "m", "v"], ["h"], epsilon=1e-3)],
                         {"s": w(3), "b": w(3), "m": w(3), "v": np.abs(w(3)) + 0.1}, (1, 3, 2, 2)),
    "sub_div_normalize": lambda: ([N("Sub", ["x", "mu"], ["c"]), N("Div", ["c", "sd"], ["h"])], {"mu": w(1, 3, 1, 1), "sd": np.abs(w(1, 3, 1, 1)) + 0.5}, (1, 3, 2, 2)),
    "const_minus_x_mul": lambda: ([N("Sub", ["k", "x"], ["c"]), N("Mul", ["c", "k2"], ["h"])], {"k": w(4), "k2": w(1, 4)}, (1, 4)),
    "reshape_flatten_transpose": lambda: ([N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), N("Reshape", ["t", "shape"], ["r"]), N("Flatten", ["r"], ["h"], axis=1)],
                                          {"shape": np.array([1, 4, 3], dtype=np.int64)}, (1, 3, 2, 2)),
    "squeeze_unsqueeze": lambda: ([N("Unsqueeze", ["x", "ax"], ["u"]), N("Squeeze", ["u", "ax"], ["s"]), N("Identity", ["s"], ["h"])],
                                  {"ax": np.array([0], dtype=np.int64)}, (1, 4)),
    "constant_node_add": lambda: ([N("Constant", [], ["k"], value=numpy_helper.from_array(w(1, 4), "k")), N("Add", ["x", "k"], ["h"])], {}, (1, 4)),
    "average_pool": lambda: ([N("AveragePool", ["x"], ["h"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 1, 1])], {}, (1, 2, 3, 3)),
    "add_two_exprs_same_layer": lambda: ([N("Gemm", ["x", "B"], ["a"]), N("Gemm", ["x", "B2"], ["b"]), N("Add", ["a", "b"], ["h"])],
                                         {"B": w(4, 3), "B2": w(4, 3)}, (1, 4)),
}

INT64 = {"shape", "ax"}


def _build(tmp_path, name: str, nodes: list, inits: dict[str, np.ndarray], in_shape: tuple[int, ...], h_size: int):
    head = w(h_size, 2)
    nodes = nodes + [N("Relu", ["h"], ["hr"]), N("Flatten", ["hr"], ["hf"], axis=0), N("Gemm", ["hf", "head"], ["y"])]
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if k in INT64 else np.float32), k) for k, v in inits.items()]
    tensors.append(numpy_helper.from_array(head, "head"))
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=tensors)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _h_size(nodes: list, inits: dict[str, np.ndarray], in_shape: tuple[int, ...]) -> int:
    """The size of "h", from onnxruntime's shape inference on the bare form."""
    from onnx import shape_inference

    tensors = [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if k in INT64 else np.float32), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)], initializer=tensors)
    m = shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), strict_mode=True)
    import onnxruntime as ort

    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return int(prod(sess.run(None, {"x": np.zeros(in_shape, dtype=np.float32)})[0].shape))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_op_form_matches_onnxruntime(tmp_path, form: str) -> None:
    nodes, inits, in_shape = FORMS[form]()
    h_size = _h_size(nodes, inits, in_shape)
    path = _build(tmp_path, form, nodes, inits, in_shape, h_size)
    net = load_onnx(path)
    assert net.num_inputs == prod(in_shape) and net.num_outputs == 2
    x = RNG.uniform(-1, 1, size=(8, net.num_inputs))
    ref = onnxruntime_forward(path, x)
    assert np.max(np.abs(net.forward(x) - ref)) <= 1e-5 * max(1.0, float(np.abs(ref).max()))


def test_matmul_with_a_3d_constant_has_numpy_shape(tmp_path) -> None:
    """MatMul(W (2,2,1), x (1,2)) has 8 outputs: the importer builds exactly those (the first
    version built 4 and refused the correct 8-output VNN-LIB file)."""
    W = w(2, 2, 1)
    g = helper.make_graph([N("MatMul", ["W", "x"], ["y"])], "mm3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2, 2])], initializer=[numpy_helper.from_array(W, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "mm3.onnx"
    onnx.save(model, str(path))
    net = load_onnx(path)
    assert net.num_outputs == 8
    x = RNG.uniform(-1, 1, size=(4, 2))
    np.testing.assert_allclose(net.forward(x), onnxruntime_forward(path, x), atol=1e-6)
    np.testing.assert_allclose(net.forward(x[0]), np.matmul(W.astype(np.float64), x[0].reshape(1, 2)).reshape(-1), atol=1e-6)


@pytest.mark.parametrize("nodes, inits, in_shape, named", [
    ([N("MatMul", ["x", "W"], ["h"], name="bad_mm")], {"W": w(3, 2)}, (1, 4), "bad_mm"),  # K mismatch
    ([N("Mul", ["x", "x"], ["h"], name="square")], {}, (1, 4), "square"),
    ([N("Sigmoid", ["x"], ["h"], name="sig")], {}, (1, 4), "sig"),
    ([N("Conv", ["x", "K"], ["h"], name="conv3d")], {"K": w(2, 1, 2, 2, 2)}, (1, 1, 3, 3, 3), "conv3d"),
])
def test_unsupported_forms_are_refused_naming_the_node(tmp_path, nodes, inits, in_shape, named) -> None:
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)], initializer=tensors)
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(UnsupportedLayerError, match=named):
        load_onnx(path)
