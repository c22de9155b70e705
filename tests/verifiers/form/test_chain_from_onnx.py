"""ONNX import: the network form must compute what onnxruntime computes on the same file.

Graphs are built here with onnx.helper to exercise each supported op (and the shape-computing
Shape/Gather/Unsqueeze/Concat chains); the shared VNN-COMP and digits files are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from robustbench_mr.errors import UnsupportedLayerError, UserError  # noqa: E402
from robustbench_mr.verifiers.form.chain import Affine, ReLU  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx, network_input_shape, onnxruntime_forward  # noqa: E402

RNG = np.random.default_rng(0)


def _init(name: str, arr: np.ndarray):
    return numpy_helper.from_array(np.asarray(arr), name)


def _save(tmp_path, nodes, inits, in_shape, out_shape, name="m", opset=17, in_dims=None):
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims if in_dims is not None else list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _assert_matches_ort(path, n_samples=5, lo=-1.0, hi=1.0, tol=1e-5):
    net = load_onnx(path)
    x = RNG.uniform(lo, hi, size=(n_samples, net.num_inputs))
    ours = net.forward(x)
    ref = onnxruntime_forward(path, x)
    scale = max(1.0, float(np.abs(ref).max()))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=tol * scale, rtol=0)
    return net


def f32(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def test_conv_batchnorm_transpose_reshape_chain(tmp_path):
    """Conv (stride, pads, dilation, groups) -> BatchNorm -> Relu -> Transpose -> reshape via
    Shape/Gather/Unsqueeze/Concat -> MatMul -> Add -> Mul/Div/Sub by constants -> Relu -> Gemm."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["x1"], name="norm_sub"),
        helper.make_node("Div", ["x1", "std"], ["x2"], name="norm_div"),
        helper.make_node("Conv", ["x2", "W1", "b1"], ["c1"], name="conv1", strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Transpose", ["r1"], ["t1"], name="nchw_to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["t1"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsq"),
        helper.make_node("Concat", ["batch1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["t1", "target"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "W2"], ["m2"], name="matmul"),
        helper.make_node("Add", ["m2", "b2"], ["a2"], name="add"),
        helper.make_node("Mul", ["a2", "k"], ["a3"], name="mul"),
        helper.make_node("Sub", ["c0", "a3"], ["a4"], name="const_minus_x"),
        helper.make_node("Relu", ["a4"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "W3", "b3"], ["y"], name="gemm", transB=1, alpha=0.7, beta=1.3),
    ]
    # input (1, 2, 6, 5); conv: 4 out channels, group 2 -> W (4, 1, 3, 2)
    conv_out_h = (6 + 1 + 2 - 3) // 2 + 1  # 4
    conv_out_w = (5 + 0 + 1 - (2 - 1) * 2 - 1) // 1 + 1  # 4
    n_flat = 4 * conv_out_h * conv_out_w
    inits = [
        _init("mean", np.array([0.1, -0.2], dtype=np.float32).reshape(1, 2, 1, 1)),
        _init("std", np.array([0.5, 2.0], dtype=np.float32).reshape(1, 2, 1, 1)),
        _init("W1", f32(4, 1, 3, 2)), _init("b1", f32(4)),
        _init("bn_s", f32(4)), _init("bn_b", f32(4)), _init("bn_m", f32(4)),
        _init("bn_v", (np.abs(f32(4)) + 0.1).astype(np.float32)),
        _init("zero", np.array(0, dtype=np.int64)), _init("axes0", np.array([0], dtype=np.int64)),
        _init("minus1", np.array([-1], dtype=np.int64)),
        _init("W2", f32(n_flat, 7)), _init("b2", f32(7)), _init("k", f32(7)),
        _init("c0", f32(1, 7)),
        _init("W3", f32(3, 7)), _init("b3", f32(3)),
    ]
    path = _save(tmp_path, nodes, inits, (1, 2, 6, 5), (1, 3), name="chain")
    net = _assert_matches_ort(path)
    assert net.input_shape == (2, 6, 5)
    assert net.relu_widths == [n_flat, 7]
    assert [type(l) for l in net.layers] == [Affine, ReLU, Affine, ReLU, Affine]


def test_flatten_no_batch_dim_and_left_matmul(tmp_path):
    """Input without a batch dim, W @ x (constant on the left), Squeeze/Unsqueeze, Neg, Identity."""
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax1"], ["xc"], name="to_column"),  # (4,) -> (4, 1)
        helper.make_node("MatMul", ["W", "xc"], ["h"], name="left_matmul"),  # (5, 4) @ (4, 1)
        helper.make_node("Squeeze", ["h", "ax1"], ["h1"], name="squeeze"),
        helper.make_node("Neg", ["h1"], ["h2"], name="neg"),
        helper.make_node("Identity", ["h2"], ["h3"], name="id"),
        helper.make_node("Relu", ["h3"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "V"], ["y"], name="out"),
    ]
    inits = [_init("ax1", np.array([1], dtype=np.int64)), _init("W", f32(5, 4)), _init("V", f32(5, 2))]
    path = _save(tmp_path, nodes, inits, (4,), (2,), name="nobatch")
    net = _assert_matches_ort(path)
    assert net.input_shape == (4,)


def test_dynamic_batch_dim_and_same_padding(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv_same", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "V"], ["y"], name="gemm"),
    ]
    inits = [_init("W", f32(3, 1, 3, 3)), _init("V", f32(3, 4))]
    path = _save(tmp_path, nodes, inits, None, ("N", 4), name="dyn", in_dims=["N", 1, 5, 5])
    net = _assert_matches_ort(path)
    assert net.input_shape == (1, 5, 5)


def test_all_unsupported_ops_are_listed_in_one_line(tmp_path):
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], name="pool1", kernel_shape=[2, 2]),
        helper.make_node("Sigmoid", ["p"], ["s"], name="act_sig"),
        helper.make_node("Flatten", ["s"], ["y"], name="flat"),
    ]
    path = _save(tmp_path, nodes, [], (1, 1, 4, 4), (1, 4), name="bad")
    with pytest.raises(UnsupportedLayerError) as err:
        load_onnx(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "MaxPool (node pool1)" in msg and "Sigmoid (node act_sig)" in msg and "Flatten" not in msg


def test_non_affine_patterns_are_refused(tmp_path):
    # x * x is not affine
    nodes = [helper.make_node("Mul", ["x", "x"], ["y"], name="square")]
    with pytest.raises(UnsupportedLayerError, match=r"Mul \(node square\)"):
        load_onnx(_save(tmp_path, nodes, [], (1, 3), (1, 3), name="square"))
    # a skip connection across a ReLU
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "x"], ["y"], name="skip"),
    ]
    with pytest.raises(UnsupportedLayerError, match=r"Add \(node skip\).*residual"):
        load_onnx(_save(tmp_path, nodes, [_init("W", f32(3, 3))], (1, 3), (1, 3), name="skip"))


