"""The verifier's named choices (bound methods, solvers, parallel backends) without importing
any engine: the CLIs build their parsers from these, so ``mr-eval --help`` loads neither torch
nor HiGHS nor scipy (start-up stays well under a second)."""

from __future__ import annotations

import os

BOUND_METHODS = ("interval", "crown", "lp", "alpha", "alpha-lp")
DEFAULT_BOUNDS = "lp"  # check_property / mr-eval verify: CROWN, escalated to LP only where needed
SOLVERS = ("highs", "cbc", "gurobi", "cplex")
BACKENDS = ("loky", "dask")


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))
