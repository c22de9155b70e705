"""Adversarial attacks (PGD, AutoAttack, Wasserstein) and the runner that stores their results.

Attacks give upper bounds on robust accuracy; the exact verifier gives lower bounds. The
runner (:mod:`robustbench_mr.attacks.runner`) writes one ``attack`` row per input into the
same results database as verification, so reports can put both side by side.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Attack", "Norm", "project_ball"]


def __getattr__(name: str) -> Any:
    """Load ``attacks.base`` (and torch) on first use, so that ``attacks.options`` (what the CLI
    builds its parser from) imports without torch."""
    if name in __all__:
        from robustbench_mr.attacks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
