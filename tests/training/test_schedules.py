"""The Appendix B schedules hit the paper's values at the paper's epochs, and scale with --epochs."""

from __future__ import annotations

import pytest

from robustbench_mr.training.presets import PAPER as PRESETS  # the paper's (CIFAR-10) numbers
from robustbench_mr.training.schedules import Schedule, piecewise_linear


def test_piecewise_linear_interpolates_and_clamps() -> None:
    knots = [(1.0, 2.0), (3.0, 6.0)]
    assert piecewise_linear(0.0, knots) == 2.0
    assert piecewise_linear(2.0, knots) == pytest.approx(4.0)
    assert piecewise_linear(9.0, knots) == 6.0


@pytest.mark.parametrize("preset,gamma_i,gamma_h", [("large", 0.8, 2400.0), ("small", 0.4, 9000.0)])
def test_appendix_b_values_at_named_epochs(preset: str, gamma_i: float, gamma_h: float) -> None:
    p = PRESETS[preset]
    assert (p.gamma_i, p.gamma_h, p.alpha, p.weight_decay, p.momentum, p.epochs) == (gamma_i, gamma_h, 8.0, 5e-4, 0.9, 100)
    s = Schedule(epochs=p.epochs, lr_peak=p.lr, lr_mid=p.lr_mid, eps_start=p.eps_start, eps_end=p.eps, gamma_i=p.gamma_i, gamma_h=p.gamma_h)
    # LR: 0 -> 0.1 over epochs 0-40, -> 0.005 by 80, -> 0 by 100
    assert s.lr(0) == 0.0
    assert s.lr(20) == pytest.approx(0.05)
    assert s.lr(40) == pytest.approx(0.1)
    assert s.lr(80) == pytest.approx(0.005)
    assert s.lr(90) == pytest.approx(0.0025)
    assert s.lr(100) == pytest.approx(0.0)
    # eps: 2/255 until epoch 10, 8/255 from epoch 35
    assert s.eps(0) == pytest.approx(2 / 255)
    assert s.eps(10) == pytest.approx(2 / 255)
    assert s.eps(22.5) == pytest.approx(5 / 255)
    assert s.eps(35) == pytest.approx(8 / 255)
    assert s.eps(99) == pytest.approx(8 / 255)
    # gammas: base until 20, 10x at 80
    for at, base in ((s.gamma_i_at, gamma_i), (s.gamma_h_at, gamma_h)):
        assert at(0) == pytest.approx(base)
        assert at(20) == pytest.approx(base)
        assert at(50) == pytest.approx(5.5 * base)
        assert at(80) == pytest.approx(10 * base)
        assert at(100) == pytest.approx(10 * base)


def test_schedule_scales_with_epochs() -> None:
    long, short = Schedule(epochs=100), Schedule(epochs=10)
    for t in (0, 3.5, 10, 22, 35, 40, 63, 80, 95, 100):
        assert short.lr(t / 10) == pytest.approx(long.lr(t))
        assert short.eps(t / 10) == pytest.approx(long.eps(t))
        assert short.gamma_h_at(t / 10) == pytest.approx(long.gamma_h_at(t))
