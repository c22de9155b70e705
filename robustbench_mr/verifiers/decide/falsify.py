"""The falsifier for any property (VNN-LIB specs and dataset eps-balls): batched PGD on the
property's own violation margin, built on the project's PGD (``attacks/pgd.py``).

The box [lo, hi] is mapped to the unit cube (x = lo + u (hi - lo)), so one L-inf ball of
radius 1/2 around u = 1/2 is the box, whatever its widths. For a disjunction of clauses
``C_k y <= d_k`` the margin is min_k max_r (C_k,r y - d_k,r) (<= 0: a counterexample); PGD
increases its negative. Restarts run as one batch and are diversified: random points,
random corners, and output-diversified starts (ODI: a few steps along a random output
direction first); the step size falls over three phases. The time spent grows with the input
dimension (``budget_share``). A point is returned only when the float64 forward pass of the
network form puts it in some clause; callers confirm again on the original model
(onnxruntime for ONNX files).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from robustbench_mr.attacks.base import Norm
from robustbench_mr.attacks.pgd import PGD, PGDConfig
from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.spec.property import Property

PHASES = ((0.25, 10), (0.08, 15), (0.02, 15))  # (step size in unit-cube coordinates, steps)
ODI_STEPS = 4
PGD_MIN_INPUTS = 17  # below: the input split (``decide/input_split.py``, <= 16 inputs) searches the box itself


def budget_share(num_inputs: int) -> float:
    """Fraction of an instance's time for the attack: 5% for 5 inputs, ~30% for 784, 35% for 3072."""
    return float(min(0.35, 0.05 + 0.09 * math.log10(max(num_inputs, 1))))


def violation_margin(prop: Property, y: torch.Tensor) -> torch.Tensor:
    """(N,) min over clauses of max over rows of C y - d (<= 0: y is unsafe)."""
    margins = []
    for c in prop.clauses:
        C = torch.as_tensor(c.C, dtype=y.dtype, device=y.device)
        d = torch.as_tensor(c.d, dtype=y.dtype, device=y.device)
        margins.append((y @ C.T - d).amax(dim=1))
    return torch.stack(margins, dim=1).amin(dim=1)


class _OnCube(torch.nn.Module):
    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], lo: torch.Tensor, hi: torch.Tensor) -> None:
        super().__init__()
        self.forward_flat, self.lo, self.width = forward, lo, hi - lo

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_flat(self.lo + u * self.width)


def spec_pgd(forward: Callable[[torch.Tensor], torch.Tensor], prop: Property, deadline: Deadline, restarts: int = 64, seed: int = 0,
             share: float | None = None) -> tuple[np.ndarray, float] | None:
    """A confirmed counterexample (x, margin <= 0) or None. ``forward``: float64 (N, n) -> (N, outputs)."""
    lo = torch.as_tensor(prop.lower, dtype=torch.float64)
    hi = torch.as_tensor(prop.upper, dtype=torch.float64)
    n = lo.numel()
    own = Deadline(max(0.0, deadline.left()) * (budget_share(n) if share is None else share))
    model = _OnCube(forward, lo, hi)
    gen = torch.Generator().manual_seed(seed)
    center = torch.full((restarts, n), 0.5, dtype=torch.float64)
    y_dummy = torch.zeros(restarts, dtype=torch.long)

    def loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return -violation_margin(prop, out)

    # diversified starts: a third random, a third random corners, a third ODI
    k = restarts // 3
    u = torch.rand(restarts, n, generator=gen, dtype=torch.float64)
    u[k:2 * k] = (u[k:2 * k] > 0.5).to(torch.float64)
    u[0] = 0.5
    if restarts - 2 * k > 0 and not own.expired():
        odi = PGD(Norm.LINF, 0.5, PGDConfig(steps=ODI_STEPS, restarts=1, step_size=0.25, random_start=False))
        w = torch.randn(restarts - 2 * k, prop.clauses[0].C.shape[1] if prop.clauses else 1, generator=gen, dtype=torch.float64)
        u[2 * k:] = odi.run_once(model, center[2 * k:], y_dummy[2 * k:], u[2 * k:], loss=lambda out, _y: (out * w).sum(1))
    best_x, best_m = None, math.inf
    for step, steps in PHASES:
        if own.expired():
            break
        u = PGD(Norm.LINF, 0.5, PGDConfig(steps=steps, restarts=1, step_size=step, random_start=False)).run_once(model, center, y_dummy, u, loss=loss)
        with torch.no_grad():
            m = violation_margin(prop, model(u))
        i = int(torch.argmin(m))
        if float(m[i]) < best_m:
            best_m, best_x = float(m[i]), (lo + u[i] * (hi - lo)).clamp(lo, hi)
        if best_m <= 0:
            break
    if best_x is None or best_m > 0:
        return None
    x = best_x.numpy()
    with torch.no_grad():
        y = forward(torch.as_tensor(x).reshape(1, -1))
    if not prop.is_violated_by(y[0].numpy()):
        return None
    return x, best_m


def torch_forward_of(net: object) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float64 torch forward (N, n) -> (N, outputs) of a chain ``Network`` or a ``Graph``."""
    from robustbench_mr.verifiers.form.chain import Affine, Network

    if not isinstance(net, Network):
        return net.forward_torch  # type: ignore[attr-defined]
    layers = [(torch.from_numpy(layer.weight), torch.from_numpy(layer.bias)) if isinstance(layer, Affine) else None for layer in net.layers]

    def forward(x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(x.shape[0], -1)
        for layer in layers:
            z = torch.clamp(z, min=0) if layer is None else z @ layer[0].T + layer[1]
        return z
    return forward
