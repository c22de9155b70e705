"""Add: y = a + b of two tensors of one shape (the residual connection; Sub is a - b)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import scipy.sparse as sp
import numpy as np
import torch

from robustbench_mr.verifiers.form.ops.base import Backward, Box, Op, register, widen


@register
@dataclass(frozen=True, eq=False)
class Add(Op):
    kind = "add"
    arity = 2
    sign_b: float = 1.0  # -1: subtraction

    def out_shape(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(a) != tuple(b):
            raise ValueError(f"add of tensors of shapes {tuple(a)} and {tuple(b)}")
        return tuple(a)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + self.sign_b * b

    def interval(self, box_a: Box, box_b: Box) -> Box:
        (la, ha), (lb, hb) = box_a, box_b
        if self.sign_b < 0:
            lb, hb = -hb, -lb
        mag = torch.maximum(la.abs(), ha.abs()) + torch.maximum(lb.abs(), hb.abs())
        return widen(la + lb, ha + hb, mag)

    def backward(self, A: torch.Tensor, box_a: Box, box_b: Box, slope: torch.Tensor | None = None) -> Backward:
        return Backward((A, A * self.sign_b), 0.0, 0.0)

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        n = int(np.prod(in_boxes[0][0].shape[1:]))
        eye = sp.identity(n, format="csr")
        builder.affine(out, [(ins[0], eye), (ins[1], self.sign_b * eye)], np.zeros(n))
