"""The batched bound engine: sound against float64 sampling for every method in its registry,
batched answers equal one-box answers, tighter methods never looser, and a
function-preserving rescaling of a hidden layer (ReLU is positively homogeneous) changes no
proof."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mr.verifiers.bounds.engine import METHODS, BoundMethod, node_bounds, spec_lower
from robustbench_mr.verifiers.form.from_torch import from_torch


class Res(nn.Module):
    def __init__(self, w: int = 10) -> None:
        super().__init__()
        self.a, self.b, self.c, self.o = nn.Linear(3, w), nn.Linear(w, w), nn.Linear(w, w), nn.Linear(w, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x.flatten(1)))
        h = h + torch.relu(self.c(torch.relu(self.b(h))))
        return self.o(torch.relu(h))


def _case(seed: int) -> tuple:
    torch.manual_seed(seed)
    model = Res().double().eval()
    graph = from_torch(model, (3,))
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, size=(5, 3))
    r = rng.uniform(0.05, 0.4, size=(5, 1))
    C = torch.as_tensor(rng.normal(size=(6, 4)))
    return model, graph, torch.as_tensor(c - r), torch.as_tensor(c + r), C


def test_registry_is_the_enum() -> None:
    assert set(METHODS) == {m.value for m in BoundMethod}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("seed", range(4))
def test_bounds_contain_sampled_outputs(method: str, seed: int) -> None:
    model, graph, lo, hi, C = _case(seed)
    gb = node_bounds(graph, lo, hi, "interval" if method == "interval" else "crown")
    low = spec_lower(graph, gb, C, method, alpha_iters=10)
    u = torch.rand(2000, *lo.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    u[0], u[1] = 0.0, 1.0
    pts = lo + u * (hi - lo)
    with torch.no_grad():
        ys = model(pts.reshape(-1, 3)).reshape(2000, lo.shape[0], -1)
    vals = ys @ C.T  # (samples, boxes, rows)
    assert torch.all(vals >= low), f"{method}: a sampled value lies below the lower bound"
    ylo, yhi = gb.boxes[graph.output]
    assert torch.all(ys >= ylo) and torch.all(ys <= yhi)


def test_batched_equals_one_box_at_a_time() -> None:
    _, graph, lo, hi, C = _case(7)
    low = spec_lower(graph, node_bounds(graph, lo, hi, "crown"), C, "crown")
    for b in range(lo.shape[0]):
        one = spec_lower(graph, node_bounds(graph, lo[b:b + 1], hi[b:b + 1], "crown"), C, "crown")
        # rows are computed for the union of unstable neurons over the batch: never looser
        assert torch.all(low[b] >= one[0] - 1e-12 * (1 + one[0].abs()))
        torch.testing.assert_close(low[b], one[0], rtol=1e-9, atol=1e-9)


def test_tighter_methods_are_never_looser() -> None:
    _, graph, lo, hi, C = _case(3)
    ib = spec_lower(graph, node_bounds(graph, lo, hi, "interval"), C, "interval")
    gb = node_bounds(graph, lo, hi, "crown")
    cr = spec_lower(graph, gb, C, "crown")
    al = spec_lower(graph, gb, C, "alpha", alpha_iters=10)
    assert torch.all(cr >= ib) and torch.all(al >= cr)


@pytest.mark.parametrize("s", [2.0 ** -20, 2.0 ** 20])
def test_rescaling_a_hidden_layer_changes_no_proof(s: float) -> None:
    model, graph, lo, hi, C = _case(5)
    scaled = Res().double()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():  # relu(s z) = s relu(z): scale b's output by s, undo it in c's input
        scaled.b.weight.mul_(s)
        scaled.b.bias.mul_(s)
        scaled.c.weight.div_(s)
    g2 = from_torch(scaled, (3,))
    for method in ("crown", "alpha"):
        a = spec_lower(graph, node_bounds(graph, lo, hi, "crown"), C, method, alpha_iters=5)
        b = spec_lower(g2, node_bounds(g2, lo, hi, "crown"), C, method, alpha_iters=5)
        assert torch.equal(a > 0, b > 0) or torch.allclose(a, b, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_crown_rows_by_gather_equal_one_hot_back_substitution() -> None:
    """``crown_rows`` starts a Linear node's rows from its weight's rows (``unit_rows_backward``):
    the same bounds as back-substituting the one-hot rows through it, on a densified conv net
    whose layers the engine multiplies as sparse matrices."""
    from robustbench_mr.verifiers.bounds.engine import backward_lower, crown_rows, interval_boxes
    from robustbench_mr.verifiers.form.chain_from_torch import from_torch as chain_from_torch
    from robustbench_mr.verifiers.form.from_chain import chain_graph

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(72, 5)).double()
    graph = chain_graph(chain_from_torch(model, (1, 12, 12)))
    assert graph.nodes[3].op.sparse  # the densified second conv
    c = torch.rand(2, 144, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    boxes = interval_boxes(graph, c - 0.05, c + 0.05)
    for p in (1, 3, 5):
        tight = crown_rows(graph, p, boxes, every_row=True)
        n = boxes[p][0].shape[1]
        E = torch.cat([torch.eye(n), -torch.eye(n)]).to(torch.float64).expand(2, -1, -1)
        low = torch.maximum(torch.cat([boxes[p][0], -boxes[p][1]], 1), backward_lower(graph, p, E, boxes))
        torch.testing.assert_close(tight[0], low[:, :n], rtol=1e-12, atol=0)
        torch.testing.assert_close(tight[1], -low[:, n:], rtol=1e-12, atol=0)
        boxes[p] = tight
        boxes = interval_boxes(graph, boxes[0][0], boxes[0][1], start=p + 1, boxes=boxes)
