"""The bound methods by name: one registry that the CLI's ``--bounds`` choices, the decision
stage, the engine and the tests all read (the dispatcher above the kernels: ``compute.py``).

Importing this module loads no engine (torch, HiGHS and scipy load when a method runs), so
``mr-eval --help`` stays fast.

* Chain form (``form/chain.py``, dense affine + ReLU): ``BOUND_METHODS``, run by
  ``compute.compute_bounds`` (``chain.py`` interval / CROWN, ``chain_alpha.py`` alpha-CROWN,
  ``bounds/lp_tighten.py`` LP tightening).
* Graph form (``form/graph.py``): :class:`BoundMethod`, run by ``engine.py``.
"""

from __future__ import annotations

import enum

BOUND_METHODS = ("interval", "crown", "lp", "alpha", "alpha-lp")
DEFAULT_BOUNDS = "lp"  # check_property / mr-eval verify: CROWN, escalated to LP only where needed (alpha-CROWN past decide.chain.LP_MAX_UNSTABLE)


class BoundMethod(str, enum.Enum):
    """The graph engine's methods (``engine.py``)."""

    INTERVAL = "interval"
    CROWN = "crown"
    ALPHA = "alpha"


GRAPH_METHODS = tuple(m.value for m in BoundMethod)
