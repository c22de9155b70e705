"""Real provably-trained nets (locuslab/convex_adversarial, ../shared/data/wong2018): a handful
of fast MNIST inputs at the training eps. The MNIST sibling of MIPVerify's WK17a is certified
on ~95% of inputs at eps 0.1 (SOURCE.md), so the first inputs should be decided, and no
verified input may be broken by an attack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mr.verifiers.spec.property import robustness_property
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from robustbench_mr.verifiers.form.chain_from_torch import from_torch


def _wong_net(state: dict) -> nn.Sequential:
    m = nn.Sequential(nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
    m.load_state_dict(state)
    return m.eval()


def _pgd_breaks(model: nn.Module, x: torch.Tensor, label: int, eps: float) -> bool:
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        xa = (x + (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * eps).clamp(lo, hi)
        for _ in range(40):
            xa.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(xa[None]), torch.tensor([label]))
            (grad,) = torch.autograd.grad(loss, xa)
            xa = torch.max(torch.min(xa.detach() + eps / 8 * grad.sign(), hi), lo)
        if int(model(xa[None]).argmax()) != label:
            return True
    return False


def test_mnist_wk2017_first_inputs(shared_dir: Path) -> None:
    torch.set_num_threads(1)
    path = shared_dir / "data" / "wong2018" / "mnist_wk2017_0_1.pth"
    images = shared_dir / "data" / "eran_test_images" / "mnist_test.csv"
    if not path.exists() or not images.exists():
        pytest.skip("wong2018 / eran_test_images data not present")
    model = _wong_net(torch.load(path, weights_only=True, map_location="cpu")).double()
    net = from_torch(model, (1, 28, 28))
    rows = np.loadtxt(images, delimiter=",", max_rows=100)
    x, y = rows[:, 1:] / 255.0, rows[:, 0].astype(int)
    with torch.no_grad():
        ref = model(torch.from_numpy(x).reshape(-1, 1, 28, 28)).numpy()
    assert np.allclose(net.forward(x), ref, atol=1e-9)
    assert (ref.argmax(1) == y).mean() >= 0.95  # the published model's clean accuracy (~98%)
    verified = 0
    for i in range(3):
        r = check_property(net, robustness_property(x[i], int(y[i]), 0.1, 10), timeout=30)
        assert r.status in (PropertyStatus.UNSAT, PropertyStatus.SAT), r
        if r.status is PropertyStatus.UNSAT:
            verified += 1
            assert not _pgd_breaks(model, torch.from_numpy(x[i]).reshape(1, 28, 28), int(y[i]), 0.1)
    assert verified >= 2
