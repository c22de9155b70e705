"""The same big-M MILP (``milp.build_milp_model``) solved by CBC, Gurobi or CPLEX through PuLP.

``--solver highs`` (the default) talks to HiGHS directly (``milp/model.py``); ``cbc`` uses the CBC
binary bundled with PuLP (``PULP_CBC_CMD``); ``gurobi`` / ``cplex`` use PuLP's Python API
(``GUROBI``, ``CPLEX_PY``) or else its command-line variant (``GUROBI_CMD``, ``CPLEX_CMD``).
The model is built row by row from the CSR matrix (no ``lpSum``), with one thread, the time
limit, and a warm start from an input point.

Statuses: PuLP reports ``LpStatus`` "Optimal" after a time limit with an incumbent, and maps
"not solved" to the solution status "infeasible" for some solvers. We read ``prob.sol_status``
together with ``prob.status`` and, for CBC, the status line CBC itself wrote:

* unreachable only on a proven infeasibility (``t >= -UNSAT_MARGIN`` is imposed as a column
  bound, so infeasible means max t < -UNSAT_MARGIN); the model is scaled (``milp`` module doc),
  so that margin is relative to t's range and above CBC's tolerances;
* reachable only on a solution (optimal or integer feasible) with t >= 0 (confirmed by a
  forward pass afterwards, as for HiGHS);
* anything else is a timeout; the objective and values are never read without a solution.

Coefficients and bounds pass through PuLP's MPS file with 13 significant digits, so each row
is widened by the rounding that can cause and continuous column bounds are rounded outward.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.milp.model import UNSAT_MARGIN, MilpError, MilpModel, MilpOutcome, MilpResult

PULP_SOLVERS = ("cbc", "gurobi", "cplex")
MPS_REL = 1e-11  # |rounding| of a number written with %.12e is <= 5e-13 relative; keep a margin


class SolverUnavailable(UserError):
    """The requested solver is not installed (a one-line user error)."""


def _candidates(name: str) -> list:
    import pulp

    if name == "cbc":
        return [_CbcWithStatus]
    if name == "gurobi":
        return [pulp.GUROBI, pulp.GUROBI_CMD]
    if name == "cplex":
        return [pulp.CPLEX_PY, pulp.CPLEX_CMD]
    raise UserError(f"--solver {name!r}: choose one of highs, {', '.join(PULP_SOLVERS)}")


try:  # pulp is a declared dependency; keep the import error for the first use
    import pulp as _pulp

    class _CbcWithStatus(_pulp.PULP_CBC_CMD):
        """PuLP's CBC that also keeps CBC's own status line (e.g. "Stopped on time - ...")."""

        raw_status = ""

        def get_status(self, filename):  # noqa: ANN001, ANN201 - PuLP's signature
            with open(filename) as fh:
                self.raw_status = fh.readline().strip()
            return super().get_status(filename)
except ImportError:  # pragma: no cover
    _CbcWithStatus = None  # type: ignore[assignment,misc]


def _new(cls, **kw):  # noqa: ANN001, ANN003, ANN202
    """Instantiate a PuLP solver class; PULP_CBC_CMD warns that PuLP 4 drops it (we pin pulp < 4)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cls(**kw)


@lru_cache(maxsize=None)
def _available_class(name: str):  # noqa: ANN202
    for cls in _candidates(name):
        if cls is None:
            continue
        try:
            if _new(cls, msg=False).available():
                return cls
        except Exception:  # noqa: BLE001 - a broken install counts as unavailable
            continue
    return None


def check_available(name: str) -> None:
    """Raise a one-line ``SolverUnavailable`` if PuLP cannot run ``name``."""
    if name == "highs":
        return
    if _available_class(name) is None:
        hint = {"cbc": "PuLP's bundled CBC binary is missing or not executable (pip install 'pulp>=3.3,<4')",
                "gurobi": "neither gurobipy nor gurobi_cl is available (install Gurobi and its licence)",
                "cplex": "neither the cplex Python package nor the cplex binary is available (install IBM CPLEX)"}[name]
        raise SolverUnavailable(f"--solver {name}: {hint}")


