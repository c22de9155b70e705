"""PGD: stays in its ball and [0,1], matches torchattacks iterate for iterate, and keeps any
restart's success."""

from __future__ import annotations

import pytest
import torch

from robustbench_mr.attacks.base import Norm, perturbation_size
from robustbench_mr.attacks.pgd import PGD, PGDConfig
from robustbench_mr.data import load_dataset


@pytest.fixture(scope="module")
def batch():
    x, y = load_dataset("digits", "test")
    return x[:100], y[:100]


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("linf", 0.1), ("l2", 0.5)])
def test_points_inside_ball_and_box(digits_model, batch, norm, eps):
    x, y = batch
    x_adv = PGD(norm, eps, PGDConfig(steps=10, restarts=3, step_size=eps / 4)).perturb(digits_model, x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (perturbation_size(x_adv, x, Norm(norm)) <= eps * (1 + 1e-6) + 1e-7).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_matches_torchattacks_without_random_start(digits_model, batch, norm):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    eps, alpha, steps = (8 / 255, 2 / 255, 20) if norm == "linf" else (0.5, 0.1, 20)
    ours = PGD(norm, eps, PGDConfig(steps=steps, restarts=1, step_size=alpha, random_start=False))
    # the final iterate of one run, for every sample (perturb() keeps early successes instead)
    x_ours = ours.run_once(digits_model, x, y, x.clone())
    if norm == "linf":
        ref = torchattacks.PGD(digits_model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    else:
        ref = torchattacks.PGDL2(digits_model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    x_ref = ref(x, y)
    # same algorithm: identical iterates up to float rounding. For L2, torchattacks adds 1e-10 to
    # the gradient norm of the batch-*mean* loss (norms ~1e-6 here), which shifts a few steps by ~1e-5
    assert torch.allclose(x_ours, x_ref, atol=1e-5 if norm == "linf" else 2e-4)


def test_robust_accuracy_close_to_torchattacks_with_random_start(digits_model, batch):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    ours = PGD("linf", 0.1, PGDConfig(steps=20, restarts=1, step_size=2 / 255, seed=1)).perturb(digits_model, x, y)
    torch.manual_seed(1)
    ref = torchattacks.PGD(digits_model, eps=0.1, alpha=2 / 255, steps=20, random_start=True)(x, y)
    acc_ours = (digits_model(ours).argmax(1) == y).float().mean().item()
    acc_ref = (digits_model(ref).argmax(1) == y).float().mean().item()
    assert acc_ours < (digits_model(x).argmax(1) == y).float().mean().item()  # the attack does something
    assert abs(acc_ours - acc_ref) <= 0.05


def test_restarts_keep_every_success(digits_model, batch):
    x, y = batch
    cfg = dict(steps=5, step_size=0.02, seed=3)
    one = PGD("linf", 0.08, PGDConfig(restarts=1, **cfg)).perturb(digits_model, x, y)
    ten = PGD("linf", 0.08, PGDConfig(restarts=10, **cfg)).perturb(digits_model, x, y)
    broken_one = digits_model(one).argmax(1) != y
    broken_ten = digits_model(ten).argmax(1) != y
    # the first restart is the same random draw, so its successes must survive later restarts
    assert bool((broken_ten | ~broken_one).all())
    assert broken_ten.sum() >= broken_one.sum()
