"""ONNX file -> ``Graph``: an explicit registry of ONNX op handlers (``HANDLERS``); every
unsupported op is named in one error; only the sub-graph reaching the output is read (the
chain importer's ``_live_nodes``), constants (shape arithmetic, weights) are folded with
numpy, and every input-dependent tensor becomes a graph node. The input's leading batch axis
of size 1 (when present) is dropped, as in the chain importer."""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_mr.errors import UnsupportedLayerError, UserError
from robustbench_mr.verifiers.form.graph import Graph, build
from robustbench_mr.verifiers.form.ops import ONNX_OPS, Add, ElementwiseAffine, Linear, Op, Reshape


class _T:
    """An input-dependent tensor: graph node ``index`` with ONNX shape ``(1, *shape)`` when
    the graph is batched, else ``shape``."""

    def __init__(self, index: int) -> None:
        self.index = index


class _Ctx:
    def __init__(self, input_shape: tuple[int, ...], batched: bool) -> None:
        self.ops: list[tuple[str, Op, tuple[int, ...]]] = []
        self.shapes: list[tuple[int, ...]] = [input_shape]
        self.batched = batched

    def add(self, name: str, op: Op, *ins: _T) -> _T:
        shape = op.out_shape(*[self.shapes[t.index] for t in ins])
        self.ops.append((name, op, tuple(t.index for t in ins)))
        self.shapes.append(tuple(int(s) for s in shape))
        return _T(len(self.shapes) - 1)

    def onnx_shape(self, t: _T) -> tuple[int, ...]:
        return ((1,) if self.batched else ()) + self.shapes[t.index]

    def internal(self, onnx_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.batched:
            if not onnx_shape or onnx_shape[0] != 1:
                raise ValueError(f"the batch axis must stay first (got shape {onnx_shape})")
            return tuple(onnx_shape[1:])
        return tuple(onnx_shape)


Handler = Callable[[Any, list[Any], dict[str, Any], _Ctx, str], Any]
HANDLERS: dict[str, Handler] = {}  # structural ops (arithmetic, shapes, matrix products); op kinds add theirs (ONNX_OPS)


def _op_kind_handler(op_type: str) -> Handler:
    """An op file's ONNX importer (``ONNX_OPS``), applied to the first input (the tensor)."""
    def h(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
        if not ins or not isinstance(ins[0], _T) or any(isinstance(v, _T) for v in ins[1:]):
            raise ValueError(f"{op_type} must read one input-dependent tensor first and constants after it")
        return ctx.add(name, ONNX_OPS[op_type](at, ctx.shapes[ins[0].index], [None] + list(ins[1:]), name), ins[0])
    return h


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def _f64(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _const_for(ctx: _Ctx, t: _T, c: np.ndarray) -> torch.Tensor:
    """A constant broadcast against tensor t, without t's batch axis."""
    c = np.asarray(c, dtype=np.float64)
    full = ctx.onnx_shape(t)
    if c.ndim > len(full):
        raise ValueError(f"constant of shape {c.shape} broadcasts beyond the tensor {full}")
    c = c.reshape((1,) * (len(full) - c.ndim) + c.shape)
    if ctx.batched:
        if c.shape[0] != 1:
            raise ValueError(f"constant of shape {c.shape} varies along the batch axis")
        c = c[0]
    np.broadcast_shapes(c.shape, ctx.shapes[t.index])
    return _f64(c)


@handles("Identity", "Dropout")
def _identity(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    return ins[0]


@handles("Constant")
def _constant(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    from robustbench_mr.verifiers.form.onnx_proto import to_array

    for k in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if k in at:
            v = at[k]
            return to_array(v) if hasattr(v, "dims") else np.asarray(v)
    raise ValueError("Constant without a value")


@handles("Add", "Sub", "Mul", "Div")
def _binary(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    a, b = ins
    op = node.op_type
    if not isinstance(a, _T) and not isinstance(b, _T):
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a, b)
    if isinstance(a, _T) and isinstance(b, _T):
        if op not in ("Add", "Sub"):
            raise ValueError(f"{op} of two input-dependent tensors is not piecewise linear")
        return ctx.add(name, Add(1.0 if op == "Add" else -1.0), a, b)
    t, c = (a, b) if isinstance(a, _T) else (b, a)
    c = _const_for(ctx, t, c)
    one, zero = torch.ones(()), torch.zeros(())
    if op == "Add":
        ea = ElementwiseAffine(one.double(), c)
    elif op == "Sub":
        ea = ElementwiseAffine(one.double(), -c) if t is a else ElementwiseAffine(-one.double(), c)
    elif op == "Mul":
        ea = ElementwiseAffine(c, zero.double())
    else:
        if t is not a:
            raise ValueError("division by an input-dependent tensor is not piecewise linear")
        ea = ElementwiseAffine(1.0 / c, zero.double())
    return ctx.add(name, ea, t)


@handles("Neg")
def _neg(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    if not isinstance(ins[0], _T):
        return -np.asarray(ins[0])
    return ctx.add(name, ElementwiseAffine(-torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)), ins[0])


def _linear(ctx: _Ctx, name: str, t: _T, W: np.ndarray, b: np.ndarray | None) -> _T:
    """y = x W + b over the last axis of a feature vector (W: (in, out))."""
    if len(ctx.shapes[t.index]) != 1:
        raise ValueError(f"a matrix product over a tensor of shape {ctx.onnx_shape(t)} (only feature vectors)")
    W = np.asarray(W, dtype=np.float64)
    bias = np.zeros(W.shape[1]) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64).reshape(-1), (W.shape[1],))
    return ctx.add(name, Linear(_f64(W.T.copy()), _f64(bias.copy())), t)


@handles("Gemm")
def _gemm(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    x, W = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    if not isinstance(x, _T) or isinstance(W, _T) or isinstance(b, _T):
        raise ValueError("Gemm must read the input-dependent tensor as A and constants as B and C")
    if at.get("transA", 0):
        raise ValueError("Gemm with transA=1")
    W = np.asarray(W, dtype=np.float64)
    W = W.T if at.get("transB", 0) else W
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    return _linear(ctx, name, x, alpha * W, None if b is None else beta * np.asarray(b, dtype=np.float64))


@handles("MatMul")
def _matmul(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    x, W = ins
    if not isinstance(x, _T) and not isinstance(W, _T):
        return np.matmul(x, W)
    if not isinstance(x, _T) or isinstance(W, _T) or np.asarray(W).ndim != 2:
        raise ValueError("MatMul must multiply the input-dependent tensor on the left by a constant matrix")
    return _linear(ctx, name, x, W, None)


@handles("Flatten")
def _flatten(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    x = ins[0]
    axis = int(at.get("axis", 1))
    if not isinstance(x, _T):
        a = np.asarray(x)
        return a.reshape(int(prod(a.shape[:axis])), -1)
    full = ctx.onnx_shape(x)
    axis = axis % len(full) if axis < 0 else axis
    return ctx.add(name, Reshape(ctx.internal((int(prod(full[:axis])), int(prod(full[axis:]))))), x)


@handles("Reshape")
def _reshape(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    x, target = ins[0], [int(v) for v in np.asarray(ins[1]).reshape(-1)]
    if isinstance(ins[1], _T):
        raise ValueError("the target shape depends on the input")
    full = ctx.onnx_shape(x) if isinstance(x, _T) else np.asarray(x).shape
    out = [full[i] if v == 0 and not at.get("allowzero", 0) else v for i, v in enumerate(target)]
    if -1 in out:
        known = int(prod(v for v in out if v != -1))
        out[out.index(-1)] = int(prod(full)) // known
    if not isinstance(x, _T):
        return np.asarray(x).reshape(out)
    return ctx.add(name, Reshape(ctx.internal(tuple(out))), x)


# constant folding for the shape arithmetic exporters emit
def _const_only(fn: Callable[..., Any]) -> Handler:
    def h(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
        if any(isinstance(v, _T) for v in ins):
            raise ValueError(f"{node.op_type} of an input-dependent tensor")
        return fn(ins, at)
    return h


def _axes(ins: list[Any], at: dict[str, Any]) -> list[int]:
    return [int(v) for v in (np.asarray(ins[1]).reshape(-1) if len(ins) > 1 and ins[1] is not None else at.get("axes", []))]


for _name in ONNX_OPS:
    HANDLERS.setdefault(_name, _op_kind_handler(_name))

HANDLERS["Gather"] = _const_only(lambda ins, at: np.take(np.asarray(ins[0]), np.asarray(ins[1]).astype(np.int64), axis=int(at.get("axis", 0))))
HANDLERS["Concat"] = _const_only(lambda ins, at: np.concatenate([np.atleast_1d(np.asarray(v)) for v in ins], axis=int(at["axis"])))
HANDLERS["Cast"] = _const_only(lambda ins, at: np.asarray(ins[0]))
HANDLERS["Unsqueeze"] = _const_only(lambda ins, at: np.expand_dims(np.asarray(ins[0]), tuple(_axes(ins, at))))
HANDLERS["Squeeze"] = _const_only(lambda ins, at: np.squeeze(np.asarray(ins[0]), tuple(_axes(ins, at)) or None))


@handles("Shape")
def _shape(node, ins, at, ctx, name):  # noqa: ANN001,ANN202
    shape = ctx.onnx_shape(ins[0]) if isinstance(ins[0], _T) else np.asarray(ins[0]).shape
    return np.asarray(shape, dtype=np.int64)[int(at.get("start", 0)):at.get("end")]


def load_onnx_graph(path: str | Path) -> Graph:
    """The graph form of an ONNX file (float64). One ``UnsupportedLayerError`` names every
    unsupported op of the live sub-graph; unreadable files are one ``UserError`` line."""
    from robustbench_mr.verifiers.form.chain_from_onnx import _check_finite_constants, network_input_shape, read_live_graph
    from robustbench_mr.verifiers.form.onnx_proto import attribute_value, to_array

    p, model, output, nodes, in_name, in_shape = read_live_graph(path, HANDLERS)
    outputs = [output]
    _check_finite_constants(model, nodes, p)
    shape = network_input_shape(in_shape)
    ctx = _Ctx(shape, batched=len(in_shape) >= 2 and in_shape[0] == 1)
    env: dict[str, Any] = {t.name: to_array(t) for t in model.graph.initializer}
    env[in_name] = _T(0)
    for i, node in nodes:
        label = node.name or f"#{i}"
        try:
            ins = [env[n] if n else None for n in node.input]
        except KeyError as exc:
            raise UserError(f"{p}: node {label} ({node.op_type}) reads {exc.args[0]!r}, which nothing computes") from None
        at = {a.name: attribute_value(a) for a in node.attribute}
        try:
            out = HANDLERS[node.op_type](node, ins, at, ctx, label)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise UnsupportedLayerError(f"{p}: {node.op_type} (node {label}) cannot be imported: {exc}") from None
        env[node.output[0]] = out
    out = env.get(outputs[0])
    if not isinstance(out, _T):
        raise UnsupportedLayerError(f"{p}: the output {outputs[0]!r} does not depend on the input")
    if out.index == 0:
        ctx.add("output", Reshape(ctx.shapes[0]), out)
        out = _T(len(ctx.shapes) - 1)
    return build(shape, ctx.ops, out.index, str(p))
