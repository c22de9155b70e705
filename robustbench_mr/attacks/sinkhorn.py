"""Projection onto a Wasserstein ball by projected Sinkhorn iterations.

Method of Wong, Schmidt & Kolter, "Wasserstein Adversarial Examples via Projected Sinkhorn
Iterations", ICML 2019 (Algorithm 1). Implemented here because the PyPI package
``projected-sinkhorn`` pins torch==1.0 and does not import.

Problem (entropy-regularized projection of ``w`` onto the ball of radius ``eps`` around ``x``;
both unit-mass, non-negative, one transport plan per channel over a local ``k x k`` window):

    min_{z, P >= 0}  (lam / 2) ||w - z||^2 + sum P log P
    s.t.  P 1 = x,  P^T 1 = z,  <P, C> <= eps.

Its dual is maximized by block coordinate ascent (our derivation, which matches the paper):

    alpha = log x - log(K_psi exp(beta))                     K_psi = exp(-psi C - 1)
    beta  = lam w - W(lam exp(lam w) * (K_psi^T exp(alpha)))  W = Lambert W
    psi   = max(0, psi - g'(psi) / g''(psi))                  one Newton step
    z     = w - beta / lam

Everything runs in the log domain: ``W(exp(s))`` is the Wright omega function, solved by Newton,
so ``lam = 3000`` never overflows. The local kernel makes ``K`` a convolution (``unfold``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kernel_offsets(kernel_size: int) -> list[tuple[int, int]]:
    r = kernel_size // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def local_cost(kernel_size: int = 5, p: int = 2, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Cost of moving mass by each offset of the ``k x k`` window: ``(dy^2 + dx^2)^(p/2)``."""
    if kernel_size % 2 != 1:
        raise ValueError("kernel_size must be odd")
    c = [math.hypot(dy, dx) ** p for dy, dx in kernel_offsets(kernel_size)]
    return torch.tensor(c, dtype=dtype, device=device)


def _neighbours(t: torch.Tensor, kernel_size: int, fill: float) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, k*k, H, W): value at pixel + offset (``fill`` outside the image)."""
    b, c, h, w = t.shape
    r = kernel_size // 2
    padded = F.pad(t.reshape(b * c, 1, h, w), (r, r, r, r), value=fill)
    cols = F.unfold(padded, kernel_size)  # (B*C, k*k, H*W), offsets in row-major order
    return cols.view(b, c, kernel_size * kernel_size, h, w)


def _log_kernel_apply(log_v: torch.Tensor, psi: torch.Tensor, cost: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """log(K_psi v) where (K_psi v)_i = sum_{j in window(i)} exp(-psi C_ij - 1) v_j.

    The window and the cost are symmetric, so the same function computes K^T v.
    """
    nb = _neighbours(log_v, kernel_size, float("-inf"))
    logk = -psi.view(-1, 1, 1, 1, 1) * cost.view(1, 1, -1, 1, 1) - 1.0
    return torch.logsumexp(nb + logk, dim=2)


def wright_omega(s: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """omega(s) = W(exp(s)), the solution of w + log w = s (Newton; exp(s) for s -> -inf)."""
    out = torch.where(s > 1.0, s - torch.log(s.clamp_min(1.0)), torch.exp(s.clamp(max=1.0)))
    small = s < -40.0  # W(e^s) = e^s to double precision there
    w = out.clamp_min(1e-300)
    for _ in range(iters):
        f = w + torch.log(w) - s
        w = (w - f / (1.0 + 1.0 / w)).clamp_min(1e-300)
    return torch.where(small, torch.exp(s), w)


def plan_from_duals(alpha: torch.Tensor, beta: torch.Tensor, psi: torch.Tensor, cost: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The plan P_ij = exp(alpha_i - psi C_ij - 1 + beta_j) as (B, C, k*k, H, W): mass sent from
    pixel i to pixel i + offset."""
    nb_beta = _neighbours(beta, kernel_size, float("-inf"))
    logk = -psi.view(-1, 1, 1, 1, 1) * cost.view(1, 1, -1, 1, 1) - 1.0
    return torch.exp(alpha.unsqueeze(2) + logk + nb_beta)


