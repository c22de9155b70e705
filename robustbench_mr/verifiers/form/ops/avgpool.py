"""AvgPool2d (zero padding counted, as torch's default): a depthwise convolution with weights
1/(kh*kw), so its four faces are the convolution's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import torch.nn.functional as F
from torch import nn

from robustbench_mr.verifiers.form.ops.base import ONNX_OPS, TORCH_CALLS, TORCH_MODULES, Backward, Box, Op, imports, onnx_pads, pair, register
from robustbench_mr.verifiers.form.ops.conv2d import Conv2d


@register
@dataclass(frozen=True, eq=False)
class AvgPool2d(Op):
    kind = "avgpool2d"
    channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    _conv: Conv2d = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kh, kw = self.kernel
        w = torch.full((self.channels, 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64)
        object.__setattr__(self, "_conv", Conv2d(w, torch.zeros(self.channels, dtype=torch.float64), tuple(self.stride), tuple(self.padding), (1, 1), self.channels))

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float64) -> "AvgPool2d":
        new = AvgPool2d(self.channels, self.kernel, self.stride, self.padding)
        object.__setattr__(new, "_conv", self._conv.to(device, dtype))
        return new

    def describe(self) -> str:
        return f"avgpool2d(kernel={self.kernel}, stride={self.stride}, padding={self.padding})"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(in_shape) != 3 or in_shape[0] != self.channels:
            raise ValueError(f"avgpool2d over {self.channels} channels got {tuple(in_shape)}")
        return self._conv.out_shape(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv.forward(x)

    def interval(self, box: Box) -> Box:
        return self._conv.interval(box)

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        return self._conv.backward(A, box)

    def matrix(self, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
        return self._conv.matrix(in_shape)

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        self._conv.milp_rows(builder, ins, out, in_boxes, out_box)


def adaptive(shape: tuple[int, ...], out_size: Any, where: str) -> Op | str:
    """Adaptive average pooling as a plain one, where the output size divides the input's."""
    if isinstance(out_size, (tuple, list)):
        oh, ow = int(out_size[0] or shape[1]), int(out_size[1] or shape[2])
    else:
        oh, ow = pair(out_size)
    if len(shape) != 3 or shape[1] % oh or shape[2] % ow:
        return f"{where}: adaptive average pooling of {shape} to {(oh, ow)} (only when the size divides)"
    k = (shape[1] // oh, shape[2] // ow)
    return AvgPool2d(shape[0], k, k, (0, 0))


@imports(TORCH_MODULES, nn.AvgPool2d)
def _from_module(m: nn.AvgPool2d, shape: tuple[int, ...], where: str) -> Op | str:
    if m.ceil_mode or not m.count_include_pad or m.divisor_override:
        return f"{where}: AvgPool2d with ceil_mode / count_include_pad=False / divisor_override"
    k = pair(m.kernel_size)
    return AvgPool2d(shape[0], k, pair(m.stride if m.stride is not None else k), pair(m.padding))


@imports(TORCH_MODULES, nn.AdaptiveAvgPool2d)
def _from_adaptive_module(m: nn.AdaptiveAvgPool2d, shape: tuple[int, ...], where: str) -> Op | str:
    return adaptive(shape, m.output_size, where)


@imports(TORCH_CALLS, F.adaptive_avg_pool2d)
def _from_adaptive_call(args: list[Any], kw: dict[str, Any], shape: tuple[int, ...], where: str) -> Op | str:
    return adaptive(shape, args[1] if len(args) > 1 else kw["output_size"], where)


@imports(TORCH_CALLS, F.avg_pool2d)
def _from_call(args: list[Any], kw: dict[str, Any], shape: tuple[int, ...], where: str) -> Op | str:
    if kw.get("ceil_mode") or kw.get("count_include_pad") is False or kw.get("divisor_override"):
        return f"{where}: avg_pool2d with ceil_mode / count_include_pad=False / divisor_override"
    k = pair(args[1] if len(args) > 1 else kw["kernel_size"])
    s = args[2] if len(args) > 2 else kw.get("stride")
    return AvgPool2d(shape[0], k, k if s is None or s == [] else pair(s), pair(args[3] if len(args) > 3 else kw.get("padding", 0)))


@imports(ONNX_OPS, "AveragePool")
def _from_onnx(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    if at.get("ceil_mode", 0):
        raise ValueError("AveragePool with ceil_mode")
    k = pair(at["kernel_shape"])
    s = pair(at.get("strides", [1, 1]))
    p = onnx_pads(at, k, s, (1, 1), shape[1:])
    if any(p) and not at.get("count_include_pad", 0):
        raise ValueError("AveragePool with padding and count_include_pad=0")
    return AvgPool2d(shape[0], k, s, p)


@imports(ONNX_OPS, "GlobalAveragePool")
def _from_onnx_global(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    c, h, w = shape
    return AvgPool2d(c, (h, w), (h, w))
