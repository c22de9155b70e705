"""Projected gradient descent (Madry et al. 2018) with random restarts, L-inf or L2.

Defaults are the paper's evaluation: 20 steps, 10 random restarts, step 2/255. Each sample
is tracked on its own: a sample counts as broken if *any* restart misclassifies it, and the
first misclassified point found is kept (MadryLab's ``robustness`` keeps the last restart's
point instead, which can hide a success). Works on whatever device the model and data are on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.attacks.base import Attack, Norm, project_ball


@dataclass(frozen=True)
class PGDConfig:
    steps: int = 20
    restarts: int = 10
    step_size: float = 2 / 255
    random_start: bool = True
    seed: int = 0


class PGD(Attack):
    name = "pgd"

    def __init__(self, norm: Norm | str, eps: float, config: PGDConfig = PGDConfig(), *, model: nn.Module | None = None) -> None:
        self.bind(model)
        self.norm = Norm(norm)
        if self.norm not in (Norm.LINF, Norm.L2):
            raise ValueError("PGD supports linf and l2")
        self.eps = float(eps)
        self.config = config

    def random_point(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A uniform random point of the ball around ``x`` (in [0, 1]): a restart's start."""
        if self.norm is Norm.LINF:
            noise = (torch.rand(x.shape, generator=gen, device="cpu") * 2 - 1) * self.eps
        else:
            # uniform direction, radius uniform in [0, eps] (as torchattacks' PGDL2 does)
            d = torch.randn(x.shape, generator=gen, device="cpu").flatten(1)
            d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            r = torch.rand(x.shape[0], 1, generator=gen, device="cpu") * self.eps
            noise = (d * r).view_as(x)
        return project_ball(x + noise.to(x.device, x.dtype), x, self.norm, self.eps)

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm is Norm.LINF:
            return self.config.step_size * grad.sign()
        flat = grad.flatten(1)
        return (self.config.step_size * flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(grad)

    def run_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_start: torch.Tensor,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """One PGD run from ``x_start`` (no restarts); returns the final iterate. ``loss``
        (outputs, y) -> per-sample values to increase; default: cross-entropy (the spec
        falsifier, ``verifiers/decide/falsify.py``, passes the property's violation margin)."""
        x_adv = x_start.detach().clone()
        for _ in range(self.config.steps):
            x_adv.requires_grad_(True)
            out = model(x_adv)
            loss_value = F.cross_entropy(out, y, reduction="sum") if loss is None else loss(out, y).sum()
            (grad,) = torch.autograd.grad(loss_value, x_adv)
            x_adv = project_ball(x_adv.detach() + self._step(grad), x, self.norm, self.eps).detach()
        return x_adv

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.config.seed)
        best = x.detach().clone()
        broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with torch.no_grad():
            broken |= model(x).argmax(1) != y
        for restart in range(max(1, self.config.restarts)):
            todo = (~broken).nonzero().flatten()
            if todo.numel() == 0:
                break
            xs, ys = x[todo], y[todo]
            start = self.random_point(xs, gen) if self.config.random_start else xs.clone()
            adv = self.run_once(model, xs, ys, start)
            with torch.no_grad():
                hit = model(adv).argmax(1) != ys
            # keep the first successful point per sample; later restarts only run on the rest
            best[todo[hit]] = adv[hit]
            broken[todo[hit]] = True
            if restart == self.config.restarts - 1:
                # unbroken samples keep their last iterate (useful for inspection; still in the ball)
                best[todo[~hit]] = adv[~hit]
        return best
