"""The dispatcher above the chain form's bound kernels (``--bounds``, names in ``methods.py``):
``chain.py`` interval / CROWN, ``lp_tighten.py`` LP tightening, ``chain_alpha.py`` alpha-CROWN,
each imported when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from robustbench_mr.verifiers.bounds.methods import BOUND_METHODS

if TYPE_CHECKING:
    import numpy as np

    from robustbench_mr.verifiers.bounds.chain import Bounds
    from robustbench_mr.verifiers.form.chain import Network


def compute_bounds(network: Network, lower: np.ndarray, upper: np.ndarray, method: str = "crown", time_budget: float | None = None) -> Bounds:
    """``time_budget`` (seconds) limits the LP pass of ``lp`` and the alpha optimization of
    ``alpha`` (``alpha-lp``: each gets it); interval and crown ignore it."""
    if method == "interval":
        from robustbench_mr.verifiers.bounds.chain import interval_bounds

        return interval_bounds(network, lower, upper)
    if method == "crown":
        from robustbench_mr.verifiers.bounds.chain import crown_bounds

        return crown_bounds(network, lower, upper)
    if method == "lp":
        from robustbench_mr.verifiers.bounds.lp_tighten import lp_bounds

        return lp_bounds(network, lower, upper, time_budget)
    if method in ("alpha", "alpha-lp"):
        from robustbench_mr.verifiers.bounds.chain_alpha import alpha_bounds

        base = None
        if method == "alpha-lp":
            from robustbench_mr.verifiers.bounds.lp_tighten import lp_bounds

            base = lp_bounds(network, lower, upper, time_budget)
        b = alpha_bounds(network, lower, upper, time_budget, base=base)
        from robustbench_mr.verifiers.bounds.chain import Bounds

        return Bounds(b.lower, b.upper, method)
    raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(BOUND_METHODS)}")
