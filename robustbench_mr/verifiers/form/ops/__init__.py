"""One file per op kind; importing this package registers every op in ``OPS``."""

from __future__ import annotations

import importlib
import pkgutil

from robustbench_mr.verifiers.form.ops.base import ONNX_OPS, OPS, SLACK, TORCH_CALLS, TORCH_MODULES, Backward, Box, Op, register, widen

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

from robustbench_mr.verifiers.form.ops.add import Add  # noqa: E402
from robustbench_mr.verifiers.form.ops.avgpool import AvgPool2d  # noqa: E402
from robustbench_mr.verifiers.form.ops.conv2d import Conv2d  # noqa: E402
from robustbench_mr.verifiers.form.ops.elementwise_affine import ElementwiseAffine  # noqa: E402
from robustbench_mr.verifiers.form.ops.linear import Linear  # noqa: E402
from robustbench_mr.verifiers.form.ops.maxpool import MaxPool2d  # noqa: E402
from robustbench_mr.verifiers.form.ops.relu import ReLU  # noqa: E402
from robustbench_mr.verifiers.form.ops.reshape import Reshape  # noqa: E402

__all__ = ["ONNX_OPS", "OPS", "TORCH_CALLS", "TORCH_MODULES", "SLACK", "Add", "AvgPool2d", "Backward", "Box", "Conv2d", "ElementwiseAffine", "Linear", "MaxPool2d", "Op", "ReLU",
           "Reshape", "register", "widen"]
