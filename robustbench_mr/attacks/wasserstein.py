"""The Wasserstein attack of Wong, Schmidt & Kolter (ICML 2019) with their CIFAR-10 settings.

Each iteration takes an L-inf steepest-ascent step (``alpha`` = 0.1) on the cross-entropy,
projects onto the Wasserstein ball (p = 2 cost over a 5x5 window, entropic regularization
3000; images divided by their pixel sum for the projection and scaled back), and returns to
[0,1] by shrinking towards the clean image (Wong et al. clamp, which changes the mass; see
:func:`box_by_shrinking`). The radius starts at 0.001 and grows x1.17 every 10 iterations for samples not yet
broken, capped at the budget (0.1 in Jin & Rinard's Table 2); 400 iterations.

Because the entropic projection and the [0,1] clamp are approximate, :func:`transport_distance`
computes the exact transport cost (a linear program, HiGHS through scipy) so that the runner
only counts a sample broken when its point provably lies in the ball.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.attacks.base import Attack, Norm
from robustbench_mr.attacks.sinkhorn import kernel_offsets, projected_sinkhorn


@dataclass(frozen=True)
class WassersteinConfig:
    kernel_size: int = 5
    p: int = 2
    regularization: float = 3000.0
    alpha: float = 0.1
    eps_init: float = 0.001
    eps_factor: float = 1.17
    eps_every: int = 10
    iterations: int = 400
    sinkhorn_max_iter: int = 400
    sinkhorn_tol: float = 1e-4


class WassersteinAttack(Attack):
    name = "wasserstein"
    norm = Norm.WASSERSTEIN

    def __init__(self, eps: float, config: WassersteinConfig = WassersteinConfig(), *, model: nn.Module | None = None) -> None:
        self.bind(model)
        self.eps = float(eps)
        self.config = config

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        mass = x.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        radius = torch.full((x.shape[0],), min(cfg.eps_init, self.eps), dtype=torch.float64, device=x.device)
        x_adv = x.detach().clone()
        with torch.no_grad():
            broken = model(x_adv).argmax(1) != y
        for it in range(cfg.iterations):
            active = (~broken).nonzero().flatten()
            if active.numel() == 0:
                break
            xa = x_adv[active].clone().requires_grad_(True)
            loss = F.cross_entropy(model(xa), y[active], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xa)
            with torch.no_grad():
                stepped = xa.detach() + cfg.alpha * grad.sign()
                m = mass[active]
                proj = projected_sinkhorn(
                    x[active] / m, stepped / m, radius[active], cfg.regularization, cfg.kernel_size, cfg.p,
                    cfg.sinkhorn_max_iter, cfg.sinkhorn_tol,
                ) * m
                x_adv[active] = box_by_shrinking(x[active], proj)
                broken[active] = model(x_adv[active]).argmax(1) != y[active]
                if (it + 1) % cfg.eps_every == 0:
                    grow = ~broken
                    radius[grow] = (radius[grow] * cfg.eps_factor).clamp(max=self.eps)
        return x_adv


def box_by_shrinking(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Bring ``z`` (>= 0, mass of ``x``) into [0,1] by moving it towards ``x``: ``x + t (z - x)``
    with the largest ``t`` in [0,1] that keeps every pixel <= 1.

    Wong et al. clamp to [0,1] instead, which removes mass and so leaves the Wasserstein ball
    (no transport plan exists between images of different mass). The convex combination keeps
    the mass, stays in the ball (transport cost is convex in its second argument) and in [0,1].
    """
    over = z > 1.0
    ratio = torch.where(over, (1.0 - x) / (z - x).clamp_min(1e-12), torch.ones_like(z))
    t = ratio.flatten(1).amin(1).clamp(0.0, 1.0).view(-1, *([1] * (z.dim() - 1)))
    return (x + t * (z - x)).clamp(0.0, 1.0)  # the clamp only removes rounding (<1e-7)


def transport_distance(x: torch.Tensor, z: torch.Tensor, kernel_size: int = 5, p: int = 2, mass_rtol: float = 1e-5) -> float:
    """Exact optimal transport cost from image ``x`` to image ``z`` (C, H, W), after both are
    divided by ``x``'s pixel sum, moving mass only within the ``k x k`` window of each channel.

    Returns ``inf`` when the masses differ by more than ``mass_rtol`` (no plan exists; the default
    allows float32 rounding of a pixel sum, and ``z`` is rescaled to the exact mass of ``x``).
    """
    xs = x.detach().double().cpu().numpy()
    zs = z.detach().double().cpu().numpy()
    total = xs.sum()
    if total <= 0:
        return 0.0 if np.allclose(xs, zs) else float("inf")
    if abs(zs.sum() - total) > mass_rtol * total or (zs < 0).any():
        return float("inf")
    xs, zs = xs / total, zs / total
    c, h, w = xs.shape
    idx = np.arange(c * h * w).reshape(c, h, w)
    src, dst, cost = [], [], []
    for dy, dx in kernel_offsets(kernel_size):
        ys0, ys1 = max(0, -dy), min(h, h - dy)
        xs0, xs1 = max(0, -dx), min(w, w - dx)
        s = idx[:, ys0:ys1, xs0:xs1].ravel()
        d = idx[:, ys0 + dy:ys1 + dy, xs0 + dx:xs1 + dx].ravel()
        src.append(s)
        dst.append(d)
        cost.append(np.full(s.size, float(np.hypot(dy, dx)) ** p))
    src_a, dst_a, cost_a = np.concatenate(src), np.concatenate(dst), np.concatenate(cost)
    nvar, npix = src_a.size, c * h * w
    cols = np.arange(nvar)
    a_out = scipy.sparse.csr_matrix((np.ones(nvar), (src_a, cols)), shape=(npix, nvar))
    a_in = scipy.sparse.csr_matrix((np.ones(nvar), (dst_a, cols)), shape=(npix, nvar))
    # z is rescaled to x's exact mass so the equality system is consistent to rounding
    zs = zs * (xs.sum() / zs.sum())
    res = scipy.optimize.linprog(
        cost_a, A_eq=scipy.sparse.vstack([a_out, a_in]).tocsr(), b_eq=np.concatenate([xs.ravel(), zs.ravel()]),
        bounds=(0, None), method="highs",
        # HiGHS presolve declared feasible instances with ~1e-30 entries infeasible; plain simplex does not
        options={"presolve": False},
    )
    if res.status != 0:
        return float("inf")
    return float(res.fun)


def shrink_into_ball(x: torch.Tensor, z: torch.Tensor, eps: float, kernel_size: int = 5, p: int = 2) -> tuple[torch.Tensor, float]:
    """A point inside the Wasserstein ball of radius ``eps`` around ``x`` and its exact distance.

    If ``z`` lies outside (the entropic projection is only accurate to its tolerance), return
    ``x + t (z - x)`` with ``t = eps / W(x, z)``: the transport cost is convex in its second
    argument, so ``W(x, x + t(z - x)) <= t W(x, z) <= eps``; the point keeps the mass and stays
    in [0,1] (a convex combination). The returned distance is recomputed, not assumed.
    Returns ``(z, inf)`` when no plan exists (the masses differ).
    """
    dist = transport_distance(x, z, kernel_size, p)
    if dist <= eps or not np.isfinite(dist):
        return z, dist
    t = eps / dist * (1.0 - 1e-6)
    z2 = x + t * (z - x)
    return z2, transport_distance(x, z2, kernel_size, p)
