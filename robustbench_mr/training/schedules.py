"""Appendix B schedules (Jin & Rinard 2020), as functions of a *fractional* epoch.

The paper gives them for 100 epochs; every knot is stored as a fraction of the run so that
``--epochs N`` scales the whole schedule (knot at paper-epoch 40 -> 0.4 * N).

- learning rate (Maini et al.): 0 -> peak over epochs 0-40, -> mid over 40-80, -> 0 over 80-100
- eps: start (2/255) until epoch 10, linearly to the target (8/255) by epoch 35, then constant
- gamma_I, gamma_H: base value until epoch 20, linearly to ``growth`` x base by epoch 80

``t`` is ``epoch + step / steps_per_epoch`` so the learning rate moves every step (as in
Maini et al.); eps and the gammas use the same clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

PAPER_EPOCHS = 100


def piecewise_linear(t: float, knots: Sequence[tuple[float, float]]) -> float:
    """Linear interpolation through ``knots`` (sorted by time), constant outside them."""
    times = [k[0] for k in knots]
    if t <= times[0]:
        return float(knots[0][1])
    if t >= times[-1]:
        return float(knots[-1][1])
    i = bisect_right(times, t)
    (t0, v0), (t1, v1) = knots[i - 1], knots[i]
    if t1 == t0:
        return float(v1)
    return float(v0 + (v1 - v0) * (t - t0) / (t1 - t0))


@dataclass(frozen=True)
class Schedule:
    """All scheduled hyper-parameters of one run (values at paper knots, scaled to ``epochs``)."""

    epochs: int
    lr_peak: float = 0.1
    lr_mid: float = 0.005
    eps_start: float = 2 / 255
    eps_end: float = 8 / 255
    gamma_i: float = 0.4
    gamma_h: float = 50.0  # the default of TrainConfig (small on digits); Schedule itself has no dataset
    gamma_growth: float = 10.0

    def _at(self, paper_epoch: float) -> float:
        return self.epochs * paper_epoch / PAPER_EPOCHS

    def lr(self, t: float) -> float:
        return piecewise_linear(t, [(0.0, 0.0), (self._at(40), self.lr_peak), (self._at(80), self.lr_mid), (self._at(100), 0.0)])

    def eps(self, t: float) -> float:
        return piecewise_linear(t, [(self._at(10), self.eps_start), (self._at(35), self.eps_end)])

    def _gamma(self, base: float, t: float) -> float:
        return piecewise_linear(t, [(self._at(20), base), (self._at(80), base * self.gamma_growth)])

    def gamma_i_at(self, t: float) -> float:
        return self._gamma(self.gamma_i, t)

    def gamma_h_at(self, t: float) -> float:
        return self._gamma(self.gamma_h, t)
