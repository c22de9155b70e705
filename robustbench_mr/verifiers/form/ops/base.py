"""The operator interface of the graph form: every op kind is one file in this folder that
defines one ``Op`` subclass with four faces of the same function:

* ``forward(*xs)``: the exact function on a batch (float64 in the verifier);
* ``interval(*boxes)``: a sound output box from input boxes, widened outward by ``SLACK``
  times the magnitude of the sums that produced it (float64 round-off, see ``widen``);
* ``backward(A, *in_boxes, slope=None)``: linear back-substitution (CROWN): given the
  coefficients ``A`` (B, R, *out_shape) of a linear form ``A . out``, return coefficients on
  each input and the constant part such that ``A . out >= sum_i A_i . in_i + const`` holds for
  every input inside ``in_boxes`` (a lower bound; an upper bound is the lower bound of -A);
  ``const_abs`` is the magnitude of the constant terms, for the widening;
* ``milp_rows``: the op's rows in the MILP (``verifiers/milp/graph.py`` asks each op).

A new op kind is a new file here that calls ``register``: the importers, the bound engine,
the MILP and the tests read the registry (``OPS``), never a hand-written list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

SLACK = 1e-9  # relative widening of every bound (float64 round-off of a sum is ~n*1.1e-16 times its magnitude)

Box = tuple[torch.Tensor, torch.Tensor]

OPS: dict[str, type["Op"]] = {}

# Importer hooks: each op kind's file declares which torch modules, torch calls (functions or
# method names) and ONNX ops become it, so a new kind touches only its own file.
#   TORCH_MODULES[module type](module, in_shape, where) -> Op | None (identity) | str (refusal)
#   TORCH_CALLS[target](args, kwargs, in_shape, where) -> Op | str      (args[0] is the tensor)
#   ONNX_OPS[op_type](attrs, in_shape, consts, where) -> Op             (consts[0] is None: the tensor)
TORCH_MODULES: dict[type, Any] = {}
TORCH_CALLS: dict[Any, Any] = {}
ONNX_OPS: dict[str, Any] = {}


def imports(table: dict, *keys: Any) -> Any:
    def deco(fn: Any) -> Any:
        for k in keys:
            if k in table:
                raise ValueError(f"importer for {k!r} registered twice")
            table[k] = fn
        return fn
    return deco


def pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def f64(t: Any) -> torch.Tensor:
    return torch.as_tensor(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=torch.float64).clone()


def onnx_pads(at: dict[str, Any], kernel: tuple[int, int], strides: tuple[int, int], dil: tuple[int, int], spatial: tuple[int, int]) -> tuple[int, int]:
    """Symmetric 2-d padding from ONNX ``pads`` / ``auto_pad`` (asymmetric padding is refused)."""
    auto = at.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for s, k, st, d in zip(spatial, kernel, strides, dil):
            out = -(-s // st)
            total = max(0, (out - 1) * st + d * (k - 1) + 1 - s)
            if total % 2:
                raise ValueError(f"auto_pad={auto} with odd total padding (asymmetric)")
            pads.append(total // 2)
        return (pads[0], pads[1])
    if auto == "VALID":
        return (0, 0)
    p = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
    if p[:2] != p[2:]:
        raise ValueError(f"asymmetric pads {p}")
    return (p[0], p[1])


def register(cls: type["Op"]) -> type["Op"]:
    if not cls.kind or cls.kind in OPS:
        raise ValueError(f"op kind {cls.kind!r} missing or registered twice")
    OPS[cls.kind] = cls
    return cls


def widen(lo: torch.Tensor, hi: torch.Tensor, magnitude: torch.Tensor) -> Box:
    m = SLACK * magnitude
    return lo - m, hi + m


@dataclass(frozen=True)
class Backward:
    """``A . out >= sum_i inputs[i] . in_i + const`` (const, const_abs: (B, R))."""

    inputs: tuple[torch.Tensor | None, ...]
    const: torch.Tensor | float
    const_abs: torch.Tensor | float


@dataclass(frozen=True, eq=False)
class Op:
    kind: ClassVar[str] = ""
    arity: ClassVar[int] = 1
    piecewise: ClassVar[bool] = False  # nonlinear: its relaxation needs the bounds of its inputs

    # -- shape ---------------------------------------------------------------------------
    def out_shape(self, *in_shapes: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    # -- the four faces ------------------------------------------------------------------
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, *boxes: Box) -> Box:
        raise NotImplementedError

    def backward(self, A: torch.Tensor, *in_boxes: Box, slope: torch.Tensor | None = None) -> Backward:
        raise NotImplementedError

    def milp_rows(self, builder: Any, ins: list[Any], out: Any, in_boxes: list[Box], out_box: Box) -> None:
        raise NotImplementedError(f"{self.kind} has no MILP encoding")

    def unit_rows_backward(self, rows: torch.Tensor, batch: int) -> Backward | None:
        """``backward`` of the coefficients ``[e_rows; -e_rows]`` (batch, 2 r, out) without
        building them, for ops where that is a cheap gather (``Linear``: the rows of its weight,
        instead of a product with a one-hot matrix); None: the caller runs ``backward`` on them.
        Only for ops whose backward ignores the input boxes (affine ops)."""
        return None

    # -- helpers -------------------------------------------------------------------------
    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float64) -> "Op":
        """A copy with every tensor field on ``device`` in ``dtype``."""
        changes = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                changes[f.name] = v.to(device=device, dtype=dtype)
        return dataclasses.replace(self, **changes) if changes else self

    def describe(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            parts.append(f"{f.name}={tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{f.name}={v}")
        return f"{self.kind}({', '.join(parts)})"


def rows_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension after the first two (B, R, ...) -> (B, R)."""
    return t.flatten(2).sum(-1)
