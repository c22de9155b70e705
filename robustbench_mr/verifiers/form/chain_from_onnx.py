"""ONNX import: a feed-forward ReLU network in ONNX becomes the verifier's :class:`Network`.

How it works: the graph is evaluated once, symbolically, in topological order. Every tensor
is either a *constant* (initializers, Constant nodes and everything computed only from them,
including the Shape/Gather/Unsqueeze/Concat chains that compute reshape targets: constant
folding) or an *affine expression* of the current layer's variables::

    value (flattened, row-major) = v @ M + c        v: the variables after the last ReLU

with ``M`` dense ``(num_vars, num_elements)`` float64 (``None`` = identity, so reshapes of
the input cost nothing) and ``c`` the constant part with the tensor's shape. Linear ops
(Gemm, MatMul, Add/Sub/Mul/Div by constants, Conv, BatchNormalization, Flatten, Reshape,
Transpose, Squeeze/Unsqueeze, Identity) update ``M`` and ``c`` exactly; Conv pushes the
identity basis through the convolution (a batch of ``num_vars`` images) in float64. A Relu
closes the current affine map (one ``Affine`` layer), emits a ``ReLU`` and starts a new
identity expression over its outputs. The result is built with :func:`network.chain`.

Only chains are representable: adding two expressions from different ReLU layers (a
residual connection), multiplying two variable tensors, or any op outside the registry is
refused with one line that names every offending op and node.

Only the sub-graph that reaches the graph output is imported (dead nodes are dropped), and
every input-dependent tensor remembers the ReLU layer it lives in: a node that reads a tensor
from before the last ReLU (a branch or skip) is refused, never composed into a different function.
MatMul follows numpy/ONNX semantics exactly (1-D operands, broadcast batch axes).

The file is read with the ``onnx`` package's generated protobuf classes (``form/onnx_proto.py``, without importing the whole package: start-up); ``onnxruntime`` is used only by :func:`onnxruntime_forward`
to cross-check outputs and confirm counterexamples on the original file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_mr.errors import UnsupportedLayerError, UserError
from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU, chain


# --------------------------------------------------------------------------------------
# values flowing through the graph


@dataclass(frozen=True, eq=False)
class Expr:
    """An affine expression of the current layer's variables with tensor shape ``shape``."""

    shape: tuple[int, ...]
    M: np.ndarray | None  # (num_vars, prod(shape)); None = identity (num_vars == prod(shape))
    c: np.ndarray  # constant part, shape ``shape``
    num_vars: int
    layer: int  # how many ReLUs precede these variables (expressions mix only within a layer)

    def dense_M(self) -> np.ndarray:
        if self.M is None:
            _check_dense(self.num_vars, self.num_vars)
            return np.eye(self.num_vars)
        return self.M

    def batched_M(self) -> np.ndarray:
        """M as a batch of ``num_vars`` tensors of shape ``shape`` (the image of each basis vector)."""
        return self.dense_M().reshape((self.num_vars, *self.shape))

    def with_linear(self, M: np.ndarray, c: np.ndarray) -> "Expr":
        c = np.asarray(c, dtype=np.float64)
        _check_dense(self.num_vars, int(c.size))
        return Expr(tuple(c.shape), M.reshape(self.num_vars, -1), c, self.num_vars, self.layer)

    def reshaped(self, shape: tuple[int, ...]) -> "Expr":
        # row-major reshapes never change the flat order: only the shape changes
        return Expr(tuple(shape), self.M, self.c.reshape(shape), self.num_vars, self.layer)


Value = Expr | np.ndarray

# The network form is dense: refuse (one line) rather than exhaust memory on a big model.
MAX_DENSE_ENTRIES = 150_000_000  # 1.2 GB of float64


def _check_dense(rows: int, cols: int) -> None:
    if rows * cols > MAX_DENSE_ENTRIES:
        raise _NodeError(
            f"would need a dense {rows} x {cols} matrix ({rows * cols * 8 / 1e9:.1f} GB); "
            "the network is too large for the dense network form of the exact verifier"
        )


class _NodeError(Exception):
    """A node that uses a supported op in a way that cannot be encoded (becomes one line)."""


@dataclass
class _Ctx:
    """What handlers need besides their inputs: the layers closed so far."""

    parts: list[Affine | ReLU]
    layer: int = 0


Handler = Callable[[Any, list[Value | None], dict[str, Any], _Ctx], list[Value]]

# --------------------------------------------------------------------------------------
# helpers


def _attrs(node: Any) -> dict[str, Any]:
    from robustbench_mr.verifiers.form.onnx_proto import attribute_value

    return {a.name: attribute_value(a) for a in node.attribute}


def _is_const(v: Value | None) -> bool:
    return isinstance(v, np.ndarray)


def _const(v: Value | None, what: str) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise _NodeError(f"{what} must be a constant")
    return v


