"""MaxPool2d: y = max over each window (padding never wins, as in torch).

Interval: the max of the lower and of the upper ends (exact). Relaxation: the lower line is
the window's input with the largest lower bound (any single input is below the max); the
upper line is that same input when its lower bound is at least every other input's upper
bound (then it is the max), else the constant max of the upper bounds. MILP: the exact
encoding y >= x_j, y <= x_j + (U - l_j)(1 - d_j), sum_j d_j = 1 with binaries d, skipped where
one input provably wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torch import nn

from robustbench_mr.verifiers.form.ops.base import ONNX_OPS, TORCH_CALLS, TORCH_MODULES, Backward, Box, Op, imports, onnx_pads, pair, register, rows_sum
from robustbench_mr.verifiers.form.ops.conv2d import conv_out_size


@register
@dataclass(frozen=True, eq=False)
class MaxPool2d(Op):
    kind = "maxpool2d"
    piecewise = True
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(in_shape) != 3:
            raise ValueError(f"maxpool2d takes (C, H, W), got {tuple(in_shape)}")
        c, h, w = in_shape
        if any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            raise ValueError(f"maxpool2d padding {self.padding} exceeds half the kernel {self.kernel}")
        ho = conv_out_size(h, self.kernel[0], self.stride[0], self.padding[0], 1)
        wo = conv_out_size(w, self.kernel[1], self.stride[1], self.padding[1], 1)
        if ho < 1 or wo < 1:
            raise ValueError(f"maxpool2d output would be empty for {tuple(in_shape)}")
        return (c, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)

    def interval(self, box: Box) -> Box:
        return self.forward(box[0]), self.forward(box[1])

    def window_index(self, in_shape: tuple[int, ...]) -> np.ndarray:
        """(kh*kw, Ho*Wo) flat input positions h*W+w of each window, -1 for padding."""
        _, h, w = in_shape
        _, ho, wo = self.out_shape(in_shape)
        kh, kw = self.kernel
        oh, ow, ih_k, iw_k = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw), indexing="ij")
        ih = oh * self.stride[0] - self.padding[0] + ih_k
        iw = ow * self.stride[1] - self.padding[1] + iw_k
        idx = np.where((ih >= 0) & (ih < h) & (iw >= 0) & (iw < w), ih * w + iw, -1)
        return idx.reshape(ho * wo, kh * kw).T.copy()

    def _windows(self, t: torch.Tensor, fill: float) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, kh*kw, Ho*Wo), padding filled with ``fill``."""
        B, C = t.shape[:2]
        idx = torch.as_tensor(self.window_index(tuple(t.shape[1:])), device=t.device)
        flat = torch.cat([t.reshape(B, C, -1), torch.full((B, C, 1), fill, dtype=t.dtype, device=t.device)], dim=2)
        return flat[:, :, torch.where(idx < 0, flat.shape[2] - 1, idx)]

    def selection(self, box: Box) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flat input index of the selected input (B, C, L), exact mask, max upper (B, C, L), window index)."""
        lo, hi = box
        wl = self._windows(lo, -float("inf"))
        wh = self._windows(hi, -float("inf"))
        sel = wl.argmax(dim=2, keepdim=True)  # (B, C, 1, L)
        l_sel = wl.gather(2, sel)
        others = wh.scatter(2, sel, -float("inf"))
        exact = (l_sel >= others.max(dim=2, keepdim=True).values).squeeze(2)
        u_max = wh.max(dim=2).values
        idx = torch.as_tensor(self.window_index(tuple(lo.shape[1:])), device=lo.device)  # (K, L)
        flat_sel = idx.gather(0, sel.squeeze(2).reshape(-1, idx.shape[1])).reshape(sel.shape[0], sel.shape[1], -1)
        return flat_sel, exact, u_max, idx

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        B, R, C = A.shape[:3]
        in_shape = box[0].shape[1:]
        flat_sel, exact, u_max, _ = self.selection(box)
        A = A.reshape(B, R, C, -1)
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        exact_e = exact.unsqueeze(1).to(A.dtype)
        to_input = pos + neg * exact_e  # coefficient on the selected input
        const = neg * (1 - exact_e) * u_max.unsqueeze(1)  # the constant upper line where not exact
        A_in = torch.zeros(B, R, C, in_shape[1] * in_shape[2], dtype=A.dtype, device=A.device)
        A_in.scatter_add_(3, flat_sel.unsqueeze(1).expand(B, R, C, -1), to_input)
        return Backward((A_in.reshape(B, R, *in_shape),), rows_sum(const), rows_sum(const.abs()))

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        lo, hi = (t[0].reshape(t.shape[1], -1).cpu().numpy() for t in in_boxes[0])  # (C, H*W), one box
        in_cols = ins[0].reshape(lo.shape)
        out_cols = out.reshape(lo.shape[0], -1)
        idx = self.window_index(tuple(in_boxes[0][0].shape[1:]))  # (K, L)
        for c in range(lo.shape[0]):
            for o in range(idx.shape[1]):
                j = idx[:, o][idx[:, o] >= 0]
                lj, uj, xj = lo[c, j], hi[c, j], in_cols[c, j]
                y = out_cols[c, o]
                best = int(np.argmax(lj))
                if lj[best] >= np.max(np.delete(uj, best), initial=-np.inf):  # one input provably wins: y = x_best
                    builder.row([y, xj[best]], [1.0, -1.0], 0.0, 0.0)
                    continue
                cand = uj >= lj[best]  # an input whose upper end is below another's lower end is never the max
                U = float(np.max(uj))
                d = builder.new_cols(np.zeros(int(cand.sum())), np.ones(int(cand.sum())), integer=True)
                for k, (x, l_k) in enumerate(zip(xj[cand], lj[cand])):
                    builder.row([y, x], [1.0, -1.0], 0.0, np.inf)  # y >= x_j
                    builder.row([y, x, d[k]], [1.0, -1.0, U - l_k], -np.inf, U - l_k)  # y <= x_j + (U - l_j)(1 - d_j)
                for x in xj[~cand]:
                    builder.row([y, x], [1.0, -1.0], 0.0, np.inf)
                builder.row(list(d), [1.0] * len(d), 1.0, 1.0)  # exactly one input is the max


@imports(TORCH_MODULES, nn.MaxPool2d)
def _from_module(m: nn.MaxPool2d, shape: tuple[int, ...], where: str) -> Op | str:
    if m.ceil_mode or pair(m.dilation) != (1, 1) or m.return_indices:
        return f"{where}: MaxPool2d with ceil_mode, dilation or return_indices"
    k = pair(m.kernel_size)
    return MaxPool2d(k, pair(m.stride if m.stride is not None else k), pair(m.padding))


@imports(TORCH_CALLS, F.max_pool2d)
def _from_call(args: list[Any], kw: dict[str, Any], shape: tuple[int, ...], where: str) -> Op | str:
    if kw.get("ceil_mode") or kw.get("return_indices") or pair(kw.get("dilation", 1)) != (1, 1):
        return f"{where}: max_pool2d with ceil_mode, dilation or return_indices"
    k = pair(args[1] if len(args) > 1 else kw["kernel_size"])
    s = args[2] if len(args) > 2 else kw.get("stride")
    return MaxPool2d(k, k if s is None or s == [] else pair(s), pair(args[3] if len(args) > 3 else kw.get("padding", 0)))


@imports(ONNX_OPS, "MaxPool")
def _from_onnx(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    if at.get("ceil_mode", 0) or any(int(v) != 1 for v in at.get("dilations", [1, 1])):
        raise ValueError("MaxPool with ceil_mode or dilations")
    k = pair(at["kernel_shape"])
    s = pair(at.get("strides", [1, 1]))
    return MaxPool2d(k, s, onnx_pads(at, k, s, (1, 1), shape[1:]))
