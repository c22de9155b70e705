"""Regularizers against hand computations and brute force; the BatchNorm policy; PGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.models import build_model
from robustbench_mr.training.regularizers import (
    HammingAccumulator,
    clean_batch_statistics,
    corner_signs,
    hamming_layer_term,
    intrinsic_term,
    pgd_linf,
    random_corners,
)


def _tiny_mlp(seed: int = 0, hidden=(7, 5)) -> nn.Sequential:
    torch.manual_seed(seed)
    return build_model("mlp", input_shape=(1, 2, 3), num_classes=4, hidden=hidden)


def test_random_corners_are_opposite_corners_clipped() -> None:
    x = torch.rand(5, 1, 4, 4)
    eps = 0.1
    xp, xm = random_corners(x, eps, torch.Generator().manual_seed(3))
    assert torch.all((xp >= 0) & (xp <= 1) & (xm >= 0) & (xm <= 1))
    # unclipped coordinates are exactly x +- eps with opposite signs
    inner = (x > eps) & (x < 1 - eps)
    d = (xp - x)[inner]
    assert torch.allclose(d.abs(), torch.full_like(d, eps), atol=1e-6)
    assert torch.allclose((xm - x)[inner], -d, atol=1e-6)
    # both signs occur, and a fresh draw differs
    assert (d > 0).any() and (d < 0).any()
    xp2, _ = random_corners(x, eps, torch.Generator().manual_seed(4))
    assert not torch.equal(xp, xp2)


def test_intrinsic_is_zero_for_a_constant_network() -> None:
    net = _tiny_mlp()
    with torch.no_grad():
        net[-1].weight.zero_()  # output = bias, whatever the input
    x = torch.rand(6, 1, 2, 3)
    xp, xm = random_corners(x, 8 / 255)
    assert intrinsic_term(net(xp), net(xm)).item() == 0.0


def test_intrinsic_matches_hand_computation_on_a_tiny_net() -> None:
    net = _tiny_mlp(1)
    x = torch.rand(4, 1, 2, 3) * 0.6 + 0.2  # interior: no clipping at eps=0.05
    eps = 0.05
    xp, xm = random_corners(x, eps, torch.Generator().manual_seed(0))
    # hand computation in numpy, from the weights and the same sign pattern
    signs = corner_signs(x.shape, torch.Generator().manual_seed(0)).numpy() * 2 - 1
    xn = x.numpy().reshape(4, -1).astype(np.float64)
    pn = signs.reshape(4, -1) * eps
    ws = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in net if isinstance(m, nn.Linear)]

    def f(v: np.ndarray) -> np.ndarray:
        for i, (w, b) in enumerate(ws):
            v = v @ w.T + b
            if i < len(ws) - 1:
                v = np.maximum(v, 0)
        return v

    expected = np.mean(np.sum((f(xn + pn) - f(xn - pn)) ** 2, axis=1))
    got = intrinsic_term(net(xp), net(xm)).item()
    assert got == pytest.approx(expected, rel=1e-4)
    assert expected > 0


def _pre_activations(net: nn.Sequential, x: torch.Tensor) -> list[np.ndarray]:
    out, v = [], x
    for m in net:
        if isinstance(m, nn.ReLU):
            out.append(v.detach().double().numpy().reshape(len(v), -1))
        v = m(v)
    return out


def test_hamming_accumulator_matches_formula_and_approaches_hamming_distance() -> None:
    net = _tiny_mlp(2, hidden=(40, 30, 20))
    x = torch.rand(8, 1, 2, 3)
    xp, xm = random_corners(x, 0.3, torch.Generator().manual_seed(1))
    zp, zm = _pre_activations(net, xp), _pre_activations(net, xm)
    # brute force: per layer the Hamming distance of the activation patterns, scaled as the
    # relaxation's limit: ||2 * [pattern differs]||_2 / (2 n) = sqrt(d_H) / n
    limit = np.mean([np.sqrt(((a > 0) != (b > 0)).sum(axis=1)) / a.shape[1] for a, b in zip(zp, zm)], axis=0).mean()
    assert limit > 0, "test needs differing activation patterns"
    errors = []
    acc = HammingAccumulator(net, alpha=1.0)
    for alpha in (1.0, 8.0, 64.0, 1e4):
        acc.alpha = alpha
        with acc.collecting():
            net(torch.cat([x, xp, xm]))
        got = acc.value().item()
        # the same formula computed by hand in numpy
        by_hand = np.mean(
            [np.linalg.norm(np.abs(np.tanh(alpha * a) - np.tanh(alpha * b)), axis=1) / (2 * a.shape[1]) for a, b in zip(zp, zm)], axis=0
        ).mean()
        assert got == pytest.approx(by_hand, rel=1e-4, abs=1e-9)
        errors.append(abs(got - limit))
    assert errors[-1] < 0.01 * limit
    assert errors == sorted(errors, reverse=True), f"error should shrink as alpha grows: {errors}"
    acc.remove()


def test_hamming_hooks_are_inert_outside_collecting_and_gradient_is_finite() -> None:
    net = _tiny_mlp(3)
    acc = HammingAccumulator(net, alpha=8.0)
    y0 = net(torch.rand(5, 1, 2, 3))  # batch not divisible by 3: hooks must stay silent
    assert y0.shape == (5, 4)
    # identical plus/minus copies: H = 0, and the norm's gradient at 0 must not be NaN
    x = torch.rand(2, 1, 2, 3)
    with acc.collecting():
        net(torch.cat([x, x, x]))
    h = acc.value()
    assert h.item() == 0.0
    h.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    z = torch.zeros(3, 10, requires_grad=True)
    hamming_layer_term(z, z.detach(), 8.0).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_batchnorm_clean_statistics_leave_the_clean_model_unchanged() -> None:
    torch.manual_seed(0)
    net = build_model("large", input_shape=(3, 8, 8), num_classes=10)
    twin = build_model("large", input_shape=(3, 8, 8), num_classes=10)
    twin.load_state_dict(net.state_dict())
    net.train(), twin.train()
    x = torch.rand(4, 3, 8, 8)
    xp, xm = random_corners(x, 8 / 255)
    with clean_batch_statistics(net):
        out = net(torch.cat([x, xp, xm]))
    ref = twin(x)
    assert torch.equal(out[:4], ref), "the clean third must be exactly the plain forward pass"
    for (k, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), f"running statistic {k} differs from a plain step"
    # the patch is gone afterwards, and the perturbed thirds used the clean statistics:
    # in eval mode with running stats := clean batch stats they would match (checked on one BN)
    assert "forward" not in vars(net.bn)
    bn = nn.BatchNorm2d(3).train()
    z = torch.randn(9, 3, 4, 4)
    with clean_batch_statistics(bn):
        got = bn(z)
    mean = z[:3].mean((0, 2, 3), keepdim=True)
    var = z[:3].var((0, 2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(got, (z - mean) / torch.sqrt(var + bn.eps), atol=1e-5)


def test_pgd_stays_in_the_ball_and_raises_the_loss() -> None:
    net = _tiny_mlp(4)
    x = torch.rand(16, 1, 2, 3)
    y = net(x).argmax(1)
    eps = 0.1
    adv = pgd_linf(net, x, y, eps, steps=10, step_size=0.025, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y)


@pytest.mark.parametrize("method", ["plain", "mr", "pgd", "intrinsic-only", "hamming-only"])
def test_every_method_steps_the_batchnorm_resnet(method: str) -> None:
    from robustbench_mr.training.trainer import Method, StepSettings, training_step

    torch.manual_seed(0)
    net = build_model("large", input_shape=(3, 8, 8), num_classes=10).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    acc = HammingAccumulator(net, alpha=8.0)
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in net.parameters()]
    s = StepSettings(Method(method), 8 / 255, 0.8, 2400.0, 2, None)
    for _ in range(2):
        parts = training_step(net, opt, acc, x, y, s, torch.Generator().manual_seed(0))
    assert np.isfinite(parts.loss) and 0 <= parts.correct <= 4
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    if method in ("mr", "hamming-only"):
        assert parts.hamming > 0
    assert acc.num_relu_layers == 17