def test_unreadable_file_is_a_one_line_user_error(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x00not an onnx model")
    with pytest.raises(UserError) as err:
        load_onnx(p)
    assert "junk.onnx" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="no such ONNX file"):
        load_onnx(tmp_path / "missing.onnx")


def test_network_input_shape_drops_only_a_batch_of_one():
    assert network_input_shape((1, 3, 32, 32)) == (3, 32, 32)
    assert network_input_shape((1,)) == (1,)
    assert network_input_shape((1, 784, 1)) == (784, 1)
    assert network_input_shape((5, 2)) == (5, 2)


SHARED_NETS = [
    "vnncomp/test/test_nano.onnx",
    "vnncomp/test/test_tiny.onnx",
    "vnncomp/test/test_small.onnx",
    "vnncomp/test/test_sat.onnx",
    "vnncomp/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx",
    "vnncomp/mnist_fc/onnx/mnist-net_256x2.onnx",
    "vnncomp/oval21/onnx/cifar_base_kw.onnx",
    "digits_reference/digits_mlp_40x40.onnx",
]


@pytest.mark.parametrize("rel", SHARED_NETS)
def test_shared_networks_match_onnxruntime(shared_dir, rel):
    path = shared_dir / "data" / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in shared data")
    # onnxruntime computes in float32: compare at float32 accuracy
    _assert_matches_ort(path, n_samples=3, lo=0.0, hi=1.0, tol=1e-5)


def test_torch_exported_shape_computations_batchnorm_and_pooling(tmp_path):
    """What the TorchScript exporter emits for view(x.size(0), -1) with a dynamic batch
    (Shape/Gather/Unsqueeze/Concat/Reshape), unfolded BatchNormalization, AveragePool, permute."""
    import warnings

    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.pool = nn.AvgPool2d(2, stride=1)
            self.fc = nn.Linear(4 * 5 * 5, 3)

        def forward(self, x):
            h = self.pool(torch.relu(self.bn(self.conv(x)))).permute(0, 2, 3, 1)
            return self.fc(h.reshape(h.size(0), -1)) * 2.0 - 1.0

    torch.manual_seed(0)
    model = Net().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 2, 6, 6),), str(path), dynamo=False, opset_version=11, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, do_constant_folding=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "BatchNormalization", "AveragePool", "Transpose"} <= ops
    net = _assert_matches_ort(path, lo=0.0, hi=1.0)
    xs = torch.rand(4, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model.double()(xs.double()).numpy()
    np.testing.assert_allclose(net.forward(xs.reshape(4, -1).double().numpy()), ref, atol=1e-10, rtol=0)
