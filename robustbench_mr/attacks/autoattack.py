"""AutoAttack (Croce & Hein 2020) through the reference implementation ``pyautoattack``.

``version='standard'`` runs APGD-CE, APGD-T, FAB-T and Square with the reference settings;
``version='plus'`` (AA+, what Jin & Rinard 2020 report) adds restarts, APGD-DLR and FAB.
torchattacks' ``AutoAttack`` is deliberately not used: it runs 10 iterations instead of 100.
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_mr.attacks.base import Attack, Norm

_AA_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


class AutoAttackEnsemble(Attack):
    """The AutoAttack ensemble. ``reduced_cost`` (tests only) shrinks iterations and queries."""

    def __init__(
        self,
        norm: Norm | str,
        eps: float,
        version: str = "standard",
        seed: int = 0,
        batch_size: int = 250,
        reduced_cost: dict[str, int] | None = None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        self.bind(model)
        self.norm = Norm(norm)
        if self.norm not in _AA_NORM:
            raise ValueError("AutoAttack supports linf and l2")
        if version not in ("standard", "plus"):
            raise ValueError("version must be 'standard' or 'plus'")
        self.eps = float(eps)
        self.version = version
        self.name = "autoattack" if version == "standard" else "autoattack-plus"
        self.seed = seed
        self.batch_size = batch_size
        self.reduced_cost = dict(reduced_cost or {})

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from pyautoattack import AutoAttack

        adversary = AutoAttack(model, norm=_AA_NORM[self.norm], eps=self.eps, version=self.version, device=x.device, seed=self.seed)
        n_iter = self.reduced_cost.get("n_iter")
        if n_iter:
            adversary.apgd.n_iter = n_iter
            adversary.apgd_targeted.n_iter = n_iter
            adversary.fab.n_iter = n_iter
        n_queries = self.reduced_cost.get("n_queries")
        if n_queries:
            adversary.square.n_queries = n_queries
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)
        return x_adv.detach().to(x.device, x.dtype)
