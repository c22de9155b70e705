"""The bound methods by name: one registry that the CLI's ``--bounds`` choices, the decision
stage and the tests all read, and the dispatcher above the kernels it chooses from.

Importing this module loads no engine (torch, HiGHS and scipy load when a method runs), so
``mr-eval --help`` stays fast.

* Chain form (``form/chain.py``, dense affine + ReLU): ``BOUND_METHODS``, run by
  :func:`compute_bounds` (``chain.py`` interval / CROWN, ``chain_alpha.py`` alpha-CROWN,
  ``bounds/lp_tighten.py`` LP tightening).
* Graph form (``form/graph.py``): :class:`BoundMethod`, run by ``engine.py``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from robustbench_mr.verifiers.bounds.chain import Bounds
    from robustbench_mr.verifiers.form.chain import Network

BOUND_METHODS = ("interval", "crown", "lp", "alpha", "alpha-lp")
DEFAULT_BOUNDS = "lp"  # check_property / mr-eval verify: CROWN, escalated to LP only where needed


class BoundMethod(str, enum.Enum):
    """The graph engine's methods (``engine.py``)."""

    INTERVAL = "interval"
    CROWN = "crown"
    ALPHA = "alpha"


GRAPH_METHODS = tuple(m.value for m in BoundMethod)


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
