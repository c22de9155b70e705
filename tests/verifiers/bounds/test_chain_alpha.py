"""alpha-CROWN bounds (``alpha``, ``alpha-lp``): sound (sampled points, box corners, points
pushed to each neuron's extremes by gradient steps, and never tighter than the exact triangle
LP), never looser than CROWN, and sound whatever the optimizer returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_mr.verifiers.bounds import chain_alpha as alpha_crown
from robustbench_mr.verifiers.bounds.chain_alpha import alpha_bounds, alpha_spec_lower_bounds
from robustbench_mr.verifiers.bounds.chain import graph_boxes, spec_lower_bounds
from robustbench_mr.verifiers.bounds.engine import backward_lower
from robustbench_mr.verifiers.form.from_chain import chain_graph
from robustbench_mr.verifiers.form.ops.relu import relaxation
from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.bounds.lp_tighten import _LayerLp
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import robustness_property
from tests.verifiers.decide.test_exactness import random_net
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property


def _random_net(rng: np.random.Generator, sizes: list[int]) -> Network:
    return random_net(rng, sizes, bias_scale=0.2)


def _pre_activations_t(net: Network, x: torch.Tensor) -> list[torch.Tensor]:
    out, z = [], x
    for k, layer in enumerate(net.affines):
        z = z @ torch.from_numpy(layer.weight).T + torch.from_numpy(layer.bias)
        out.append(z)
        z = torch.relu(z)
    return out


def _extreme_points(net: Network, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, steps: int = 40) -> np.ndarray:
    """For every neuron of every layer and each sign, a point pushed by signed gradient steps
    towards that neuron's maximum (resp. minimum) over the box."""
    lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
    pts = []
    for k, layer in enumerate(net.affines):
        n = layer.out_features
        for sign in (1.0, -1.0):
            x = torch.from_numpy(rng.uniform(lo, hi, size=(n, lo.size))).requires_grad_(True)
            for s in range(steps):
                z = _pre_activations_t(net, x)[k]
                (g,) = torch.autograd.grad((sign * torch.diagonal(z)).sum(), x)
                step = 0.1 * (hi - lo).max() * (0.9 ** s)
                x = torch.max(torch.min(x.detach() + step * g.sign(), hi_t), lo_t).requires_grad_(True)
            pts.append(x.detach().numpy())
    return np.vstack(pts)


def _assert_contains(net: Network, b, pts: np.ndarray) -> None:
    z = pts
    for k, layer in enumerate(net.affines):
        z = z @ layer.weight.T + layer.bias
        assert np.all(z >= b.lower[k]) and np.all(z <= b.upper[k]), k
        z = np.maximum(z, 0.0)