def _broadcast_expr(e: Expr, other_shape: tuple[int, ...]) -> Expr:
    """``e`` broadcast to the common shape with ``other_shape`` (copies M if it grows)."""
    shape = tuple(np.broadcast_shapes(e.shape, other_shape))
    if shape == e.shape:
        return e
    # left-pad e's own shape with 1s first, so the leading num_vars axis never meets a new axis
    Mb = e.batched_M().reshape((e.num_vars, *(1,) * (len(shape) - len(e.shape)), *e.shape))
    M = np.broadcast_to(Mb, (e.num_vars, *shape)).reshape(e.num_vars, -1).copy()
    return Expr(shape, M, np.broadcast_to(e.c, shape).copy(), e.num_vars, e.layer)


def _scale(e: Expr, k: np.ndarray) -> Expr:
    """e * k elementwise, k a constant broadcastable to e."""
    e = _broadcast_expr(e, k.shape)
    k = np.broadcast_to(k, e.shape)
    if e.M is None:
        _check_dense(e.num_vars, e.num_vars)
        M = np.diag(k.reshape(-1).astype(np.float64))
    else:
        M = e.M * k.reshape(1, -1)
    return Expr(e.shape, M, e.c * k, e.num_vars, e.layer)


def _shift(e: Expr, k: np.ndarray) -> Expr:
    e = _broadcast_expr(e, k.shape)
    return Expr(e.shape, e.M, e.c + k, e.num_vars, e.layer)


def _add_exprs(a: Expr, b: Expr, sign: float) -> Expr:
    if a.layer != b.layer or a.num_vars != b.num_vars:
        raise _NodeError("adds tensors from different ReLU layers (a residual/skip connection); only chains of affine maps and ReLUs can be imported")
    shape = tuple(np.broadcast_shapes(a.shape, b.shape))
    a, b = _broadcast_expr(a, shape), _broadcast_expr(b, shape)
    return Expr(shape, a.dense_M() + sign * b.dense_M(), a.c + sign * b.c, a.num_vars, a.layer)


def _linear_map(e: Expr, fn: Callable[[np.ndarray], np.ndarray], fn_const: Callable[[np.ndarray], np.ndarray] | None = None) -> Expr:
    """Apply a linear map ``fn`` (batched over the leading axis) to the linear part and
    ``fn_const`` (default ``fn``; may add a bias) to the constant part."""
    Mb = fn(e.batched_M())
    c = (fn_const or fn)(e.c[None])[0]
    return e.with_linear(Mb, c)


def _to_float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) if a.dtype.kind == "f" else a


# --------------------------------------------------------------------------------------
# op handlers: (node, inputs, attrs, ctx) -> outputs


def _h_identity(node, ins, at, ctx):
    return [ins[0]]


def _h_constant(node, ins, at, ctx):
    from robustbench_mr.verifiers.form.onnx_proto import to_array

    if "value" in at:
        return [_to_float(to_array(at["value"]))]
    for key in ("value_float", "value_int"):
        if key in at:
            return [np.array(at[key], dtype=np.float64 if key == "value_float" else np.int64)]
    for key in ("value_floats", "value_ints"):
        if key in at:
            return [np.array(list(at[key]), dtype=np.float64 if key == "value_floats" else np.int64)]
    raise _NodeError("Constant without a numeric value")


def _binary(op: str) -> Handler:
    def handler(node, ins, at, ctx):
        a, b = ins[0], ins[1]
        if _is_const(a) and _is_const(b):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None}[op]
            if op == "Div":
                if a.dtype.kind in "iu" and b.dtype.kind in "iu":
                    return [np.floor_divide(a, b)]  # integer shape arithmetic
                return [np.true_divide(a, b)]
            return [fn(a, b)]
        if op == "Add":
            if isinstance(a, Expr) and isinstance(b, Expr):
                return [_add_exprs(a, b, 1.0)]
            e, k = (a, b) if isinstance(a, Expr) else (b, a)
            return [_shift(e, k.astype(np.float64))]
        if op == "Sub":
            if isinstance(a, Expr) and isinstance(b, Expr):
                return [_add_exprs(a, b, -1.0)]
            if isinstance(a, Expr):
                return [_shift(a, -b.astype(np.float64))]
            return [_shift(_scale(b, np.array(-1.0)), a.astype(np.float64))]
        if op == "Mul":
            if isinstance(a, Expr) and isinstance(b, Expr):
                raise _NodeError("multiplies two tensors that depend on the input (not affine)")
            e, k = (a, b) if isinstance(a, Expr) else (b, a)
            return [_scale(e, k.astype(np.float64))]
        # Div
        if not isinstance(a, Expr) or isinstance(b, Expr):
            raise _NodeError("divides by a tensor that depends on the input (not affine)")
        k = b.astype(np.float64)
        if np.any(k == 0):
            raise _NodeError("divides by zero")
        e = _broadcast_expr(a, k.shape)
        kb = np.broadcast_to(k, e.shape)
        if e.M is None:
            _check_dense(e.num_vars, e.num_vars)
            M = np.diag(1.0 / kb.reshape(-1))
        else:
            M = e.M / kb.reshape(1, -1)
        return [Expr(e.shape, M, e.c / kb, e.num_vars, e.layer)]

    return handler


