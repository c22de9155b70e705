"""The MILP solvers by name (``--solver``), and the dispatcher above them: HiGHS in process
(``model.py``), CBC / Gurobi / CPLEX through PuLP (``milp/pulp_solver.py``). Importing this module
loads no solver."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from robustbench_mr.verifiers.bounds.chain import Bounds
    from robustbench_mr.verifiers.form.chain import Network
    from robustbench_mr.verifiers.milp.model import MilpResult
    from robustbench_mr.verifiers.spec.property import Clause

SOLVERS = ("highs", "cbc", "gurobi", "cplex")


def solve_clause(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, clause: Clause, t_upper: float, time_budget: float,
                 warm_start: np.ndarray | None = None, early_stop: bool = True, solver: str = "highs") -> tuple[MilpResult, int]:
    """Build and solve one clause's MILP with ``solver`` (HiGHS directly, or CBC / Gurobi /
    CPLEX through PuLP, ``milp/pulp_solver.py``). Returns (result, number of binaries)."""
    from robustbench_mr.verifiers.milp.model import build_clause_milp, build_milp_model, solve_clause_milp

    if solver == "highs":
        m = build_clause_milp(network, bounds, lower, upper, clause, t_upper=t_upper)
        return solve_clause_milp(m, time_budget, warm_start=warm_start, early_stop=early_stop), m.binaries
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    from robustbench_mr.verifiers.milp.pulp_solver import solve_clause_pulp

    mm = build_milp_model(network, bounds, lower, upper, clause, t_upper=t_upper)
    return solve_clause_pulp(mm, solver, time_budget, warm_start=warm_start), mm.binaries
