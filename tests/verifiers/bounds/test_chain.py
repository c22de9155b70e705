"""Bounds are sound (sampling + PGD-maximized neurons), crown is never looser than interval,
and the torch converter reproduces the model exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mr.errors import UnsupportedLayerError
from robustbench_mr.models import build_model
from robustbench_mr.models.layers import Normalize
from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.bounds.chain import spec_lower_bounds
from robustbench_mr.verifiers.milp.model import MilpError, build_clause_milp
from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
from robustbench_mr.verifiers.spec.property import robustness_property
from tests.verifiers.decide.test_exactness import random_net
from robustbench_mr.verifiers.form.chain_from_torch import from_torch


def _pre_activations(net: Network, x: np.ndarray) -> list[np.ndarray]:
    out, z = [], x
    for k, layer in enumerate(net.affines):
        z = z @ layer.weight.T + layer.bias
        out.append(z)
        z = np.maximum(z, 0)
    return out


def _random_net(rng: np.random.Generator, sizes: list[int]) -> Network:
    return random_net(rng, sizes, bias_scale=0.2)


@pytest.mark.parametrize("method", ["interval", "crown", "lp"])
def test_bounds_contain_sampled_and_extreme_values(method: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        net = _random_net(rng, [6, 20, 20, 20, 5])
        x = rng.uniform(size=6)
        lo, hi = np.clip(x - 0.2, 0, 1), np.clip(x + 0.2, 0, 1)
        b = compute_bounds(net, lo, hi, method)
        # random points, box corners, and points pushed to each neuron's extremes by gradient steps
        pts = np.vstack([rng.uniform(lo, hi, size=(2000, 6)), np.where(rng.integers(0, 2, size=(256, 6)) == 1, hi, lo)])
        for k, z in enumerate(_pre_activations(net, pts)):
            assert np.all(z >= b.lower[k]) and np.all(z <= b.upper[k])
        model = nn.Sequential(*[m for l in net.layers for m in ([nn.Linear(l.in_features, l.out_features).double()] if isinstance(l, Affine) else [nn.ReLU()])])
        for m, l in zip([m for m in model if isinstance(m, nn.Linear)], net.affines):
            m.weight.data = torch.from_numpy(l.weight.copy())
            m.bias.data = torch.from_numpy(l.bias.copy())
        lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
        for sign in (1.0, -1.0):
            xa = torch.from_numpy(rng.uniform(lo, hi, size=(64, 6))).requires_grad_(True)
            for _ in range(30):
                out = model(xa)
                (g,) = torch.autograd.grad((sign * out).sum(), xa)
                xa = torch.max(torch.min(xa.detach() + 0.05 * g.sign(), hi_t), lo_t).requires_grad_(True)
            y = net.forward(xa.detach().numpy())
            assert np.all(y >= b.lower[-1]) and np.all(y <= b.upper[-1])


def test_crown_is_never_looser_than_interval_and_spec_bound_is_sound() -> None:
    rng = np.random.default_rng(3)
    net = _random_net(rng, [10, 30, 30, 4])
    x = rng.uniform(size=10)
    prop = robustness_property(x, 0, 0.1, 4)
    ib = compute_bounds(net, prop.lower, prop.upper, "interval")
    cb = compute_bounds(net, prop.lower, prop.upper, "crown")
    for k in range(len(ib.lower)):
        assert np.all(cb.lower[k] >= ib.lower[k]) and np.all(cb.upper[k] <= ib.upper[k])
    assert cb.num_unstable <= ib.num_unstable
    C = np.vstack([c.C for c in prop.clauses])
    spec_lo = spec_lower_bounds(net, cb, prop.lower, prop.upper, C)
    y = net.forward(rng.uniform(prop.lower, prop.upper, size=(5000, 10)))
    assert np.all(y @ C.T >= spec_lo)


def test_from_torch_matches_model_and_folds_batchnorm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Normalize((0.4, 0.5), (0.2, 0.3)), nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 3, 2, stride=1, padding=0), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Identity(), nn.Linear(27, 8),
                          nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    model.train()
    model(torch.rand(16, 2, 7, 7))  # populate BatchNorm running statistics
    model.eval()
    net = from_torch(model, (2, 7, 7))
    assert len(net.affines) == 4  # Normalize, conv, BN folded; Flatten/Dropout/Identity absorbed
    x = torch.rand(10, 2, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x).numpy()
    assert np.allclose(net.forward(x.reshape(10, -1).numpy()), ref, atol=1e-10)


def test_unsupported_layers_are_named() -> None:
    with pytest.raises(UnsupportedLayerError, match="residual"):
        from_torch(build_model("large", input_shape=(3, 32, 32), num_classes=10, mean=(0.5,) * 3, std=(0.2,) * 3), (3, 32, 32))
    with pytest.raises(UnsupportedLayerError, match=r"layer 2 .*Sigmoid"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)), (4,))
    with pytest.raises(UnsupportedLayerError, match="grouped"):
        from_torch(nn.Sequential(nn.Conv2d(2, 2, 1, groups=2)), (2, 3, 3))


def test_a_rejected_highs_row_is_an_error_not_a_missing_constraint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Duplicate (row, column) coefficients must never reach HiGHS silently."""
    from robustbench_mr.verifiers.milp import relu_encoding

    rng = np.random.default_rng(0)
    net = _random_net(rng, [3, 6, 2])
    prop = robustness_property(np.full(3, 0.5), 0, 0.5, 2)
    b = compute_bounds(net, prop.lower, prop.upper, "interval")
    original = relu_encoding.SparseRows.add_entries

    def duplicate(self, row_ids, cols, vals):  # noqa: ANN001
        original(self, row_ids, cols, vals)
        original(self, row_ids, cols, vals)

    monkeypatch.setattr(relu_encoding.SparseRows, "add_entries", duplicate)
    with pytest.raises(MilpError, match="duplicate"):
        build_clause_milp(net, b, prop.lower, prop.upper, prop.clauses[0])