def _h_neg(node, ins, at, ctx):
    x = ins[0]
    return [-x if _is_const(x) else _scale(x, np.array(-1.0))]


def _h_relu(node, ins, at, ctx):
    x = ins[0]
    if _is_const(x):
        return [np.maximum(x, 0)]
    ctx.parts.append(Affine(np.ascontiguousarray(x.dense_M().T), x.c.reshape(-1)))
    ctx.parts.append(ReLU())
    ctx.layer += 1
    n = int(prod(x.shape))
    return [Expr(x.shape, None, np.zeros(x.shape), n, ctx.layer)]


def _matmul_expr(e: Expr, W: np.ndarray, expr_left: bool) -> Expr:
    """``e @ W`` (``expr_left``) or ``W @ e`` with numpy/ONNX MatMul semantics: 1-D operands
    get a 1 prepended (left) or appended (right) that is removed again, and the batch axes
    (all but the last two) broadcast against each other."""
    a_shape, w_shape = e.shape, W.shape
    if len(a_shape) == 0 or len(w_shape) == 0:
        raise _NodeError("MatMul of a scalar is not defined")
    zeros = lambda shp: np.broadcast_to(np.zeros(1), shp)  # noqa: E731 - a free zero view, for the reference shape
    try:
        out_shape = (np.matmul(zeros(a_shape), zeros(w_shape)) if expr_left else np.matmul(zeros(w_shape), zeros(a_shape))).shape
    except ValueError as exc:
        raise _NodeError(f"operands of shapes {a_shape if expr_left else w_shape} and {w_shape if expr_left else a_shape} do not multiply ({exc})") from None
    nv = e.num_vars
    Mb = e.batched_M()  # (nv, *a_shape)
    e1 = len(a_shape) == 1
    w1 = len(w_shape) == 1
    if expr_left:
        A = Mb[:, None, :] if e1 else Mb  # (nv, ..., m, K)
        W2 = W[:, None] if w1 else W  # (..., K, n)
        # batch axes of the variable operand padded to at least W's, so nv stays an extra leading axis
        pad = max(0, (W2.ndim - 2) - (A.ndim - 3))
        A = A.reshape((nv, *(1,) * pad, *A.shape[1:]))
        out = np.matmul(A, W2)
        if w1:
            out = out[..., 0]
        if e1:
            out = out[..., 0, :] if not w1 else out[..., 0]
        c = np.matmul(e.c, W)
    else:
        W2 = W[None, :] if w1 else W  # (..., m, K)
        B = Mb[..., None] if e1 else Mb  # (nv, ..., K, n)
        pad = max(0, (W2.ndim - 2) - (B.ndim - 3))
        B = B.reshape((nv, *(1,) * pad, *B.shape[1:]))
        out = np.matmul(W2, B)
        if e1:
            out = out[..., 0]
        if w1:
            out = out[..., 0, :] if not e1 else out[..., 0]
        c = np.matmul(W, e.c)
    if tuple(out.shape[1:]) != tuple(out_shape) or tuple(np.shape(c)) != tuple(out_shape):
        raise _NodeError(f"internal shape mismatch: built {tuple(out.shape[1:])}, MatMul gives {tuple(out_shape)}")
    return e.with_linear(np.ascontiguousarray(out), np.asarray(c, dtype=np.float64))


def _h_matmul(node, ins, at, ctx):
    a, b = ins[0], ins[1]
    if _is_const(a) and _is_const(b):
        return [np.matmul(a, b)]
    if isinstance(a, Expr) and isinstance(b, Expr):
        raise _NodeError("multiplies two tensors that depend on the input (not affine)")
    if isinstance(a, Expr):
        return [_matmul_expr(a, b.astype(np.float64), expr_left=True)]
    return [_matmul_expr(b, a.astype(np.float64), expr_left=False)]


def _h_gemm(node, ins, at, ctx):
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 and ins[2] is not None else None
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    if isinstance(b, Expr) or (c is not None and isinstance(c, Expr)):
        raise _NodeError("has an input-dependent B or C operand (only A may depend on the input)")
    B = b.astype(np.float64)
    if at.get("transB", 0):
        B = B.T
    bias = 0.0 if c is None else beta * c.astype(np.float64)
    if _is_const(a):
        A = a.astype(np.float64).T if at.get("transA", 0) else a.astype(np.float64)
        return [alpha * A @ B + bias]
    if len(a.shape) != 2:
        raise _NodeError(f"A operand has shape {a.shape}; Gemm needs a matrix")
    if at.get("transA", 0):
        a = _linear_map(a, lambda t: np.swapaxes(t, -1, -2))
    out_shape = (a.shape[0], B.shape[1])
    Mb = alpha * np.matmul(a.batched_M(), B)
    const = alpha * a.c @ B + np.broadcast_to(bias, out_shape)
    return [a.with_linear(Mb, const)]


