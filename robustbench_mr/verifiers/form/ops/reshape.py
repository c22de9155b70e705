"""Reshape (Flatten is a reshape to one dimension): the same values in a new shape."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import torch

from torch import nn

from robustbench_mr.verifiers.form.ops.base import TORCH_MODULES, Backward, Box, Op, imports, register


@register
@dataclass(frozen=True, eq=False)
class Reshape(Op):
    kind = "reshape"
    shape: tuple[int, ...]  # without the batch dimension

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if prod(in_shape) != prod(self.shape):
            raise ValueError(f"cannot reshape {tuple(in_shape)} ({prod(in_shape)} values) to {self.shape}")
        return tuple(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def interval(self, box: Box) -> Box:
        return self.forward(box[0]), self.forward(box[1])

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        return Backward((A.reshape(*A.shape[:2], *box[0].shape[1:]),), 0.0, 0.0)

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        builder.alias(out, ins[0])


@imports(TORCH_MODULES, nn.Flatten)
def _from_flatten(m: nn.Flatten, shape: tuple[int, ...], where: str) -> Op | str:
    if m.start_dim != 1 or m.end_dim != -1:
        return f"{where}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) (only start_dim=1)"
    return Reshape((prod(shape),))