@lru_cache(maxsize=None)
def solver_version(name: str) -> str:
    """Name and version for the results database, e.g. ``CBC 2.10.3 (PuLP 3.3.2)``."""
    import pulp

    if name == "highs":
        import highspy

        return f"HiGHS {highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH} (highspy)"
    base = f"PuLP {pulp.__version__}"
    cls = _available_class(name)
    if cls is None:
        return f"{name} unavailable ({base})"
    if name == "cbc":
        try:
            out = subprocess.run([_new(cls, msg=False).path, "-quit"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL).stdout
            ver = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Version:")), "?")
        except Exception:  # noqa: BLE001
            ver = "?"
        return f"CBC {ver} ({base})"
    try:
        if name == "gurobi":
            import gurobipy

            return f"Gurobi {'.'.join(map(str, gurobipy.gurobi.version()))} ({base})"
        import cplex

        return f"CPLEX {cplex.__version__} ({base})"
    except Exception:  # noqa: BLE001 - a command-line install: no version from Python
        return f"{name} via {cls.__name__} ({base})"


def _make_solver(name: str, time_limit: float, warm: bool):  # noqa: ANN202
    cls = _available_class(name)
    if cls is None:
        check_available(name)  # raises
    limit = max(float(time_limit), 0.01)
    if name == "cbc":
        return _new(cls, msg=False, timeLimit=limit, threads=1, warmStart=warm, gapRel=0.0, gapAbs=0.0)
    if cls.__name__ == "GUROBI":
        return _new(cls, msg=False, timeLimit=limit, warmStart=warm, gapRel=0.0, Threads=1, MIPGapAbs=0.0)
    return _new(cls, msg=False, timeLimit=limit, warmStart=warm, gapRel=0.0, threads=1)


@dataclass
class PulpModel:
    prob: object
    variables: list
    model: MilpModel


def build_pulp_model(m: MilpModel) -> PulpModel:
    """The PuLP twin of ``m``: one LpAffineExpression per CSR row (fast, no lpSum)."""
    import pulp

    n = m.num_cols
    lb, ub = m.col_lb.copy(), m.col_ub.copy()
    cont = ~m.integer
    # MPS rounding must not shrink a continuous box; the t column gets the unreachability floor
    lb[cont] = lb[cont] - MPS_REL * (1.0 + np.abs(lb[cont]))
    ub[cont] = ub[cont] + MPS_REL * (1.0 + np.abs(ub[cont]))
    lb[m.t_col] = max(-UNSAT_MARGIN, float(m.col_lb[m.t_col]))
    ub[m.t_col] = m.col_ub[m.t_col] + MPS_REL * (1.0 + abs(m.col_ub[m.t_col])) if np.isfinite(m.col_ub[m.t_col]) else np.inf
    if lb[m.t_col] > ub[m.t_col]:
        ub[m.t_col] = lb[m.t_col]  # bounds already prove t < -UNSAT_MARGIN; keep the model consistent
    cat = np.where(m.integer, pulp.LpInteger, pulp.LpContinuous)
    prob = pulp.LpProblem("clause", pulp.LpMaximize)
    add = getattr(prob, "add_variable", None) or (lambda *a: pulp.LpVariable(*a))  # PuLP >= 3.3 spelling
    variables = [add(f"x{j}", float(lb[j]) if np.isfinite(lb[j]) else None, float(ub[j]) if np.isfinite(ub[j]) else None, str(cat[j]))
                 for j in range(n)]
    prob.setObjective(pulp.LpAffineExpression([(variables[m.t_col], 1.0)]))
    A = m.A
    reach = np.maximum(np.abs(lb), np.abs(ub))
    reach[~np.isfinite(reach)] = 0.0  # only the t column (coefficient 1, exact in MPS)
    absA = abs(A)
    slack = MPS_REL * (absA @ reach)
    indptr, indices, data = A.indptr, A.indices, A.data
    for i in range(A.shape[0]):
        a, b = indptr[i], indptr[i + 1]
        lo, hi = m.row_lo[i], m.row_hi[i]
        if b == a:
            if lo > 0 or hi < 0:
                raise MilpError(f"row {i} has no coefficients and excludes 0")
            continue
        terms = [(variables[j], v) for j, v in zip(indices[a:b].tolist(), data[a:b].tolist())]
        s = float(slack[i])
        if np.isfinite(lo) and np.isfinite(hi) and lo == hi and s == 0.0:
            prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), pulp.LpConstraintEQ, f"r{i}", float(lo)))
            continue
        if np.isfinite(lo):
            prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), pulp.LpConstraintGE, f"r{i}l", float(lo - s - MPS_REL * abs(lo))))
        if np.isfinite(hi):
            prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), pulp.LpConstraintLE, f"r{i}u", float(hi + s + MPS_REL * abs(hi))))
    return PulpModel(prob, variables, m)