def _h_flatten(node, ins, at, ctx):
    x = ins[0]
    shape = x.shape
    axis = int(at.get("axis", 1))
    if axis < 0:
        axis += len(shape)
    new = (int(prod(shape[:axis])), int(prod(shape[axis:])))
    return [x.reshape(new) if _is_const(x) else x.reshaped(new)]


def _reshape_target(shape: tuple[int, ...], target: np.ndarray, allowzero: bool) -> tuple[int, ...]:
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    if not allowzero:
        t = [shape[i] if v == 0 else v for i, v in enumerate(t)]
    if t.count(-1) > 1:
        raise _NodeError("reshape target has more than one -1")
    if -1 in t:
        known = int(prod(v for v in t if v != -1))
        t[t.index(-1)] = int(prod(shape)) // max(known, 1)
    if int(prod(t)) != int(prod(shape)):
        raise _NodeError(f"cannot reshape {tuple(shape)} to {tuple(t)}")
    return tuple(t)


def _h_reshape(node, ins, at, ctx):
    x = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        target = _const(ins[1], "the reshape target")
    elif "shape" in at:  # opset < 5
        target = np.array(at["shape"])
    else:
        raise _NodeError("has no target shape")
    new = _reshape_target(tuple(x.shape), target, bool(at.get("allowzero", 0)))
    return [x.reshape(new) if _is_const(x) else x.reshaped(new)]


def _h_transpose(node, ins, at, ctx):
    x = ins[0]
    perm = at.get("perm")
    perm = tuple(int(p) for p in perm) if perm is not None else tuple(reversed(range(len(x.shape))))
    if _is_const(x):
        return [np.transpose(x, perm)]
    # a general transpose permutes the flat order: permute the columns of M
    idx = np.arange(int(prod(x.shape))).reshape(x.shape).transpose(perm).reshape(-1)
    new_shape = tuple(x.shape[p] for p in perm)
    M = x.dense_M()[:, idx] if not _is_flat_noop(x.shape, perm) else x.M
    return [Expr(new_shape, M, np.transpose(x.c, perm).copy(), x.num_vars, x.layer)]


def _is_flat_noop(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True if the permutation only moves size-1 axes (the flat order is unchanged)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def _axes(ins: list[Value | None], at: dict[str, Any]) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(v) for v in _const(ins[1], "axes").reshape(-1)]
    if "axes" in at:
        return [int(v) for v in at["axes"]]
    return None


def _h_unsqueeze(node, ins, at, ctx):
    x = ins[0]
    axes = _axes(ins, at)
    if axes is None:
        raise _NodeError("has no axes")
    shape = list(x.shape)
    rank = len(shape) + len(axes)
    for a in sorted(a + rank if a < 0 else a for a in axes):
        shape.insert(a, 1)
    return [x.reshape(shape) if _is_const(x) else x.reshaped(tuple(shape))]


def _h_squeeze(node, ins, at, ctx):
    x = ins[0]
    axes = _axes(ins, at)
    shape = list(x.shape)
    if axes is None:
        new = [d for d in shape if d != 1]
    else:
        axes = {a + len(shape) if a < 0 else a for a in axes}
        if any(shape[a] != 1 for a in axes):
            raise _NodeError("squeezes an axis whose size is not 1")
        new = [d for i, d in enumerate(shape) if i not in axes]
    return [x.reshape(new) if _is_const(x) else x.reshaped(tuple(new))]


def _h_shape(node, ins, at, ctx):
    shape = np.array(ins[0].shape, dtype=np.int64)
    start, end = at.get("start"), at.get("end")
    if start is not None or end is not None:
        shape = shape[slice(start, end)]
    return [shape]


def _const_only(fn: Callable[..., np.ndarray]) -> Handler:
    """Ops that are supported only on constants (they compute shapes or fold weights)."""

    def handler(node, ins, at, ctx):
        if any(isinstance(v, Expr) for v in ins):
            raise _NodeError("is applied to a tensor that depends on the input; it is supported only for constants (shape computations)")
        return [fn(ins, at)]

    return handler


def _gather(ins, at):
    data, idx = ins[0], ins[1]
    return np.take(data, idx.astype(np.int64), axis=int(at.get("axis", 0)))


def _concat(ins, at):
    return np.concatenate([np.asarray(v) for v in ins if v is not None], axis=int(at.get("axis", 0)))


