"""Interval bounds are sound (sampled points stay inside) and count unstable ReLUs exactly
for the bounds; unsupported models give NaN, never a guess."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustbench_mr.models import build_model
from robustbench_mr.training.stability import relu_interval_bounds, unstable_relu_fraction


def _pre_activations(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    out, v = [], x
    for m in net:
        if isinstance(m, nn.ReLU):
            out.append(v.double())
        v = m(v)
    return out


def test_interval_bounds_contain_sampled_points_small_convnet() -> None:
    torch.manual_seed(0)
    net = build_model("small", input_shape=(1, 8, 8), num_classes=10, mean=[0.3], std=[0.5]).eval()
    x = torch.rand(3, 1, 8, 8)
    eps = 0.05
    bounds = relu_interval_bounds(net, x, eps)
    assert len(bounds) == 3
    for _ in range(50):
        corner = (x + eps * (torch.randint(0, 2, x.shape) * 2 - 1)).clamp(0, 1)
        inside = (x + eps * (torch.rand(x.shape) * 2 - 1)).clamp(0, 1)
        for sample in (corner, inside):
            for z, (lo, hi) in zip(_pre_activations(net, sample), bounds):
                assert torch.all(z >= lo - 1e-5) and torch.all(z <= hi + 1e-5)


def test_unstable_fraction_counts_straddling_intervals() -> None:
    torch.manual_seed(1)
    net = build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(12, 9)).eval()
    x = torch.rand(5, 1, 4, 4)
    eps = 0.1
    bounds = relu_interval_bounds(net, x, eps)
    n = 12 + 9
    expected = sum(((lo < 0) & (hi > 0)).sum().item() for lo, hi in bounds) / (5 * n)
    assert unstable_relu_fraction(net, x, eps, batch_size=2) == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1
    assert unstable_relu_fraction(net, x, 0.0) == 0.0
    assert unstable_relu_fraction(net, x, 1.0) > expected


def test_preact_resnet_bounds_contain_sampled_points() -> None:
    torch.manual_seed(2)
    net = build_model("large", input_shape=(3, 8, 8), num_classes=10, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    with torch.no_grad():  # non-trivial running statistics and affine parameters, some negative
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].double())) for m in net.modules() if isinstance(m, nn.ReLU)]
    x = torch.rand(2, 3, 8, 8)
    eps = 0.002
    bounds = relu_interval_bounds(net, x, eps)
    assert len(bounds) == 17
    for _ in range(20):
        seen.clear()
        net((x + eps * (torch.randint(0, 2, x.shape) * 2 - 1)).clamp(0, 1))
        assert len(seen) == 17
        for z, (lo, hi) in zip(seen, bounds):
            assert torch.all(z >= lo - 1e-4) and torch.all(z <= hi + 1e-4)
    for h in hooks:
        h.remove()
    frac = unstable_relu_fraction(net, x, eps)
    assert 0.0 < frac <= 1.0
    assert unstable_relu_fraction(net, x, 0.0) == 0.0


def test_unsupported_model_gives_nan() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2), nn.ReLU())
    assert math.isnan(unstable_relu_fraction(net, torch.rand(2, 1, 2, 2), 0.01))