@pytest.mark.parametrize("method", ["lp", "alpha", "alpha-lp"])
def test_tightened_bounds_are_sound_never_looser_than_crown_and_tighten_unstable_neurons(method: str) -> None:
    rng = np.random.default_rng(5)
    tighter = 0
    for _ in range(4):
        net = _random_net(rng, [8, 30, 30, 30, 4])
        x = rng.uniform(size=8)
        lo, hi = np.clip(x - 0.3, 0, 1), np.clip(x + 0.3, 0, 1)
        cb = compute_bounds(net, lo, hi, "crown")
        lb = compute_bounds(net, lo, hi, method, time_budget=10)
        for k in range(len(cb.lower)):
            assert np.all(lb.lower[k] >= cb.lower[k]) and np.all(lb.upper[k] <= cb.upper[k])
            assert np.all(lb.lower[k] <= lb.upper[k])
            tighter += int(np.sum(lb.upper[k] < cb.upper[k] - 1e-6) + np.sum(lb.lower[k] > cb.lower[k] + 1e-6))
        assert lb.num_unstable <= cb.num_unstable
        # sound: sampled points and box corners stay inside
        pts = np.vstack([rng.uniform(lo, hi, size=(3000, 8)), np.where(rng.integers(0, 2, size=(256, 8)) == 1, hi, lo)])
        for k, z in enumerate(_pre_activations(net, pts)):
            assert np.all(z >= lb.lower[k]) and np.all(z <= lb.upper[k])
    assert tighter > 0  # the LP does something on these nets


def test_lp_bounds_with_no_time_keep_crown() -> None:
    rng = np.random.default_rng(6)
    net = _random_net(rng, [8, 30, 30, 4])
    lo, hi = np.full(8, 0.2), np.full(8, 0.7)
    cb = compute_bounds(net, lo, hi, "crown")
    lb = compute_bounds(net, lo, hi, "lp", time_budget=0.0)
    for k in range(len(cb.lower)):
        assert np.array_equal(lb.lower[k], cb.lower[k]) and np.array_equal(lb.upper[k], cb.upper[k])
