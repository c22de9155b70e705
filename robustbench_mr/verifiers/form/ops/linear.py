"""Linear: y = W x + b on feature vectors (in,) -> (out,).

A mostly-zero weight (a convolution the chain importer densified: cifar_small_8px's first
layer is 4096 x 3072 with 1.6% nonzeros) is multiplied as a sparse CSR matrix: the same
float64 sums of the same nonzero terms, so the widening covers its round-off as before, at a
fraction of the dense cost. ``sparse`` picks that: ``None`` decides by the density (at least
``SPARSE_MIN_SIZE`` entries, at most ``SPARSE_DENSITY`` nonzero)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

import torch
from torch import nn

from robustbench_mr.verifiers.form.ops.base import TORCH_MODULES, Backward, Box, Op, f64, imports, register, widen

SPARSE_MIN_SIZE = 4096  # entries; below this a dense product is as fast
SPARSE_DENSITY = 0.25  # fraction of nonzeros at most (the chain engine's rule)


@register
@dataclass(frozen=True, eq=False)
class Linear(Op):
    kind = "linear"
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out,)
    sparse: bool | None = None  # None: by density (module doc)

    def __post_init__(self) -> None:
        use = self.sparse
        if use is None:
            n = self.weight.numel()
            use = n >= SPARSE_MIN_SIZE and int(torch.count_nonzero(self.weight)) <= SPARSE_DENSITY * n
        object.__setattr__(self, "sparse", bool(use))
        object.__setattr__(self, "_csr", None)

    def _mats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W, |W|, W^T) as CSR tensors, built once."""
        if self._csr is None:
            with warnings.catch_warnings():  # torch calls its CSR support beta; matmul with it is exact float64 sums
                warnings.simplefilter("ignore", UserWarning)
                w = self.weight
                object.__setattr__(self, "_csr", (w.to_sparse_csr(), w.abs().to_sparse_csr(), w.T.contiguous().to_sparse_csr()))
        return self._csr

    def _right(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """x @ M.T over the last dim, M = W (0) or |W| (1)."""
        if not self.sparse:
            M = self.weight if which == 0 else self.weight.abs()
            return x @ M.T
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        return (self._mats()[which] @ flat.T).T.reshape(*lead, -1)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(in_shape) != (self.weight.shape[1],):
            raise ValueError(f"linear layer takes ({self.weight.shape[1]},), got {tuple(in_shape)}")
        return (int(self.weight.shape[0]),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sparse and not x.requires_grad:
            return self._right(x, 0) + self.bias
        return x @ self.weight.T + self.bias

    def interval(self, box: Box) -> Box:
        lo, hi = box
        center, radius = (hi + lo) / 2, (hi - lo) / 2
        c = self._right(center, 0) + self.bias
        r = self._right(radius, 1)
        return widen(c - r, c + r, self._right(center.abs() + radius, 1) + self.bias.abs())

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        if self.sparse and not A.requires_grad:
            lead = A.shape[:-1]
            AW = (self._mats()[2] @ A.reshape(-1, A.shape[-1]).T).T.reshape(*lead, -1)
        else:
            AW = A @ self.weight
        return Backward((AW,), A @ self.bias, A.abs() @ self.bias.abs())

    def unit_rows_backward(self, rows: torch.Tensor, batch: int) -> Backward:
        # the exact entries of W[rows] and b[rows]: the same values a product with a one-hot
        # matrix yields, without its cost (the widest layer's CROWN rows cost a gather, not a
        # sparse product per row); concatenated along dim 1 of W[rows]^T, so A is column-major:
        # the layout the sparse product of the next Linear's backward reads fastest, and
        # elementwise ops keep it
        Wt, b = self.weight[rows].T, self.bias[rows]
        A = torch.cat([Wt, -Wt], dim=1).T.unsqueeze(0).expand(batch, -1, -1)
        c = torch.cat([b, -b]).unsqueeze(0).expand(batch, -1)
        return Backward((A,), c, c.abs())

    def matrix(self, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
        return sp.csr_matrix(self.weight.detach().cpu().numpy()), self.bias.detach().cpu().numpy()

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        M, b = self.matrix(())
        builder.affine(out, [(ins[0], M)], b)


@imports(TORCH_MODULES, nn.Linear)
def _from_module(m: nn.Linear, shape: tuple[int, ...], where: str) -> Op:
    return Linear(f64(m.weight), f64(m.bias) if m.bias is not None else torch.zeros(m.out_features, dtype=torch.float64))