def _cast(ins, at):
    from robustbench_mr.verifiers.form.onnx_proto import np_dtype

    to = np_dtype(int(at["to"]))
    return ins[0].astype(to)


def _constant_of_shape(ins, at):
    from robustbench_mr.verifiers.form.onnx_proto import to_array

    value = to_array(at["value"]) if "value" in at else np.zeros(1, dtype=np.float32)
    return np.full(tuple(int(v) for v in ins[0].reshape(-1)), value.reshape(-1)[0], dtype=value.dtype)


def _slice(ins, at):
    data = ins[0]
    if len(ins) > 1:
        starts, ends = ins[1].reshape(-1), ins[2].reshape(-1)
        axes = ins[3].reshape(-1) if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
        steps = ins[4].reshape(-1) if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), dtype=np.int64)
    else:
        starts, ends = np.array(at["starts"]), np.array(at["ends"])
        axes = np.array(at.get("axes", list(range(len(starts)))))
        steps = np.ones(len(starts), dtype=np.int64)
    sl = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        sl[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(sl)]


def _h_batchnorm(node, ins, at, ctx):
    x = ins[0]
    scale, bias, mean, var = (_const(v, "BatchNormalization parameters").astype(np.float64) for v in ins[1:5])
    if int(at.get("training_mode", 0)):
        raise _NodeError("is in training mode (export the model in eval mode)")
    eps = float(at.get("epsilon", 1e-5))
    k = scale / np.sqrt(var + eps)
    shift = bias - mean * k
    rank = len(x.shape)
    bshape = (1, -1) + (1,) * (rank - 2)  # per channel, axis 1
    if _is_const(x):
        return [x.astype(np.float64) * k.reshape(bshape) + shift.reshape(bshape)]
    return [_shift(_scale(x, k.reshape(bshape)), shift.reshape(bshape))]


def _conv_pads(at: dict[str, Any], in_spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...], dil: tuple[int, ...]) -> list[int]:
    """Per spatial dim (begin, end) pads, resolving auto_pad."""
    auto = at.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    n = len(in_spatial)
    if auto in ("NOTSET", ""):
        pads = [int(p) for p in at.get("pads", [0] * (2 * n))]
        return [(pads[i], pads[i + n]) for i in range(n)]
    if auto == "VALID":
        return [(0, 0)] * n
    out = []
    for size, k, s, d in zip(in_spatial, kernel, strides, dil):
        target = -(-size // s)
        total = max(0, (target - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        out.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return out


def _h_conv(node, ins, at, ctx):
    import torch
    import torch.nn.functional as F

    x = ins[0]
    W = _const(ins[1], "the Conv weight").astype(np.float64)
    b = ins[2] if len(ins) > 2 and ins[2] is not None else None
    if b is not None:
        b = _const(b, "the Conv bias").astype(np.float64)
    nsp = W.ndim - 2
    if nsp not in (1, 2):
        raise _NodeError(f"is a {nsp}-D convolution; only 1-D and 2-D are supported")
    if len(x.shape) != W.ndim or x.shape[0] != 1:
        raise _NodeError(f"input shape {x.shape} is not (1, C, ...) with {nsp} spatial dims")
    kernel = tuple(W.shape[2:])
    strides = tuple(int(s) for s in at.get("strides", [1] * nsp))
    dil = tuple(int(d) for d in at.get("dilations", [1] * nsp))
    group = int(at.get("group", 1))
    pads = _conv_pads(at, tuple(x.shape[2:]), kernel, strides, dil)
    pad_arg = []  # F.pad wants the last dim first
    for lo, hi in reversed(pads):
        pad_arg += [lo, hi]
    conv = F.conv1d if nsp == 1 else F.conv2d
    Wt = torch.from_numpy(W)

    def run(batch: np.ndarray, with_bias: bool) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float64))
        t = F.pad(t, pad_arg) if any(pad_arg) else t
        bt = torch.from_numpy(b) if (with_bias and b is not None) else None
        with torch.no_grad():
            return conv(t, Wt, bt, stride=strides, dilation=dil, groups=group).numpy()

    if _is_const(x):
        return [run(x.astype(np.float64), True)]
    # the image of each basis vector: a batch of num_vars single images (C, ...)
    Mb = x.batched_M().reshape((x.num_vars, *x.shape[1:]))
    out_lin = run(Mb, False)
    out_c = run(x.c, True)
    return [x.with_linear(out_lin, out_c)]


def _h_global_average_pool(node, ins, at, ctx):
    x = ins[0]
    axes = tuple(range(2, len(x.shape)))
    if _is_const(x):
        return [x.mean(axis=axes, keepdims=True)]
    return [_linear_map(x, lambda t: t.mean(axis=tuple(a + 1 for a in axes), keepdims=True))]


def _h_average_pool(node, ins, at, ctx):
    import torch
    import torch.nn.functional as F

    x = ins[0]
    kernel = tuple(int(k) for k in at["kernel_shape"])
    if len(kernel) != 2 or len(x.shape) != 4 or x.shape[0] != 1:
        raise _NodeError("only 2-D average pooling of a (1, C, H, W) tensor is supported")
    if int(at.get("ceil_mode", 0)):
        raise _NodeError("ceil_mode=1 is not supported")
    strides = tuple(int(s) for s in at.get("strides", [1, 1]))
    pads = _conv_pads(at, tuple(x.shape[2:]), kernel, strides, (1, 1))
    if any(lo != hi for lo, hi in pads):
        raise _NodeError("asymmetric padding is not supported")
    include_pad = bool(int(at.get("count_include_pad", 0)))

    def run(batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float64))
        with torch.no_grad():
            return F.avg_pool2d(t, kernel, strides, (pads[0][0], pads[1][0]), count_include_pad=include_pad).numpy()

    if _is_const(x):
        return [run(x)]
    Mb = x.batched_M().reshape((x.num_vars, *x.shape[1:]))
    return [x.with_linear(run(Mb), run(x.c))]


