"""Every registered op kind (``form.ops.OPS``), each face against its own forward pass:
interval boxes contain sampled outputs, the linear backward bound lies below sampled values of
random linear forms, and the op's MILP rows (in a one-op graph, solved by HiGHS) never
claim a maximum below a sampled value. A new op kind without an example here fails
``test_every_op_kind_has_an_example``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.engine import backward_lower, interval_boxes, node_bounds
from robustbench_mr.verifiers.form import OPS, build
from robustbench_mr.verifiers.form.ops.base import Op
from robustbench_mr.verifiers.form.ops import Add, AvgPool2d, Conv2d, ElementwiseAffine, Linear, MaxPool2d, ReLU, Reshape
from robustbench_mr.verifiers.milp.graph import build_graph_milp, with_highs
from robustbench_mr.verifiers.milp.model import solve_clause_milp, MilpOutcome
from robustbench_mr.verifiers.spec.property import Clause, Property

g = torch.Generator().manual_seed(0)


def _r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# kind -> (op, input shapes, torch reference on batched inputs)
def _examples() -> dict:
    W, b = _r(5, 12), _r(5)
    cw, cb = _r(6, 2, 3, 3), _r(6)
    gw, gb_ = _r(4, 1, 2, 2), _r(4)
    s, t = _r(2, 1, 1).abs() + 0.1, _r(2, 1, 1)
    return {
        "linear": [(Linear(W, b), [(12,)], lambda x: x @ W.T + b)],
        "conv2d": [(Conv2d(cw, cb, (2, 1), (1, 2), (1, 1), 1), [(2, 7, 6)], lambda x: F.conv2d(x, cw, cb, (2, 1), (1, 2))),
                   (Conv2d(gw, gb_, (1, 1), (0, 0), (2, 2), 2), [(2, 6, 6)], lambda x: F.conv2d(x, gw, gb_, 1, 0, 2, 2))],
        "elementwise_affine": [(ElementwiseAffine(s, t), [(2, 3, 3)], lambda x: x * s + t)],
        "add": [(Add(1.0), [(3, 2, 2), (3, 2, 2)], lambda a, c: a + c), (Add(-1.0), [(4,), (4,)], lambda a, c: a - c)],
        "reshape": [(Reshape((18,)), [(2, 3, 3)], lambda x: x.reshape(x.shape[0], -1))],
        "avgpool2d": [(AvgPool2d(2, (2, 2), (2, 2), (1, 1)), [(2, 5, 5)], lambda x: F.avg_pool2d(x, 2, 2, 1))],
        "relu": [(ReLU(), [(7,)], torch.relu)],
        "maxpool2d": [(MaxPool2d((3, 3), (2, 2), (1, 1)), [(2, 5, 5)], lambda x: F.max_pool2d(x, 3, 2, 1)),
                      (MaxPool2d((2, 2), (2, 2)), [(1, 4, 4)], lambda x: F.max_pool2d(x, 2, 2))],
    }


EXAMPLES = _examples()
CASES = [(kind, k) for kind in sorted(OPS) for k in range(len(EXAMPLES.get(kind, [])))]


def test_every_op_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(OPS), f"op kinds without a test example: {sorted(set(OPS) - set(EXAMPLES))}"


def _boxes(shapes: list[tuple[int, ...]], B: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for s in shapes:
        c, r = _r(B, *s), _r(B, *s).abs() * 0.5
        out.append((c - r, c + r))
    return out


def _samples(box: tuple[torch.Tensor, torch.Tensor], n: int) -> torch.Tensor:
    lo, hi = box
    u = torch.rand(n, *lo.shape, generator=g, dtype=torch.float64)
    u[0], u[1] = 0.0, 1.0  # the corners too
    return torch.minimum(torch.maximum(lo + u * (hi - lo), lo), hi)  # (n, B, *shape); lo + (hi - lo) can round above hi


@pytest.mark.parametrize("kind,k", CASES)
def test_forward_matches_torch(kind: str, k: int) -> None:
    op, shapes, ref = EXAMPLES[kind][k]
    xs = [_r(4, *s) for s in shapes]
    y = op.forward(*xs)
    assert tuple(y.shape[1:]) == tuple(op.out_shape(*shapes))
    torch.testing.assert_close(y, ref(*xs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,k", CASES)
def test_interval_and_backward_contain_samples(kind: str, k: int) -> None:
    op, shapes, _ = EXAMPLES[kind][k]
    boxes = _boxes(shapes)
    lo, hi = op.interval(*boxes)
    pts = [_samples(b, 300) for b in boxes]
    ys = torch.stack([op.forward(*[p[i] for p in pts]) for i in range(300)])  # (n, B, *out)
    assert torch.all(ys >= lo) and torch.all(ys <= hi)
    A = _r(3, 4, *op.out_shape(*shapes))
    bw = op.backward(A, *boxes)
    for i in range(300):
        value = (A * ys[i].unsqueeze(1)).flatten(2).sum(-1)
        lin = sum((Ai * pts[j][i].unsqueeze(1)).flatten(2).sum(-1) for j, Ai in enumerate(bw.inputs)) + bw.const
        assert torch.all(value >= lin - 1e-9 * (1 + value.abs())), f"{kind}: the linear lower bound is above a sampled value"


UNIT_ROWS = [c for c in CASES if type(EXAMPLES[c[0]][c[1]][0]).unit_rows_backward is not Op.unit_rows_backward]


def test_some_op_has_the_unit_rows_shortcut() -> None:
    assert ("linear", 0) in UNIT_ROWS


@pytest.mark.parametrize("kind,k", UNIT_ROWS)
def test_unit_rows_backward_is_the_one_hot_backward(kind: str, k: int) -> None:
    """Where an op has the shortcut (a gather), it gives exactly ``backward`` of [e_rows; -e_rows]."""
    op, shapes, _ = EXAMPLES[kind][k]
    out = op.out_shape(*shapes)
    n = int(np.prod(out))
    rows = torch.tensor([n - 1, 0, n // 2])
    fast = op.unit_rows_backward(rows, 3)
    r = rows.numel()
    E = torch.zeros(3, 2 * r, n, dtype=torch.float64)
    E[:, torch.arange(r), rows], E[:, r + torch.arange(r), rows] = 1.0, -1.0
    slow = op.backward(E.reshape(3, 2 * r, *out), *_boxes(shapes))
    for a, b in zip(fast.inputs, slow.inputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(fast.const, slow.const, rtol=0, atol=0)
    torch.testing.assert_close(fast.const_abs, slow.const_abs, rtol=0, atol=0)


@pytest.mark.parametrize("kind,k", [c for c in CASES if len(EXAMPLES[c[0]][c[1]][1]) == 1])
def test_milp_rows_bound_every_sample(kind: str, k: int) -> None:
    """max of c . out over the box, by the op's MILP rows, is >= every sampled c . out, and
    (piecewise-linear ops being exactly encoded) within a small gap of the sampled maximum."""
    op, shapes, _ = EXAMPLES[kind][k]
    graph = build(shapes[0], [("op", op, (0,))])
    c, r = _r(*shapes[0]), _r(*shapes[0]).abs() * 0.5
    lo, hi = (c - r).reshape(-1).numpy(), (c + r).reshape(-1).numpy()
    gbounds = node_bounds(graph, torch.from_numpy(lo), torch.from_numpy(hi), "interval")
    n_out = graph.num_outputs
    w = np.random.default_rng(k).normal(size=n_out)
    prop = Property(lo, hi, (Clause(-w[None, :], np.array([0.0])),))  # t <= w . y: maximize w . y
    m = build_graph_milp(graph, gbounds, prop, prop.clauses[0])
    res = solve_clause_milp(with_highs(m), 20.0, early_stop=False)
    assert res.outcome in (MilpOutcome.REACHABLE, MilpOutcome.UNREACHABLE)
    pts = np.random.default_rng(1).uniform(lo, hi, size=(4000, lo.size))
    sampled = (graph.forward(pts) @ w).max()
    # solved to optimality (early_stop=False): the best value is the maximum of the encoding
    assert res.best_t >= sampled - 1e-7 * (1 + abs(sampled))
    # the MILP's best point is a real input whose value matches its objective (exact encoding)
    assert res.point is not None
    assert abs(float(graph.forward(res.point) @ w) - res.best_t) <= 1e-6 * (1 + abs(res.best_t))
