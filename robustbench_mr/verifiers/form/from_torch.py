"""torch ``nn.Module`` -> ``Graph``, by tracing its forward with ``torch.fx``.

Layer modules that an op file imports (``TORCH_MODULES``: Linear, Conv2d, BatchNorm in eval
mode, ReLU, Flatten, AvgPool2d, AdaptiveAvgPool2d, MaxPool2d, the project's Normalize) are
kept whole, Identity and Dropout vanish, any other module is traced through, so residual blocks (``out + shortcut``),
``F.relu``, ``torch.flatten``, ``x.view(x.size(0), -1)`` and arithmetic with constant tensors
become graph ops. Weights are copied to float64: the graph is the float64 function of the
model's weights. Every unsupported call is named in one ``UnsupportedLayerError``.
"""

from __future__ import annotations

import operator
from math import prod
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from robustbench_mr.errors import UnsupportedLayerError
from robustbench_mr.verifiers.form.graph import Graph, build
from robustbench_mr.verifiers.form.ops import TORCH_CALLS, TORCH_MODULES, Add, ElementwiseAffine, Op, Reshape
from robustbench_mr.verifiers.form.ops.base import f64

IDENTITIES = (nn.Identity, nn.Dropout)


class _Tracer(fx.Tracer):
    """Modules some op file imports (``TORCH_MODULES``) stay whole; others are traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, tuple(TORCH_MODULES) + IDENTITIES) or super().is_leaf_module(m, qualname)


class _Builder:
    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.ops: list[tuple[str, Op, tuple[int, ...]]] = []
        self.shapes: list[tuple[int, ...]] = [tuple(input_shape)]
        self.errors: list[str] = []

    def add(self, name: str, op: Op, ins: tuple[int, ...]) -> int:
        shape = op.out_shape(*[self.shapes[j] for j in ins])
        self.ops.append((name, op, ins))
        self.shapes.append(tuple(shape))
        return len(self.shapes) - 1


def _module_op(m: nn.Module, shape: tuple[int, ...], where: str) -> Op | None | str:
    """The op of a leaf module (from the op files' ``TORCH_MODULES``); None for identity; a
    string: why it is refused."""
    if isinstance(m, IDENTITIES):
        return None
    for cls in type(m).__mro__:
        if cls in TORCH_MODULES:
            return TORCH_MODULES[cls](m, shape, where)
    return f"{where}: {type(m).__name__}"


def from_torch(model: nn.Module, input_shape: tuple[int, ...], source: str = "") -> Graph:
    """The graph of ``model`` (put in eval mode on a copy) on inputs of ``input_shape``."""
    import copy

    work = copy.deepcopy(model).eval()
    try:
        traced = _Tracer().trace(work)
    except Exception as exc:  # noqa: BLE001 - data-dependent control flow etc.
        raise UnsupportedLayerError(f"cannot trace {type(model).__name__} with torch.fx: {type(exc).__name__}: {exc}") from None
    modules = dict(work.named_modules())
    b = _Builder(input_shape)
    val: dict[fx.Node, Any] = {}  # fx node -> graph node index, ("const", tensor), ("batch",) or a python value

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return val.get(a)
        if isinstance(a, (tuple, list)):
            return type(a)(arg(v) for v in a)
        return a

    def const_of(v: Any) -> torch.Tensor | None:
        if isinstance(v, tuple) and v and v[0] == "const":
            return v[1]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return torch.tensor(float(v), dtype=torch.float64)
        return None

    def affine_const(name: str, x: int, c: torch.Tensor, how: str) -> int:
        shape = b.shapes[x]
        c = c.to(torch.float64)
        while c.dim() > len(shape):  # drop a leading batch dim of 1
            if c.shape[0] != 1:
                raise ValueError(f"constant of shape {tuple(c.shape)} has a batch dimension")
            c = c[0]
        one, zero = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        scale, shift = {"add": (one, c), "sub": (one, -c), "rsub": (-one, c), "mul": (c, zero), "div": (1.0 / c, zero)}[how]
        return b.add(name, ElementwiseAffine(scale, shift), (x,))

    def reshape_target(x: int, dims: list[Any]) -> tuple[int, ...] | None:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        if not dims or not (dims[0] == ("batch",) or dims[0] == -1 or isinstance(dims[0], int)):
            return None
        rest = [int(d) for d in dims[1:]]
        n = prod(b.shapes[x])
        if rest.count(-1) > 1:
            return None
        if -1 in rest:
            known = prod(d for d in rest if d != -1)
            rest[rest.index(-1)] = n // known if known else 0
        return tuple(rest)

    for node in traced.nodes:
        where = f"{node.op} {node.target if isinstance(node.target, str) else getattr(node.target, '__name__', node.target)} ({node.name})"
        try:
            if node.op == "placeholder":
                if val:
                    b.errors.append(f"{where}: a second input")
                val[node] = 0
            elif node.op == "get_attr":
                t = work
                for part in str(node.target).split("."):
                    t = getattr(t, part)
                val[node] = ("const", f64(t)) if isinstance(t, torch.Tensor) else t
            elif node.op == "call_module":
                x = arg(node.args[0])
                if not isinstance(x, int):
                    b.errors.append(f"{where}: applied to a non-tensor")
                    continue
                op = _module_op(modules[node.target], b.shapes[x], f"module {node.target} ({type(modules[node.target]).__name__})")
                if isinstance(op, str):
                    b.errors.append(op)
                    val[node] = x
                elif op is None:
                    val[node] = x
                else:
                    val[node] = b.add(node.name, op, (x,))
            elif node.op in ("call_function", "call_method"):
                val[node] = _call(node, where, arg, const_of, affine_const, reshape_target, b)
            elif node.op == "output":
                out = arg(node.args[0])
                if not isinstance(out, int):
                    b.errors.append(f"{where}: the output is not one tensor")
                    out = len(b.shapes) - 1
                output = out
        except (ValueError, RuntimeError) as exc:
            b.errors.append(f"{where}: {exc}")
            val[node] = None
    if b.errors:
        raise UnsupportedLayerError(f"cannot verify {type(model).__name__}: unsupported: " + "; ".join(b.errors))
    return build(tuple(input_shape), b.ops, output, source or type(model).__name__)


_ADD = {operator.add, torch.add, operator.iadd, "add", "add_", "__add__", "__iadd__"}
_SUB = {operator.sub, torch.sub, "sub", "__sub__"}
_MUL = {operator.mul, torch.mul, "mul", "__mul__"}
_DIV = {operator.truediv, torch.div, "div", "__truediv__"}
_FLAT = {torch.flatten, "flatten"}
_VIEW = {"view", "reshape", torch.reshape}


def _call(node: fx.Node, where: str, arg: Any, const_of: Any, affine_const: Any, reshape_target: Any, b: _Builder) -> Any:
    t = node.target
    args = [arg(a) for a in node.args]
    kw = {k: arg(v) for k, v in node.kwargs.items()}
    if t == "size" and args and isinstance(args[0], int):
        dim = args[1] if len(args) > 1 else kw.get("dim")
        if dim == 0:
            return ("batch",)
        return b.shapes[args[0]][dim - 1] if isinstance(dim, int) and dim > 0 else None
    if t in ("contiguous", "clone", "detach", "float", "double") or t is torch.nn.functional.dropout:
        return args[0]
    if t in TORCH_CALLS and args and isinstance(args[0], int):
        op = TORCH_CALLS[t](args, kw, b.shapes[args[0]], where)
        if isinstance(op, str):
            b.errors.append(op)
            return args[0]
        return b.add(node.name, op, (args[0],))
    if t in _FLAT:
        start = args[1] if len(args) > 1 else kw.get("start_dim", 0 if t is torch.flatten else 0)
        end = args[2] if len(args) > 2 else kw.get("end_dim", -1)
        if start != 1 or end != -1:
            b.errors.append(f"{where}: flatten(start_dim={start}, end_dim={end}) (only start_dim=1)")
            return args[0]
        return b.add(node.name, Reshape((prod(b.shapes[args[0]]),)), (args[0],))
    if t in _VIEW:
        target = reshape_target(args[0], args[1:] if "shape" not in kw else [kw["shape"]])
        if target is None:
            b.errors.append(f"{where}: reshape to {args[1:]} (the batch dimension must stay first)")
            return args[0]
        return b.add(node.name, Reshape(target), (args[0],))
    for group, how in ((_ADD, "add"), (_SUB, "sub"), (_MUL, "mul"), (_DIV, "div")):
        if t in group:
            x, y = args[0], args[1] if len(args) > 1 else kw.get("other")
            if "alpha" in kw:
                b.errors.append(f"{where}: add/sub with alpha")
                return x
            if isinstance(x, int) and isinstance(y, int):
                if how in ("add", "sub"):
                    return b.add(node.name, Add(1.0 if how == "add" else -1.0), (x, y))
                b.errors.append(f"{where}: {how} of two input-dependent tensors is not piecewise linear")
                return x
            if isinstance(x, int) and const_of(y) is not None:
                return affine_const(node.name, x, const_of(y), how)
            if isinstance(y, int) and const_of(x) is not None and how in ("add", "mul", "sub"):
                return affine_const(node.name, y, const_of(x), {"add": "add", "mul": "mul", "sub": "rsub"}[how])
            b.errors.append(f"{where}: {how} of {type(x).__name__} and {type(y).__name__}")
            return x if isinstance(x, int) else y
    b.errors.append(where)
    return args[0] if args and isinstance(args[0], int) else None