def _h_dropout(node, ins, at, ctx):
    return [ins[0]] + ([np.ones(ins[0].shape, dtype=bool)] if len(node.output) > 1 else [])


OPS: dict[str, Handler] = {
    "Gemm": _h_gemm,
    "MatMul": _h_matmul,
    "Add": _binary("Add"),
    "Sub": _binary("Sub"),
    "Mul": _binary("Mul"),
    "Div": _binary("Div"),
    "Neg": _h_neg,
    "Relu": _h_relu,
    "Conv": _h_conv,
    "Flatten": _h_flatten,
    "Reshape": _h_reshape,
    "Transpose": _h_transpose,
    "BatchNormalization": _h_batchnorm,
    "Constant": _h_constant,
    "Identity": _h_identity,
    "Dropout": _h_dropout,  # inference: identity
    "GlobalAveragePool": _h_global_average_pool,
    "AveragePool": _h_average_pool,
    "Unsqueeze": _h_unsqueeze,
    "Squeeze": _h_squeeze,
    "Shape": _h_shape,
    "Gather": _const_only(_gather),
    "Concat": _const_only(_concat),
    "Cast": _const_only(_cast),
    "ConstantOfShape": _const_only(_constant_of_shape),
    "Slice": _const_only(_slice),
}


# --------------------------------------------------------------------------------------
# the importer


