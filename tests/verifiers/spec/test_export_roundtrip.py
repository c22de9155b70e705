"""torch -> ONNX -> network form must reproduce the torch model; our VNN-LIB writer must read
back as exactly the Property we verify; the export commands write a runnable benchmark."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from robustbench_mr.checkpoint import metadata_for, save_checkpoint  # noqa: E402
from robustbench_mr.cli.eval import main as mr_eval  # noqa: E402
from robustbench_mr.cli.export_cmd import parse_indices  # noqa: E402
from robustbench_mr.data import load_dataset  # noqa: E402
from robustbench_mr.errors import UnsupportedLayerError, UserError  # noqa: E402
from robustbench_mr.models import build_model  # noqa: E402
from robustbench_mr.verifiers.spec.export import counterexample_text, export_onnx, robustness_vnnlib, write_result  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx, onnxruntime_forward  # noqa: E402
from robustbench_mr.verifiers.spec.property import robustness_property  # noqa: E402
from robustbench_mr.verifiers.spec.vnnlib import parse_vnnlib_text, read_vnnlib  # noqa: E402

# (arch, input_shape, kwargs): every architecture the chain-form verifier supports
CHAIN_ARCHS = [
    ("mlp", (1, 8, 8), {}),
    ("mlp", (3, 6, 6), {"hidden": (16, 8, 8)}),
    ("small", (1, 8, 8), {"hidden": 32}),
    ("small", (3, 16, 16), {"hidden": 20}),
]


def _model(arch, shape, kwargs, seed=0):
    torch.manual_seed(seed)
    c = shape[0]
    m = build_model(arch, input_shape=shape, num_classes=10, mean=[0.3 + 0.1 * i for i in range(c)], std=[0.2 + 0.05 * i for i in range(c)], **kwargs)
    return m.eval()


@pytest.mark.parametrize("arch, shape, kwargs", CHAIN_ARCHS)
def test_torch_onnx_network_outputs_match(tmp_path, arch, shape, kwargs):
    model = _model(arch, shape, kwargs)
    path = export_onnx(model, shape, tmp_path / "m.onnx")
    net = load_onnx(path)
    assert net.input_shape == shape
    x = torch.rand((8, *shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y_torch = model(x.double().float()).double().numpy()
        y_torch64 = model.double()(x.double()).numpy()
    flat = x.reshape(8, -1).double().numpy()
    np.testing.assert_allclose(net.forward(flat), y_torch, atol=1e-5, rtol=0)
    np.testing.assert_allclose(net.forward(flat), y_torch64, atol=1e-9, rtol=0)  # exact up to float64 rounding
    np.testing.assert_allclose(onnxruntime_forward(path, flat), y_torch, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch, shape, kwargs", CHAIN_ARCHS[:3])
def test_onnx_import_agrees_with_torch_import(tmp_path, arch, shape, kwargs):
    torch_import = pytest.importorskip("robustbench_mr.verifiers.form.chain_from_torch", reason="verifier engineer's from_torch not present yet")
    model = _model(arch, shape, kwargs, seed=3)
    a = torch_import.from_torch(model, shape)
    b = load_onnx(export_onnx(model, shape, tmp_path / "m.onnx"))
    assert a.relu_widths == b.relu_widths
    x = np.random.default_rng(0).uniform(0, 1, (6, b.num_inputs))
    np.testing.assert_allclose(a.forward(x), b.forward(x), atol=1e-9, rtol=0)


def test_residual_network_exports_but_is_refused_by_the_chain_importer(tmp_path):
    model = _model("large", (1, 8, 8), {})
    path = export_onnx(model, (1, 8, 8), tmp_path / "large.onnx")
    x = torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).double().numpy()
    np.testing.assert_allclose(onnxruntime_forward(path, x.reshape(2, -1).numpy()), y, atol=1e-5, rtol=0)
    with pytest.raises(UnsupportedLayerError, match="residual"):
        load_onnx(path)


def test_robustness_vnnlib_reads_back_as_the_same_property():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 20)
    x[:3] = [0.0, 1.0, 0.01]  # clipping at both ends
    eps = 8 / 255
    ref = robustness_property(x, 4, eps, 7)
    text = robustness_vnnlib(ref.lower, ref.upper, 4, 7, comment="two\nlines")
    (back,) = parse_vnnlib_text(text, "r.vnnlib", num_inputs=20, num_outputs=7)
    assert np.array_equal(back.lower, ref.lower) and np.array_equal(back.upper, ref.upper)  # bit-exact floats
    got = sorted(tuple(c.C[0]) + tuple(c.d) for c in back.clauses)
    want = sorted(tuple(c.C[0]) + tuple(c.d) for c in ref.clauses)
    assert got == want


def test_counterexample_format_round_trips():
    x = np.array([0.1, 1 / 3, -2.5e-9])
    y = np.array([1e10, -0.0])
    text = counterexample_text(x, y)
    assert text.startswith("((X_0 ") and text.rstrip().endswith(")")
    pairs = re.findall(r"\((X|Y)_(\d+) ([^()\s]+)\)", text)
    assert [(k, int(i)) for k, i, _ in pairs] == [("X", 0), ("X", 1), ("X", 2), ("Y", 0), ("Y", 1)]
    assert [float(v) for *_, v in pairs] == list(x) + list(y)


def test_result_file_has_status_then_witness(tmp_path):
    p = write_result(tmp_path / "r.txt", "sat", np.array([0.5]), np.array([1.0, 2.0]))
    lines = p.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 0.5)")
    assert write_result(tmp_path / "u.txt", "unsat").read_text() == "unsat\n"


def test_parse_indices():
    assert parse_indices("0..3") == [0, 1, 2, 3]
    assert parse_indices("7") == [7]
    assert parse_indices("5,1,3..4,1") == [1, 3, 4, 5]
    for bad in ("3..1", "a", "1,,2", "-1", "1..x"):
        with pytest.raises(UserError):
            parse_indices(bad)


def test_export_commands_write_a_runnable_benchmark(tmp_path, capsys):
    meta = metadata_for("small", "digits", {"hidden": 16})
    torch.manual_seed(0)
    model = build_model("small", hidden=16, input_shape=meta.input_shape, num_classes=meta.num_classes, mean=meta.mean, std=meta.std)
    ckpt = save_checkpoint(tmp_path / "c.pt", model, meta)

    assert mr_eval(["export", str(ckpt), str(tmp_path / "m.onnx")]) == 0
    net = load_onnx(tmp_path / "m.onnx")
    x, y = load_dataset("digits", "test")
    x = np.asarray(x)
    with torch.no_grad():
        ref = model.eval()(torch.as_tensor(x[:5])).double().numpy()
    np.testing.assert_allclose(net.forward(x[:5].reshape(5, -1)), ref, atol=1e-5)

    out = tmp_path / "props"
    assert mr_eval(["export-vnnlib", str(ckpt), "--eps", "8/255", "--index", "0..2,10", "--dir", str(out), "--timeout", "30"]) == 0
    rows = (out / "instances.csv").read_text().split()
    assert len(rows) == 4 and all(r.startswith("model.onnx,prop_") and r.endswith(",30") for r in rows)
    eps = 8 / 255
    for row, i in zip(rows, [0, 1, 2, 10]):
        (prop,) = read_vnnlib(out / row.split(",")[1], net.num_inputs, net.num_outputs)
        ref_prop = robustness_property(x[i].reshape(-1), int(np.asarray(y)[i]), eps, 10)
        assert np.array_equal(prop.lower, ref_prop.lower) and np.array_equal(prop.upper, ref_prop.upper)
        assert len(prop.clauses) == 9

    assert mr_eval(["export-vnnlib", str(ckpt), "--eps", "8/255", "--index", "296..297", "--dir", str(out)]) == 1
    assert "past the end" in capsys.readouterr().err
