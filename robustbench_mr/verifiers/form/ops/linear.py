"""Linear: y = W x + b on feature vectors (in,) -> (out,)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from torch import nn

from robustbench_mr.verifiers.form.ops.base import TORCH_MODULES, Backward, Box, Op, f64, imports, register, widen


@register
@dataclass(frozen=True, eq=False)
class Linear(Op):
    kind = "linear"
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(in_shape) != (self.weight.shape[1],):
            raise ValueError(f"linear layer takes ({self.weight.shape[1]},), got {tuple(in_shape)}")
        return (int(self.weight.shape[0]),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias

    def interval(self, box: Box) -> Box:
        lo, hi = box
        center, radius = (hi + lo) / 2, (hi - lo) / 2
        aw = self.weight.abs()
        c = center @ self.weight.T + self.bias
        r = radius @ aw.T
        return widen(c - r, c + r, (center.abs() + radius) @ aw.T + self.bias.abs())

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        return Backward((A @ self.weight,), A @ self.bias, A.abs() @ self.bias.abs())

    def matrix(self, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
        return sp.csr_matrix(self.weight.detach().cpu().numpy()), self.bias.detach().cpu().numpy()

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        M, b = self.matrix(())
        builder.affine(out, [(ins[0], M)], b)


@imports(TORCH_MODULES, nn.Linear)
def _from_module(m: nn.Linear, shape: tuple[int, ...], where: str) -> Op:
    return Linear(f64(m.weight), f64(m.bias) if m.bias is not None else torch.zeros(m.out_features, dtype=torch.float64))
