"""Conv2d, kept as a convolution (any stride, padding, dilation, groups): (C, H, W) -> (C', H', W')."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from torch import nn

from robustbench_mr.verifiers.form.ops.base import (ONNX_OPS, TORCH_MODULES, Backward, Box, Op, f64, imports, onnx_pads, pair, register, rows_sum,
                                                    widen)


def conv_out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@register
@dataclass(frozen=True, eq=False)
class Conv2d(Op):
    kind = "conv2d"
    weight: torch.Tensor  # (C_out, C_in / groups, kh, kw)
    bias: torch.Tensor  # (C_out,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(in_shape) != 3:
            raise ValueError(f"conv2d takes (C, H, W) inputs, got {tuple(in_shape)}")
        c, h, w = in_shape
        co, ci, kh, kw = self.weight.shape
        if c != ci * self.groups or co % self.groups:
            raise ValueError(f"conv2d weight {tuple(self.weight.shape)} with groups={self.groups} does not take {c} channels")
        ho = conv_out_size(h, kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = conv_out_size(w, kw, self.stride[1], self.padding[1], self.dilation[1])
        if ho < 1 or wo < 1:
            raise ValueError(f"conv2d output would be empty for input {tuple(in_shape)}")
        return (int(co), int(ho), int(wo))

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight, self.bias)

    def interval(self, box: Box) -> Box:
        lo, hi = box
        center, radius = (hi + lo) / 2, (hi - lo) / 2
        aw = self.weight.abs()
        c = self._conv(center, self.weight, self.bias)
        r = self._conv(radius, aw, None)
        mag = self._conv(center.abs() + radius, aw, self.bias.abs())
        return widen(c - r, c + r, mag)

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        B, R = A.shape[:2]
        in_shape = box[0].shape[1:]
        out = A.reshape(B * R, *A.shape[2:])
        kh, kw = self.weight.shape[2:]
        op = []
        for d, k in ((0, kh), (1, kw)):
            full = (out.shape[2 + d] - 1) * self.stride[d] - 2 * self.padding[d] + self.dilation[d] * (k - 1) + 1
            op.append(in_shape[1 + d] - full)
        A_in = F.conv_transpose2d(out, self.weight, None, self.stride, self.padding, tuple(op), self.groups, self.dilation)
        A_in = A_in.reshape(B, R, *in_shape)
        bias_map = self.bias.view(1, 1, -1, 1, 1)
        return Backward((A_in,), rows_sum(A * bias_map), rows_sum(A.abs() * bias_map.abs()))

    def matrix(self, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
        """The convolution as a sparse (out, in) matrix and its bias per output (for the MILP)."""
        c, h, w = in_shape
        co, ho, wo = self.out_shape(in_shape)
        W = self.weight.detach().cpu().numpy()
        cig, kh, kw = W.shape[1:]
        og = co // self.groups
        o_c, o_h, o_w, k_c, k_h, k_w = np.meshgrid(np.arange(co), np.arange(ho), np.arange(wo), np.arange(cig), np.arange(kh), np.arange(kw), indexing="ij")
        ih = o_h * self.stride[0] - self.padding[0] + k_h * self.dilation[0]
        iw = o_w * self.stride[1] - self.padding[1] + k_w * self.dilation[1]
        ic = (o_c // og) * cig + k_c
        ok = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
        rows = ((o_c * ho + o_h) * wo + o_w)[ok]
        cols = ((ic * h + ih) * w + iw)[ok]
        vals = W[o_c[ok], k_c[ok], k_h[ok], k_w[ok]]
        M = sp.csr_matrix((vals, (rows, cols)), shape=(co * ho * wo, c * h * w))
        M.sum_duplicates()
        b = np.repeat(self.bias.detach().cpu().numpy(), ho * wo)
        return M, b

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        M, b = self.matrix(tuple(in_boxes[0][0].shape[1:]))
        builder.affine(out, [(ins[0], M)], b)


@imports(TORCH_MODULES, nn.Conv2d)
def _from_module(m: nn.Conv2d, shape: tuple[int, ...], where: str) -> Op | str:
    bias = f64(m.bias) if m.bias is not None else torch.zeros(m.out_channels, dtype=torch.float64)
    if m.padding_mode != "zeros":
        return f"{where}: Conv2d with padding_mode={m.padding_mode!r} (only zero padding)"
    if m.padding == "valid":
        pad = (0, 0)
    elif m.padding == "same":
        if any(d * (k - 1) % 2 for d, k in zip(m.dilation, m.kernel_size)):
            return f"{where}: Conv2d padding='same' with an even kernel (asymmetric padding)"
        pad = tuple((d * (k - 1)) // 2 for d, k in zip(m.dilation, m.kernel_size))
    else:
        pad = pair(m.padding)
    return Conv2d(f64(m.weight), bias, pair(m.stride), pad, pair(m.dilation), m.groups)


@imports(ONNX_OPS, "Conv")
def _from_onnx(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    if consts[1] is None or (len(consts) > 2 and consts[2] is None and False):
        raise ValueError("Conv needs constant weights")
    W = np.asarray(consts[1], dtype=np.float64)
    if W.ndim != 4:
        raise ValueError(f"only 2-d convolutions (weight of shape {W.shape})")
    strides = pair(at.get("strides", [1, 1]))
    dil = pair(at.get("dilations", [1, 1]))
    pads = onnx_pads(at, (W.shape[2], W.shape[3]), strides, dil, shape[1:])
    b = consts[2] if len(consts) > 2 and consts[2] is not None else np.zeros(W.shape[0])
    return Conv2d(f64(W), f64(np.asarray(b, dtype=np.float64).reshape(-1)), strides, pads, dil, int(at.get("group", 1)))
