"""AutoAttack through pyautoattack: at least as strong as PGD, and inside its ball."""

from __future__ import annotations

import time

import pytest
import torch

from robustbench_mr.attacks.autoattack import AutoAttackEnsemble
from robustbench_mr.attacks.base import Norm, perturbation_size
from robustbench_mr.attacks.pgd import PGD
from robustbench_mr.data import load_dataset

pytest.importorskip("pyautoattack")


@pytest.fixture(scope="module")
def batch():
    x, y = load_dataset("digits", "test")
    return x[:30], y[:30]


def test_standard_autoattack_not_weaker_than_pgd(digits_model, batch):
    x, y = batch
    t0 = time.perf_counter()
    x_aa = AutoAttackEnsemble("linf", 8 / 255, "standard").perturb(digits_model, x, y)  # reference settings
    elapsed = time.perf_counter() - t0
    x_pgd = PGD("linf", 8 / 255).perturb(digits_model, x, y)
    acc_aa = (digits_model(x_aa).argmax(1) == y).float().mean().item()
    acc_pgd = (digits_model(x_pgd).argmax(1) == y).float().mean().item()
    assert acc_aa <= acc_pgd + 1 / 30 + 1e-9  # one input of slack
    assert x_aa.min() >= 0 and x_aa.max() <= 1
    assert (perturbation_size(x_aa, x, Norm.LINF) <= 8 / 255 + 1e-6).all()
    assert elapsed < 120  # a guard against runaway cost in CI, not a benchmark


def test_l2_points_inside_ball(digits_model, batch):
    x, y = batch
    x_aa = AutoAttackEnsemble("l2", 0.5, "standard", reduced_cost={"n_iter": 10, "n_queries": 100}).perturb(digits_model, x, y)
    assert x_aa.min() >= 0 and x_aa.max() <= 1
    assert (perturbation_size(x_aa, x, Norm.L2) <= 0.5 + 1e-5).all()
    assert (digits_model(x_aa).argmax(1) == y).float().mean() < (digits_model(x).argmax(1) == y).float().mean()


def test_rejects_wasserstein():
    with pytest.raises(ValueError):
        AutoAttackEnsemble("wasserstein", 0.1)
    with pytest.raises(ValueError):
        AutoAttackEnsemble("linf", 0.1, version="rand")
