"""Adversarial attacks (PGD, AutoAttack, Wasserstein) and the runner that stores their results.

Attacks give upper bounds on robust accuracy; the exact verifier gives lower bounds. The
runner (:mod:`robustbench_mr.attacks.runner`) writes one ``attack`` row per input into the
same results database as verification, so reports can put both side by side.
"""

from __future__ import annotations

from robustbench_mr.attacks.base import Attack, Norm, project_ball

__all__ = ["Attack", "Norm", "project_ball"]