def _load_model(path: str | Path) -> Any:
    """The parsed ``ModelProto`` of ``path``; one-line :class:`UserError` for a missing,
    empty or unparsable file, or one that parses (protobuf is lenient) but holds no graph."""
    from robustbench_mr.verifiers.form.onnx_proto import parse_model

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such ONNX file")
    if p.stat().st_size == 0:
        raise UserError(f"{p}: the file is empty (0 bytes), not an ONNX model (an interrupted copy or export?); export or copy it again")
    try:
        model = parse_model(p.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise UserError(f"{p}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise UserError(f"{p}: not an ONNX model: the file parses but holds no graph (no nodes, no outputs); export or copy it again")
    return model


def _graph_input(model: Any, path: Path) -> tuple[str, tuple[int, ...]]:
    """The one real input (graph inputs minus initializers; old files list weights as inputs).

    A symbolic (or non-positive, as some exporters write for "dynamic") leading dim is the
    batch axis and counts as 1; any other axis must declare a positive size.
    """
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if not real:
        raise UserError(f"{path}: the graph declares no input (only initializers); exactly one input is supported")
    if len(real) != 1:
        raise UserError(f"{path}: the model has {len(real)} inputs ({', '.join(i.name for i in real)}); exactly one is supported")
    dims = real[0].type.tensor_type.shape.dim
    shape: list[int] = []
    for axis, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif d.HasField("dim_value") and axis > 0:
            raise UserError(f"{path}: input {real[0].name!r} declares size {d.dim_value} for axis {axis}; "
                            "every axis but the batch axis needs a positive size; fix the export")
        else:
            shape.append(1)  # the batch dimension: evaluate with batch 1
    return real[0].name, tuple(shape)


def _check_finite_constants(model: Any, nodes: list[tuple[int, Any]], path: Path) -> None:
    """Refuse a NaN or Inf in any constant the imported graph uses: initializers read by a
    live node, and the tensors of live Constant nodes. Names the first offender."""
    from robustbench_mr.verifiers.form.onnx_proto import to_array

    def problem(arr: np.ndarray) -> str:
        a = np.asarray(arr)
        if a.dtype.kind not in "fc" or bool(np.isfinite(a).all()):
            return ""
        nans, infs = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        return " and ".join(part for part in (f"{nans} NaN" if nans else "", f"{infs} Inf" if infs else "") if part)

    def read(t: Any, what: str) -> np.ndarray:
        try:
            return to_array(t)
        except Exception as exc:  # noqa: BLE001 - a malformed TensorProto raises several types
            raise UserError(f"{path}: {what} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); export it again") from None

    fix = "the model is corrupt or training diverged; export it again from a good checkpoint"
    used = {n for _, node in nodes for n in node.input if n}
    for t in model.graph.initializer:
        if t.name in used:
            counts = problem(read(t, f"initializer {t.name!r}"))
            if counts:
                raise UserError(f"{path}: initializer {t.name!r} has {counts} value(s); {fix}")
    for i, node in nodes:
        if node.op_type != "Constant":
            continue
        label = f"Constant node {node.name or f'#{i}'!r} (output {node.output[0] if node.output else '?'!r})"
        for a in node.attribute:
            if a.name == "value" and a.HasField("t"):
                arr = read(a.t, label)
            elif a.name == "value_float":
                arr = np.array(a.f)
            elif a.name == "value_floats":
                arr = np.array(list(a.floats))
            else:
                continue
            counts = problem(arr)
            if counts:
                raise UserError(f"{path}: {label} has {counts} value(s); {fix}")


def network_input_shape(onnx_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Network's input_shape: the ONNX input shape without a leading batch dim of 1."""
    if len(onnx_shape) >= 2 and onnx_shape[0] == 1:
        return tuple(onnx_shape[1:])
    return tuple(onnx_shape) if onnx_shape else (1,)


def _live_nodes(model: Any) -> list[tuple[int, Any]]:
    """(index, node) of the nodes that some graph output depends on, in file order.

    Only this sub-graph is imported: a node whose outputs nothing reads (a dead Relu, an
    unused side branch, anything after the output) must not change the imported function.
    """
    needed = {o.name for o in model.graph.output}
    live = []
    for i in range(len(model.graph.node) - 1, -1, -1):
        node = model.graph.node[i]
        if any(o and o in needed for o in node.output):
            live.append((i, node))
            needed.update(n for n in node.input if n)
    return live[::-1]


def _unsupported_nodes(nodes: list[tuple[int, Any]], supported: Any) -> list[str]:
    out = []
    for i, node in nodes:
        if node.domain not in ("", "ai.onnx"):
            out.append(f"{node.domain}.{node.op_type} (node {node.name or f'#{i}'})")
        elif node.op_type not in supported:
            out.append(f"{node.op_type} (node {node.name or f'#{i}'})")
    return out


def _skip_connections(nodes: list[tuple[int, Any]], in_name: str) -> list[str]:
    """Nodes that combine input-dependent tensors from different ReLU depths (residual
    connections), found statically before any arithmetic (a ResNet is refused at once)."""
    depth: dict[str, int] = {in_name: 0}  # input-dependent tensors -> number of ReLUs before them
    out = []
    for i, node in nodes:
        if node.op_type == "Shape":
            continue  # a shape is a constant
        ds = {depth[n] for n in node.input if n in depth}
        if not ds:
            continue
        if len(ds) > 1 and node.op_type in ("Add", "Sub", "Concat", "Sum"):
            out.append(f"{node.op_type} (node {node.name or f'#{i}'})")
        d = max(ds) + (node.op_type == "Relu")
        for o in node.output:
            if o:
                depth[o] = d
    return out


def read_live_graph(path: str | Path, supported: Any) -> tuple[Path, Any, str, list[tuple[int, Any]], str, tuple[int, ...]]:
    """What both importers (this chain one and ``form/from_onnx.py``) read first: the parsed
    model, its one output, the live nodes (every op in ``supported``, else one error naming all
    the others), the one input and its shape, with the constants checked finite."""
    p = Path(path)
    model = _load_model(p)
    outputs = [o.name for o in model.graph.output]
    if len(outputs) != 1:
        raise UserError(f"{p}: the model has {len(outputs)} outputs; exactly one is supported")
    nodes = _live_nodes(model)
    bad = _unsupported_nodes(nodes, supported)
    if bad:
        raise UnsupportedLayerError(f"{p}: unsupported ONNX op{'s' if len(bad) > 1 else ''}: {'; '.join(bad)}")
    in_name, in_shape = _graph_input(model, p)
    return p, model, outputs[0], nodes, in_name, in_shape


def load_onnx(path: str | Path) -> Network:
    """Read an ONNX file and return it as a :class:`Network` (float64).

    Raises :class:`UnsupportedLayerError` listing every unsupported op (with node names) or
    the first node used in a way that is not a chain of affine maps and ReLUs, and
    :class:`UserError` for unreadable files or several inputs/outputs.
    """
    from robustbench_mr.verifiers.form.onnx_proto import to_array

    p, model, output, nodes, in_name, in_shape = read_live_graph(path, OPS)
    outputs = [output]
    skips = _skip_connections(nodes, in_name)
    if skips:
        raise UnsupportedLayerError(
            f"{p}: {'; '.join(skips)} add{'s' if len(skips) == 1 else ''} tensors from different ReLU layers "
            "(residual/skip connections); only chains of affine maps and ReLUs can be imported"
        )
    _check_finite_constants(model, nodes, p)

    env: dict[str, Value] = {t.name: _to_float(to_array(t)) for t in model.graph.initializer}
    n_in = int(prod(in_shape))
    env[in_name] = Expr(in_shape, None, np.zeros(in_shape), n_in, 0)
    ctx = _Ctx(parts=[])
    made_by: dict[str, str] = {}  # tensor -> the node that computed it (for messages)
    for i, node in nodes:  # ONNX requires topological order
        label = node.name or f"#{i}"
        try:
            ins = [env[n] if n else None for n in node.input]
        except KeyError as exc:
            raise UserError(f"{p}: node {label} ({node.op_type}) reads {exc.args[0]!r}, which nothing computes") from None
        if node.op_type != "Shape":  # a Shape reads only the (static) shape, never the values
            for name, v in zip(node.input, ins):
                if isinstance(v, Expr) and v.layer != ctx.layer:
                    # the tensor lives before a ReLU that has since closed its layer: composing it
                    # after that ReLU would import a different function
                    raise UnsupportedLayerError(
                        f"{p}: {node.op_type} (node {label}) reads {name!r} (from {made_by.get(name, 'the input')}), which lies before "
                        f"ReLU layer {ctx.layer} that other live nodes read: a branch or skip connection; only chains of affine maps and ReLUs can be imported")
        try:
            outs = OPS[node.op_type](node, ins, _attrs(node), ctx)
        except _NodeError as exc:
            raise UnsupportedLayerError(f"{p}: {node.op_type} (node {label}) {exc}") from None
        except UnsupportedLayerError:
            raise
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise UnsupportedLayerError(f"{p}: {node.op_type} (node {label}) cannot be imported: {type(exc).__name__}: {exc}") from None
        for name, val in zip(node.output, outs):
            if name:
                env[name] = val if isinstance(val, Expr) else np.asarray(val)  # numpy scalars -> 0-d arrays
                made_by[name] = f"{node.op_type} node {label}"
    out = env.get(outputs[0])
    if out is None:
        raise UserError(f"{p}: nothing computes the output {outputs[0]!r}")
    if not isinstance(out, Expr):
        raise UnsupportedLayerError(f"{p}: the output {outputs[0]!r} does not depend on the input")
    if out.layer != ctx.layer:
        raise UnsupportedLayerError(f"{p}: the output {outputs[0]!r} lies before ReLU layer {ctx.layer}: a branch; only chains can be imported")
    ctx.parts.append(Affine(np.ascontiguousarray(out.dense_M().T), out.c.reshape(-1)))
    return chain(network_input_shape(in_shape), ctx.parts, source=str(p))


# --------------------------------------------------------------------------------------
# onnxruntime: only for cross-checks and counterexample confirmation


def onnxruntime_forward(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Outputs of the ONNX file at flat inputs ``x`` (N, num_inputs) or (num_inputs,), run by
    onnxruntime one input at a time (many VNN-COMP files fix the batch size at 1), as float64
    (N, num_outputs) or (num_outputs,)."""
    import onnxruntime as ort

    p = Path(path)
    model = _load_model(p)
    in_name, in_shape = _graph_input(model, p)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
    ort_in = [i for i in sess.get_inputs() if i.name == in_name][0]
    dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(ort_in.type, np.float32)
    feeds_extra = {}
    inits = {t.name for t in model.graph.initializer}
    for i in sess.get_inputs():  # old files list initializers as inputs: onnxruntime uses their defaults
        if i.name != in_name and i.name not in inits:
            raise UserError(f"{p}: input {i.name!r} has no value")
    X = np.asarray(x, dtype=np.float64)
    single = X.ndim == 1
    X = X.reshape(-1, int(prod(in_shape)))
    outs = []
    for row in X:
        y = sess.run(None, {in_name: row.reshape(in_shape).astype(dtype), **feeds_extra})[0]
        outs.append(np.asarray(y, dtype=np.float64).reshape(-1))
    Y = np.stack(outs)
    return Y[0] if single else Y


def onnx_input_dtype(path: str | Path) -> np.dtype:
    """The numpy dtype of the model's input (float32 for nearly every file)."""
    from robustbench_mr.verifiers.form.onnx_proto import np_dtype

    p = Path(path)
    model = _load_model(p)
    in_name, _ = _graph_input(model, p)
    inp = [i for i in model.graph.input if i.name == in_name][0]
    return np_dtype(inp.type.tensor_type.elem_type)