@pytest.mark.parametrize("method", ["alpha", "alpha-lp"])
def test_alpha_bounds_contain_sampled_and_extreme_values(method: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(3):
        net = _random_net(rng, [6, 20, 20, 20, 5])
        x = rng.uniform(size=6)
        lo, hi = np.clip(x - 0.3, 0, 1), np.clip(x + 0.3, 0, 1)
        b = compute_bounds(net, lo, hi, method, time_budget=10)
        pts = np.vstack([rng.uniform(lo, hi, size=(3000, 6)), np.where(rng.integers(0, 2, size=(256, 6)) == 1, hi, lo),
                         _extreme_points(net, lo, hi, rng)])
        _assert_contains(net, b, pts)


# never looser than CROWN, tighter somewhere, sound by sampling: bounds/test_chain.py, parametrized
# over lp / alpha / alpha-lp

def test_alpha_is_never_tighter_than_the_exact_triangle_lp() -> None:
    """Any linear-relaxation bound (every alpha in [0, 1]) contains the triangle LP's optimum
    given the same earlier-layer bounds: a bound tighter than the LP would be unsound."""
    rng = np.random.default_rng(11)
    net = _random_net(rng, [5, 16, 16, 16, 3])
    x = rng.uniform(size=5)
    lo, hi = np.clip(x - 0.4, 0, 1), np.clip(x + 0.4, 0, 1)
    ab = alpha_bounds(net, lo, hi, time_budget=10, iterations=50)
    checked = 0
    for k in range(1, len(net.affines)):
        lp = _LayerLp(net, k, lo, hi, list(ab.lower[:k]), list(ab.upper[:k]))
        for i in range(net.affines[k].out_features):
            up, dn = lp.max_of(i, 1.0, 5.0), lp.max_of(i, -1.0, 5.0)
            assert up is not None and dn is not None
            # max_of is a sound bound >= the LP optimum; the optimum itself is within 1e-6 of it
            assert ab.upper[k][i] >= up - 1e-6 * (1 + abs(up)) and ab.lower[k][i] <= -dn + 1e-6 * (1 + abs(dn)), (k, i)
            checked += 1
    assert checked == 16 * 2 + 3


def test_any_optimizer_output_stays_sound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wild slopes (a huge step size) stay sound and never loosen CROWN; slopes outside [0, 1]
    count as their clamped values (the ReLU's backward clamps them), so no optimizer output can
    leave the sound range."""
    rng = np.random.default_rng(2)
    net = _random_net(rng, [6, 20, 20, 4])
    lo, hi = np.full(6, 0.1), np.full(6, 0.8)
    cb = compute_bounds(net, lo, hi, "crown")
    monkeypatch.setattr(alpha_crown, "ALPHA_LR", 1e6)
    b = alpha_bounds(net, lo, hi, time_budget=10)
    _assert_contains(net, b, np.vstack([rng.uniform(lo, hi, size=(3000, 6)), _extreme_points(net, lo, hi, rng)]))
    for k in range(len(cb.lower)):
        assert np.all(b.lower[k] >= cb.lower[k]) and np.all(b.upper[k] <= cb.upper[k])
    g = chain_graph(net)
    boxes = graph_boxes(net, lo, hi, cb.lower, cb.upper)
    A = torch.from_numpy(rng.normal(size=(1, 5, 4)))
    relus = [i for i, n in enumerate(g.nodes) if n.op is not None and n.op.kind == "relu"]
    wild = {i: torch.full((1, 5, 20), 2.0, dtype=torch.float64) for i in relus}
    ones = {i: torch.ones((1, 5, 20), dtype=torch.float64) for i in relus}
    assert torch.equal(backward_lower(g, g.output, A, boxes, wild), backward_lower(g, g.output, A, boxes, ones))


def test_alpha_with_no_time_keeps_crown() -> None:
    rng = np.random.default_rng(6)
    net = _random_net(rng, [8, 30, 30, 4])
    lo, hi = np.full(8, 0.2), np.full(8, 0.7)
    cb = compute_bounds(net, lo, hi, "crown")
    ab = compute_bounds(net, lo, hi, "alpha", time_budget=0.0)
    for k in range(len(cb.lower)):
        assert np.all(ab.lower[k] >= cb.lower[k]) and np.all(ab.upper[k] <= cb.upper[k])
        assert np.allclose(ab.lower[k], cb.lower[k], rtol=1e-7, atol=1e-7) and np.allclose(ab.upper[k], cb.upper[k], rtol=1e-7, atol=1e-7)


def test_alpha_spec_bounds_are_sound_and_never_looser() -> None:
    rng = np.random.default_rng(3)
    improved = 0
    for _ in range(3):
        net = _random_net(rng, [10, 30, 30, 4])
        x = rng.uniform(size=10)
        prop = robustness_property(x, 0, 0.15, 4)
        C = np.vstack([c.C for c in prop.clauses])
        b = compute_bounds(net, prop.lower, prop.upper, "alpha", time_budget=10)
        plain = spec_lower_bounds(net, b, prop.lower, prop.upper, C)
        spec = alpha_spec_lower_bounds(net, b, prop.lower, prop.upper, C, time_budget=10)
        assert np.all(spec >= plain)
        improved += int(np.sum(spec > plain + 1e-6))
        # sampled points and points pushed to minimize each row of C y
        lo_t, hi_t = torch.from_numpy(prop.lower), torch.from_numpy(prop.upper)
        xs = torch.from_numpy(rng.uniform(prop.lower, prop.upper, size=(C.shape[0] * 32, 10))).requires_grad_(True)
        rows = torch.from_numpy(np.repeat(C, 32, axis=0))
        for s in range(40):
            y = _pre_activations_t(net, xs)[-1]
            (g,) = torch.autograd.grad((rows * y).sum(), xs)
            xs = torch.max(torch.min(xs.detach() - 0.05 * (0.93 ** s) * g.sign(), hi_t), lo_t).requires_grad_(True)
        y = net.forward(np.vstack([xs.detach().numpy(), rng.uniform(prop.lower, prop.upper, size=(3000, 10))]))
        assert np.all(y @ C.T >= spec)
    assert improved > 0


def test_alpha_relaxation_slopes_matrix_matches_crown_vector() -> None:
    """The engine's back-substitution gives the same bound for CROWN's slopes left implicit or
    given per row (the form alpha-CROWN optimizes)."""
    rng = np.random.default_rng(8)
    net = _random_net(rng, [5, 12, 12, 3])
    lo, hi = np.full(5, 0.0), np.full(5, 1.0)
    cb = compute_bounds(net, lo, hi, "crown")
    g = chain_graph(net)
    boxes = graph_boxes(net, lo, hi, cb.lower, cb.upper)
    A = torch.from_numpy(rng.normal(size=(1, 4, 3)))
    slopes = {i: relaxation(*boxes[n.inputs[0]])[0].unsqueeze(1).expand(1, 4, 12).clone()
              for i, n in enumerate(g.nodes) if n.op is not None and n.op.kind == "relu"}
    assert len(slopes) == 2
    assert torch.equal(backward_lower(g, g.output, A, boxes), backward_lower(g, g.output, A, boxes, slopes))


@pytest.mark.parametrize("method", ["alpha", "alpha-lp"])
def test_check_property_with_alpha_matches_lp(method: str) -> None:
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(6):
        net = _random_net(rng, [4, 16, 16, 3])
        x = rng.uniform(0.2, 0.8, size=4)
        label = int(np.argmax(net.forward(x)))
        prop = robustness_property(x, label, float(rng.choice([0.05, 0.2, 0.4])), 3)
        ref = check_property(net, prop, timeout=20, bounds="lp", samples=0, input_split=False)
        r = check_property(net, prop, timeout=20, bounds=method, samples=0, input_split=False)
        assert r.status is ref.status
        assert r.bound_method in (method, "interval")  # interval bounds alone may prove it first
        seen.add(r.status)
    assert PropertyStatus.UNSAT in seen
