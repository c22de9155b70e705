"""The light ONNX reader (``form/onnx_proto.py``) against the ``onnx`` package itself: the same model
messages, the same arrays for every supported element type and storage (raw_data or typed
fields), the same attribute values; and a process that imports only the light reader does not
import ``onnx`` (its start-up cost)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from robustbench_mr.verifiers.form import onnx_proto  # noqa: E402

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("raw", [True, False])
def test_to_array_matches_numpy_helper(dtype, raw: bool) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((2, 3, 4)) * 50).astype(dtype)
    if raw:
        t = numpy_helper.from_array(arr, "t")
    else:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        t = helper.make_tensor("t", elem, arr.shape, arr.reshape(-1).tolist() if dtype != np.float16 else arr.reshape(-1).astype(np.float32).tolist())
    ours = onnx_proto.to_array(t)
    ref = numpy_helper.to_array(t)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_attribute_values_match_helper() -> None:
    node = helper.make_node("X", ["a"], ["b"], f=1.5, i=3, s="SAME_UPPER", fs=[1.0, 2.0], ints=[1, 2, 3], t=numpy_helper.from_array(np.ones(2, np.float32)))
    for a in node.attribute:
        ours, ref = onnx_proto.attribute_value(a), helper.get_attribute_value(a)
        if hasattr(ref, "SerializeToString"):
            assert ours.SerializeToString() == ref.SerializeToString()
        else:
            assert ours == ref, a.name


def test_parse_model_matches_onnx_load(shared_dir) -> None:
    paths = sorted((shared_dir / "data" / "vnncomp").glob("*/onnx/*.onnx"))[:3] + sorted((shared_dir / "data" / "vnncomp" / "test").glob("*.onnx"))
    assert paths
    for p in paths:
        ours = onnx_proto.parse_model(p.read_bytes())
        assert ours.SerializeToString() == onnx.load(str(p)).SerializeToString()


def test_the_importer_does_not_import_onnx(shared_dir) -> None:
    p = shared_dir / "data" / "vnncomp" / "test" / "test_small.onnx"
    code = ("import sys; from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx; load_onnx(%r); "
            "print('onnx' in sys.modules, 'ml_dtypes' in sys.modules); import onnx; print(onnx.load(%r).graph.name is not None)") % (str(p), str(p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]  # and a later `import onnx` still works
