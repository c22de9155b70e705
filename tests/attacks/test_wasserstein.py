"""Projected Sinkhorn (Wong, Schmidt & Kolter 2019): lands in the Wasserstein ball (checked
with an exact LP), preserves mass; the attack's robust accuracy falls as the radius grows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from robustbench_mr.attacks.sinkhorn import projected_sinkhorn, wright_omega
from robustbench_mr.attacks.wasserstein import WassersteinAttack, WassersteinConfig, shrink_into_ball, transport_distance
from robustbench_mr.data import load_dataset


@pytest.fixture(scope="module")
def images():
    x, y = load_dataset("digits", "test")
    return x[:40].double(), y[:40]


def test_wright_omega_matches_scipy():
    s = torch.tensor([-60.0, -10.0, -1.0, 0.0, 0.5, 2.0, 30.0, 700.0, 3000.0], dtype=torch.float64)
    ref = scipy.special.wrightomega(s.numpy()).real
    assert np.allclose(wright_omega(s).numpy(), ref, rtol=1e-12, atol=1e-300)


def test_transport_distance_of_a_known_move():
    x = torch.zeros(1, 5, 5, dtype=torch.float64)
    x[0, 2, 2] = 1.0
    z = torch.zeros_like(x)
    z[0, 2, 3] = 0.5  # half the mass one pixel right (cost 1), half two pixels down (cost 4)
    z[0, 4, 2] = 0.5
    assert transport_distance(x, z) == pytest.approx(0.5 * 1 + 0.5 * 4)
    z_far = torch.zeros_like(x)
    z_far[0, 0, 0] = 0.5
    z_far[0, 2, 2] = 0.5
    assert transport_distance(x, z_far) == pytest.approx(0.5 * 8)
    assert transport_distance(x, 2 * z) == float("inf")  # different mass: no plan


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
def test_projection_lands_in_ball_and_keeps_mass(images, eps):
    x, _ = images
    x = x[:6]
    mass = x.flatten(1).sum(1).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    w = (x + 0.2 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    z = projected_sinkhorn(x / mass, w / mass, eps, max_iter=1000, tol=1e-6) * mass
    assert (z >= 0).all()
    assert torch.allclose(z.flatten(1).sum(1), mass.flatten(), rtol=1e-10)
    for i in range(len(x)):
        d = transport_distance(x[i], z[i])
        assert d <= eps * (1 + 1e-3), (i, d)
        # a projection: no farther from w than x itself is (x is in the ball)
        assert (z[i] - w[i]).norm() <= (x[i] - w[i]).norm() + 1e-9


def test_projection_keeps_points_already_inside(images):
    x, _ = images
    x = x[:3]
    mass = x.flatten(1).sum(1).view(-1, 1, 1, 1)
    z = projected_sinkhorn(x / mass, x / mass, 0.1, max_iter=500, tol=1e-8) * mass
    # entropic smoothing moves a little mass even at the centre; regularization 3000 keeps it small
    assert (z - x).abs().max() < 0.05


def test_shrink_into_ball_is_sound(images):
    x, _ = images
    z = torch.roll(x[0], shifts=1, dims=2)  # move every pixel one step right
    z = z * (x[0].sum() / z.sum())
    d = transport_distance(x[0], z)
    z2, d2 = shrink_into_ball(x[0], z, d / 3)
    assert d2 <= d / 3 * (1 + 1e-6)
    assert z2.min() >= 0 and z2.max() <= 1 + 1e-12


def test_robust_accuracy_falls_with_radius(digits_model, images):
    x, y = images
    x, y = x[:20].float(), y[:20]
    # reduced cost: the radius schedule reaches the budget within 40 iterations
    cfg = WassersteinConfig(iterations=40, sinkhorn_max_iter=40, eps_init=0.002, eps_factor=1.5, eps_every=2)
    accs = []
    for eps in (0.005, 0.03, 0.3):
        x_adv = WassersteinAttack(eps, cfg).perturb(digits_model, x, y)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        accs.append((digits_model(x_adv).argmax(1) == y).float().mean().item())
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] < accs[0]


def test_runner_counts_only_points_proven_inside_the_ball(digits_model, images):
    from robustbench_mr.attacks.runner import validate_points

    x, y = images
    x, y = x[:10].float(), y[:10]
    eps = 0.3
    atk = WassersteinAttack(eps, WassersteinConfig(iterations=40, sinkhorn_max_iter=50, eps_init=0.002, eps_factor=1.5, eps_every=2))
    x_adv = atk.perturb(digits_model, x, y)
    broken, pred, dist = validate_points(digits_model, atk, x, y, x_adv)
    assert broken.any()
    for i in broken.nonzero().flatten().tolist():
        assert pred[i] != y[i]
        assert dist[i] <= eps * (1 + 1e-6)
