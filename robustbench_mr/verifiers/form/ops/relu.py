"""ReLU: y = max(x, 0). Relaxation over [l, u] (CROWN / DeepPoly): upper chord
u (x - l) / (u - l) on unstable neurons; lower line slope * x with slope in [0, 1] (any such
slope is sound; the default takes 1 where u > -l, the smaller area; alpha-CROWN optimizes it).
MILP: the big-M rows of ``milp/relu_encoding.py`` (the one place a ReLU becomes constraints),
binaries only on unstable neurons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import torch.nn.functional as F
from torch import nn

from robustbench_mr.verifiers.form.ops.base import ONNX_OPS, TORCH_CALLS, TORCH_MODULES, Backward, Box, Op, imports, register


def relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(default lower slope, upper slope, upper intercept, unstable mask) of relu over [lo, hi]."""
    active = lo >= 0
    unstable = (lo < 0) & (hi > 0)
    denom = torch.where(unstable, hi - lo, torch.ones_like(lo))
    chord = hi / denom
    up_slope = torch.where(unstable, chord, active.to(lo.dtype))
    up_icpt = torch.where(unstable, -lo * chord, torch.zeros_like(lo))
    lo_slope = torch.where(active | (unstable & (hi > -lo)), torch.ones_like(lo), torch.zeros_like(lo))
    return lo_slope, up_slope, up_icpt, unstable


class _RelaxedBox(tuple):
    """A box (lo, hi) that carries its relaxation's terms (``relaxed``)."""

    parts: tuple[torch.Tensor, ...]


def _parts(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What ``ReLU.backward`` reads of the relaxation over [lo, hi], shaped for (B, R, n) rows:
    default lower slope, upper slope, upper intercept, unstable mask, and up_slope max(|lo|, |hi|)."""
    lo_slope, up_slope, up_icpt, unstable = relaxation(lo, hi)
    mag = (up_slope * torch.maximum(lo.abs(), hi.abs())).flatten(1).unsqueeze(-1)
    return lo_slope.unsqueeze(1), up_slope.unsqueeze(1), up_icpt.flatten(1).unsqueeze(-1), unstable.unsqueeze(1), mag


def relaxed(box: Box) -> Box:
    """``box`` with its relaxation computed once, for a caller that back-substitutes through the
    same boxes many times (bab's iterations: the relaxation was a tenth of their time)."""
    out = _RelaxedBox(box)
    out.parts = _parts(*box)
    return out


@register
@dataclass(frozen=True, eq=False)
class ReLU(Op):
    kind = "relu"
    piecewise = True

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0)

    def interval(self, box: Box) -> Box:
        return torch.clamp(box[0], min=0), torch.clamp(box[1], min=0)  # exact in floating point

    def backward(self, A: torch.Tensor, box: Box, slope: torch.Tensor | None = None) -> Backward:
        # lo, hi (B, *shape): shared by every row
        parts = box.parts if isinstance(box, _RelaxedBox) else _parts(*box)
        lo_slope, up_slope, up_icpt, unstable, mag = parts
        if slope is not None:  # alpha: free lower slopes of the unstable neurons
            # value clamped to [0, 1] (sound), gradient passed straight through (clamp's own
            # gradient is 0 at the ends, where the default slopes start)
            lo_slope = torch.where(unstable, slope + (slope.clamp(0, 1) - slope).detach(), lo_slope)
        neg = A.clamp(max=0)
        # pos * lo_slope + neg * up_slope, with pos = A - neg
        A_in = torch.addcmul(A * lo_slope, neg, up_slope - lo_slope)
        # the constant terms, each a (B, R, n) x (B, n) contraction: gap = neg . up_icpt (<= 0
        # term by term) and the magnitude of every value this relaxation sums, |neg| up_slope
        # max(|lo|, |hi|) (its round-off is covered by the widening) plus |gap|
        negf = neg.flatten(2)
        gap = torch.matmul(negf, up_icpt).squeeze(-1)
        spread = torch.matmul(negf, mag).squeeze(-1)
        return Backward((A_in,), gap, -gap - spread)

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        builder.relu(out, ins[0], in_boxes[0])


@imports(TORCH_MODULES, nn.ReLU)
def _from_module(m: nn.Module, shape: tuple[int, ...], where: str) -> Op:
    return ReLU()


@imports(TORCH_CALLS, F.relu, torch.relu, "relu", "relu_")
def _from_call(args: list[Any], kw: dict[str, Any], shape: tuple[int, ...], where: str) -> Op:
    return ReLU()


@imports(ONNX_OPS, "Relu")
def _from_onnx(at: dict[str, Any], shape: tuple[int, ...], consts: list[Any], where: str) -> Op:
    return ReLU()
