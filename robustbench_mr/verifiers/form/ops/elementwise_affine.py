"""Elementwise affine y = scale * x + shift with constants broadcast over the input shape:
BatchNorm in eval mode, the input Normalize, ONNX Mul/Div/Sub/Add by a constant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from torch import nn

from robustbench_mr.models.layers import Normalize
from robustbench_mr.verifiers.form.ops.base import ONNX_OPS, TORCH_MODULES, Backward, Box, Op, f64, imports, register, rows_sum, widen


@register
@dataclass(frozen=True, eq=False)
class ElementwiseAffine(Op):
    kind = "elementwise_affine"
    scale: torch.Tensor  # broadcastable to the input shape (no batch dim)
    shift: torch.Tensor

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            shape = torch.broadcast_shapes(tuple(in_shape), tuple(self.scale.shape), tuple(self.shift.shape))
        except RuntimeError as exc:
            raise ValueError(f"scale {tuple(self.scale.shape)} / shift {tuple(self.shift.shape)} do not broadcast to {tuple(in_shape)}") from exc
        if tuple(shape) != tuple(in_shape):
            raise ValueError(f"scale {tuple(self.scale.shape)} / shift {tuple(self.shift.shape)} would change the shape {tuple(in_shape)}")
        return tuple(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def interval(self, box: Box) -> Box:
        lo, hi = box
        a, b = lo * self.scale + self.shift, hi * self.scale + self.shift
        mag = torch.maximum(lo.abs(), hi.abs()) * self.scale.abs() + self.shift.abs()
        return widen(torch.minimum(a, b), torch.maximum(a, b), mag)

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        shift = self.shift.expand(box[0].shape[1:])
        return Backward((A * self.scale,), rows_sum(A * shift), rows_sum(A.abs() * shift.abs()))

    def then(self, other: "ElementwiseAffine") -> "ElementwiseAffine":
        return ElementwiseAffine(self.scale * other.scale, self.shift * other.scale + other.shift)

    def matrix(self, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
        s = self.scale.expand(in_shape).reshape(-1).detach().cpu().numpy()
        t = self.shift.expand(in_shape).reshape(-1).detach().cpu().numpy()
        return sp.diags(s, format="csr"), t

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        M, b = self.matrix(tuple(in_boxes[0][0].shape[1:]))
        builder.affine(out, [(ins[0], M)], b)


def _per_channel(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return v.reshape(-1, *([1] * (len(shape) - 1)))


@imports(TORCH_MODULES, nn.BatchNorm1d, nn.BatchNorm2d)
def _from_batchnorm(m: nn.Module, shape: tuple[int, ...], where: str) -> Op | str:
    if m.training or m.running_mean is None:
        return f"{where}: BatchNorm without running statistics (or in training mode) is not affine"
    var, mean = f64(m.running_var), f64(m.running_mean)
    w = f64(m.weight) if m.weight is not None else torch.ones_like(var)
    b = f64(m.bias) if m.bias is not None else torch.zeros_like(var)
    scale = w / torch.sqrt(var + m.eps)
    return ElementwiseAffine(_per_channel(scale, shape), _per_channel(b - mean * scale, shape))


@imports(TORCH_MODULES, Normalize)
def _from_normalize(m: Normalize, shape: tuple[int, ...], where: str) -> Op:
    std, mean = f64(m.std).reshape(-1), f64(m.mean).reshape(-1)
    return ElementwiseAffine(_per_channel(1.0 / std, shape), _per_channel(-mean / std, shape))


@imports(ONNX_OPS, "BatchNormalization")
def _from_onnx(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    scale, bias, mean, var = (np.asarray(c, dtype=np.float64) for c in consts[1:5])
    s = scale / np.sqrt(var + float(at.get("epsilon", 1e-5)))
    return ElementwiseAffine(_per_channel(f64(s), shape), _per_channel(f64(bias - mean * s), shape))