def _classify(status: int, sol_status: int, raw: str, t_value: float | None) -> tuple[MilpOutcome, str]:
    """Outcome from PuLP's status pair (and CBC's own status line when known); never from
    ``LpStatus`` alone. ``t_value`` is read by the caller only when a solution exists."""
    import pulp

    msg = f"{pulp.LpStatus.get(status, status)} / {pulp.LpSolution.get(sol_status, sol_status)}" + (f" / {raw}" if raw else "")
    raw_l = raw.lower()
    if raw and (raw_l.startswith("stopped") or raw_l.startswith("unbounded")):
        proven_optimal = proven_infeasible = False
    else:
        proven_optimal = status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionOptimal and (not raw or raw_l.startswith("optimal"))
        # CBC's "Integer infeasible" (no integer point; PuLP leaves sol_status at "no solution
        # found") is as much a proof as "Infeasible"; other solvers need both PuLP codes
        proven_infeasible = status == pulp.LpStatusInfeasible and (
            (sol_status == pulp.LpSolutionInfeasible and (not raw or raw_l.startswith("infeasible"))) or raw_l.startswith("integer infeasible"))
    has_solution = sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) and not proven_infeasible
    if proven_infeasible:
        return MilpOutcome.UNREACHABLE, msg
    if has_solution and t_value is not None and t_value >= 0.0:
        return MilpOutcome.REACHABLE, msg
    if proven_optimal and t_value is not None and t_value < -UNSAT_MARGIN:
        return MilpOutcome.UNREACHABLE, msg  # an optimal t in [-UNSAT_MARGIN, 0) is within the tolerances of 0: no proof
    if status == pulp.LpStatusUnbounded or sol_status == pulp.LpSolutionUnbounded:
        return MilpOutcome.ERROR, "unexpected: " + msg
    return MilpOutcome.TIMEOUT, msg


def solve_clause_pulp(m: MilpModel, solver: str, time_budget: float, warm_start: np.ndarray | None = None) -> MilpResult:
    """Maximize t with PuLP's ``solver`` (cbc | gurobi | cplex) within ``time_budget`` seconds
    (model building included; the solver's own limit is soft)."""
    start = time.perf_counter()
    pm = build_pulp_model(m)
    if warm_start is not None:
        v = m.solution_from_input(warm_start)
        if v[m.t_col] >= -UNSAT_MARGIN:  # otherwise the point violates t's floor: no use as a start
            for var, val in zip(pm.variables, v):
                lo = var.lowBound if var.lowBound is not None else -np.inf
                hi = var.upBound if var.upBound is not None else np.inf
                var.setInitialValue(float(min(max(val, lo), hi)))
        else:
            warm_start = None
    remaining = time_budget - (time.perf_counter() - start)
    if remaining <= 0:
        return MilpResult(MilpOutcome.TIMEOUT, -np.inf, np.inf, None, time.perf_counter() - start, "no time left after building the PuLP model")
    s = _make_solver(solver, remaining, warm_start is not None)
    prob = pm.prob
    prob.solve(s)
    raw = getattr(s, "raw_status", "")
    import pulp

    has_solution = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    t_var = pm.variables[m.t_col]
    t_value = float(t_var.varValue) if has_solution and t_var.varValue is not None else None
    outcome, msg = _classify(prob.status, prob.sol_status, raw, t_value)
    seconds = time.perf_counter() - start
    point = None
    if outcome is MilpOutcome.REACHABLE:
        point = m.input_point(np.array([v.varValue or 0.0 for v in pm.variables], dtype=np.float64))
    best = t_value if t_value is not None else -np.inf  # scaled units (milp module doc)
    if outcome is MilpOutcome.UNREACHABLE:
        dual = -UNSAT_MARGIN  # optimal with t < -UNSAT_MARGIN, or infeasible with t >= -UNSAT_MARGIN imposed
    else:
        dual = np.inf  # PuLP reports no dual bound
    ts = m.t_scale
    return MilpResult(outcome, best * ts, dual * ts, point, seconds, f"{solver}: {msg}")