def projected_sinkhorn(
    x: torch.Tensor,
    w: torch.Tensor,
    eps: torch.Tensor | float,
    regularization: float = 3000.0,
    kernel_size: int = 5,
    p: int = 2,
    max_iter: int = 400,
    tol: float = 1e-4,
) -> torch.Tensor:
    """Project ``w`` onto the (entropic) Wasserstein ball of radius ``eps`` around ``x``.

    ``x``: (B, C, H, W), non-negative, each sample summing to 1 (the caller divides by the
    image's pixel sum and multiplies back). ``w``: same shape (any values). ``eps``: per sample.
    Returns ``z``: the column sums of a non-negative plan whose row sums are ``x``, so ``z >= 0``
    has exactly the mass of ``x`` and its transport cost from ``x`` is at most ``eps`` up to
    ``tol`` (relative; callers needing a hard guarantee check with an exact LP).
    """
    if x.dim() != 4 or x.shape != w.shape:
        raise ValueError("x and w must both be (B, C, H, W)")
    if (x < 0).any():
        raise ValueError("projected_sinkhorn needs non-negative x")
    dtype = torch.float64
    xd, wd = x.to(dtype), w.to(dtype)
    b = x.shape[0]
    eps_t = torch.as_tensor(eps, dtype=dtype, device=x.device).expand(b).clone()
    lam = float(regularization)
    cost = local_cost(kernel_size, p, dtype, x.device)
    n = x[0].numel()
    log_x = torch.log(xd)  # -inf on empty pixels: they send nothing
    alpha = torch.full_like(xd, -math.log(n))
    beta = torch.full_like(xd, -math.log(n))
    psi = torch.ones(b, dtype=dtype, device=x.device)
    lam_w = lam * wd
    for _ in range(max_iter):
        alpha = log_x - _log_kernel_apply(beta, psi, cost, kernel_size)
        log_u = _log_kernel_apply(alpha, psi, cost, kernel_size)
        beta = lam_w - wright_omega(math.log(lam) + lam_w + log_u)
        plan = plan_from_duals(alpha, beta, psi, cost, kernel_size)
        pc = (plan * cost.view(1, 1, -1, 1, 1)).flatten(1).sum(1)
        pcc = (plan * (cost**2).view(1, 1, -1, 1, 1)).flatten(1).sum(1)
        grad = pc - eps_t  # d(dual)/d(psi) = <P, C> - eps ... (sign: dual has -psi*eps + sum P)
        # Newton step on the concave 1-D dual in psi; psi stays >= 0 (inactive constraint -> 0)
        psi_new = (psi + grad / pcc.clamp_min(1e-300)).clamp_min(0.0)
        row_err = (plan.sum(2) - xd).abs().flatten(1).sum(1)
        ball_ok = (grad.abs() <= tol * eps_t.clamp_min(1e-12)) | ((psi_new == 0) & (grad <= 0))
        converged = ball_ok & (row_err <= tol)
        psi = psi_new
        if bool(converged.all()):
            break
    # Final step: beta for the final psi, then alpha so that the plan's row sums equal x exactly;
    # z is the plan's column sums. So z is the exact image of x under a non-negative plan P
    # (same mass, z >= 0) and W(x, z) <= <P, C>, which is within the tolerance of eps.
    log_u = _log_kernel_apply(alpha, psi, cost, kernel_size)
    beta = lam_w - wright_omega(math.log(lam) + lam_w + log_u)
    alpha = log_x - _log_kernel_apply(beta, psi, cost, kernel_size)
    z = beta.exp() * torch.exp(_log_kernel_apply(alpha, psi, cost, kernel_size))
    return z.to(x.dtype)
