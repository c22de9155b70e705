"""Big-M MILP of "some input in the box reaches a clause" built with highspy's vectorized calls.

For one clause ``C y <= d`` we maximize ``t`` subject to ``t <= d_r - C_r y`` for every row r,
over the input box and the network's big-M encoding (``relu_encoding``). The clause is
reachable iff the maximum is >= 0. For local robustness the clause "y_j >= y_label" gives
t = y_j - y_label: the adversarial margin of target class j.

The solve stops as soon as it is decided (``early_stop``): an incumbent with t > 0 (a
candidate counterexample, confirmed afterwards by a float64 forward pass) or a dual bound
< 0 (proof). HiGHS's own time limit is soft, so a MIP callback interrupts the solve on our
own wall clock too. One HiGHS thread per solve: parallelism is over inputs.

Scale: the model is solved in scaled coordinates, so that no solver tolerance (absolute, about
1e-7 to 1e-9 in every MILP solver) is large next to the model's own values. Every column is
divided by a power of two near its largest bound (a ReLU output with bounds of 1e-12 becomes a
column in [0, ~1]), every row by a power of two near its largest coefficient, and the clause
slack t by a power of two near its range. Powers of two are exact in floating point, so the
scaled model is the same problem, and a function-preserving rescaling of a layer (W_k * s,
W_{k+1} / s) gives nearly the same scaled model. ``SAT_STOP`` and ``UNSAT_MARGIN`` are in
scaled units, i.e. relative to t's range; ``MilpResult`` reports t unscaled.

What counts as a proof (``UNREACHABLE``): a dual bound below ``-UNSAT_MARGIN`` (which is above
the solver's feasibility tolerances), or HiGHS's "optimal" with the best point plus HiGHS's own
optimality gap still below it. "Infeasible" is never a proof here: the model has a feasible
point for every input of the box (t is unbounded below), so an infeasible answer is a numerical
breakdown and gives ``UNKNOWN``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import highspy
import numpy as np
import scipy.sparse as sp

from robustbench_mr.verifiers.bounds.chain import Bounds
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import Clause
from robustbench_mr.verifiers.highs import MilpError, _ok, deferred_signals, drop_tiny_coefficients, quiet_highs
from robustbench_mr.verifiers.milp.relu_encoding import ColumnAllocator, SparseRows, encode_relu_layer

# Both in scaled units of t (relative to t's range, see the module doc).
# An incumbent t above this stops the search: it is confirmed by a forward pass anyway.
SAT_STOP = 1e-7
# A dual bound below -UNSAT_MARGIN proves the clause unreachable; it is 10x the primal and MIP
# feasibility tolerances we set (and CBC's default), so a proof survives them.
UNSAT_MARGIN = 1e-6
FEASIBILITY_TOL = 1e-7


@dataclass
class MilpModel:
    """The solver-independent big-M model: ``row_lo <= A x <= row_hi``, ``col_lb <= x <= col_ub``,
    ``x_j`` integer where ``integer[j]``; maximize ``x[t_col]``. Built once, handed to HiGHS
    (``build_clause_milp``) or to PuLP (``pulp_solver``)."""

    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lb: np.ndarray
    col_ub: np.ndarray
    integer: np.ndarray  # bool per column
    input_cols: np.ndarray
    layer_cols: list[np.ndarray]  # column of each ReLU output (-1: constant 0)
    binary_cols: list[np.ndarray]  # binary of each ReLU (-1: stable)
    t_col: int
    num_cols: int
    binaries: int
    clause: Clause
    network: Network
    dropped: int = 0  # tiny coefficients folded into the row bounds (see ``drop_tiny_coefficients``)
    col_scale: np.ndarray | None = None  # column j of the model is x_j / col_scale[j] (powers of two)

    @property
    def t_scale(self) -> float:
        return 1.0 if self.col_scale is None else float(self.col_scale[self.t_col])

    def input_point(self, col_value: np.ndarray) -> np.ndarray:
        """The input part of a scaled column vector, in input units."""
        v = np.asarray(col_value, dtype=np.float64)[self.input_cols]
        return v if self.col_scale is None else v * self.col_scale[self.input_cols]

    def solution_from_input(self, x: np.ndarray) -> np.ndarray:
        """A full (scaled) column vector (warm start) from an input point inside the box."""
        v = self._unscaled_solution(x)
        return v if self.col_scale is None else v / self.col_scale

    def _unscaled_solution(self, x: np.ndarray) -> np.ndarray:
        """The column vector in original units (the input, each ReLU output and binary, t)."""
        v = np.zeros(self.num_cols)
        v[self.input_cols] = x
        z = np.asarray(x, dtype=np.float64)
        affines = self.network.affines
        for k, layer in enumerate(affines[:-1]):
            pre = layer.weight @ z + layer.bias
            z = np.maximum(pre, 0.0)
            c, d = self.layer_cols[k], self.binary_cols[k]
            v[c[c >= 0]] = z[c >= 0]
            v[d[d >= 0]] = (pre[d >= 0] > 0).astype(np.float64)
        y = affines[-1].weight @ z + affines[-1].bias
        v[self.t_col] = float(np.min(self.clause.d - self.clause.C @ y))
        return v


@dataclass
class ClauseMilp(MilpModel):
    highs: highspy.Highs | None = None


def _pow2(v: np.ndarray) -> np.ndarray:
    """The power of two nearest (in log scale) to each positive finite v; 1 elsewhere."""
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    out = np.ones_like(v)
    out[ok] = np.exp2(np.round(np.log2(v[ok])))
    return out


def scale_model(A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray, col_lb: np.ndarray, col_ub: np.ndarray, integer: np.ndarray,
                col_ref: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scale columns by powers of two near ``col_ref`` (binaries stay unscaled), then rows by
    powers of two near their largest |coefficient|. Returns (A, row_lo, row_hi, col_lb, col_ub,
    col_scale) with x = col_scale * x_scaled; exact in floating point (powers of two)."""
    cs = _pow2(col_ref)
    cs[integer] = 1.0
    A = (A @ sp.diags(cs)).tocsr()
    row_max = np.zeros(A.shape[0])
    if A.nnz:
        row_of = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        np.maximum.at(row_max, row_of, np.abs(A.data))
    rs = 1.0 / _pow2(row_max)
    A = (sp.diags(rs) @ A).tocsr()
    A.sort_indices()
    return A, row_lo * rs, row_hi * rs, col_lb / cs, col_ub / cs, cs


def build_milp_model(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, clause: Clause, t_upper: float = np.inf) -> MilpModel:
    """The big-M model of one clause (solver independent), scaled (module doc), tiny
    coefficients of the scaled model folded into its row bounds."""
    cols = ColumnAllocator()
    rows = SparseRows.empty()
    input_cols = cols(lower, upper, integer=False)
    prev_cols = input_cols
    prev_const = np.zeros(input_cols.size)
    layer_cols, binary_cols, binaries = [], [], 0
    affines = network.affines
    for k, layer in enumerate(affines[:-1]):
        lc, const, nb = encode_relu_layer(rows, layer.weight, layer.bias, prev_cols, prev_const, bounds.lower[k], bounds.upper[k], cols)
        # the binaries of this layer were allocated right after its unstable a-columns
        bc = np.full(lc.size, -1, dtype=np.int64)
        unstable = np.nonzero((bounds.lower[k] < 0) & (bounds.upper[k] > 0) & (lc >= 0))[0]
        if nb:
            bc[unstable] = np.arange(cols.count - nb, cols.count)
        layer_cols.append(lc)
        binary_cols.append(bc)
        binaries += nb
        prev_cols, prev_const = lc, const
    # t + C W a <= d - C (b + W const)
    last = affines[-1]
    live = prev_cols >= 0
    CW = clause.C @ last.weight
    rhs = clause.d - clause.C @ (last.bias + last.weight[:, ~live] @ prev_const[~live])
    t_col = int(cols(np.array([-np.inf]), np.array([t_upper]), integer=False)[0])
    ids = rows.add_block(CW[:, live], prev_cols[live], np.full(rhs.size, -np.inf), rhs)
    rows.add_entries(ids, np.full(rhs.size, t_col), np.ones(rhs.size))

    n = cols.count
    r = np.concatenate(rows.rows) if rows.rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(rows.cols) if rows.cols else np.zeros(0, dtype=np.int64)
    v = np.concatenate(rows.vals) if rows.vals else np.zeros(0)
    keys = r.astype(np.int64) * n + c
    if np.unique(keys).size != keys.size:
        raise MilpError("duplicate (row, column) coefficient in the MILP")
    A = sp.csr_matrix((v, (r, c)), shape=(rows.count, n))
    A.sort_indices()
    lb = np.concatenate(cols.lb)
    ub = np.concatenate(cols.ub)
    row_lo = np.concatenate(rows.lo) if rows.lo else np.zeros(0)
    row_hi = np.concatenate(rows.hi) if rows.hi else np.zeros(0)
    integer = np.concatenate(cols.integer).astype(bool)
    # each column's reference size: its largest finite bound; t's: its range, from the bounds
    ref = np.maximum(np.abs(lb), np.abs(ub))
    ylo, yhi = bounds.lower[-1], bounds.upper[-1]
    t_lo = float(np.min(clause.d - (np.maximum(clause.C, 0) @ yhi + np.minimum(clause.C, 0) @ ylo)))
    t_ref = max(abs(t_lo) if np.isfinite(t_lo) else 0.0, abs(t_upper) if np.isfinite(t_upper) else 0.0)
    ref[t_col] = t_ref if t_ref > 0 else 1.0
    A, row_lo, row_hi, lb, ub, col_scale = scale_model(A, row_lo, row_hi, lb, ub, integer, ref)
    A, row_lo, row_hi, dropped = drop_tiny_coefficients(A, row_lo, row_hi, lb, ub)
    return MilpModel(A, row_lo, row_hi, lb, ub, integer, input_cols, layer_cols, binary_cols, t_col, n, binaries, clause, network, dropped, col_scale)


def highs_model(m: MilpModel) -> highspy.Highs:
    """A HiGHS instance holding model ``m`` (maximize t), checked entry by entry."""
    A, n = m.A, m.num_cols
    h = quiet_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_feasibility_tolerance", FEASIBILITY_TOL)
    h.setOptionValue("primal_feasibility_tolerance", FEASIBILITY_TOL)
    _ok(h.addVars(n, m.col_lb, m.col_ub), "the columns")
    integer = np.nonzero(m.integer)[0].astype(np.int32)
    if integer.size:
        types = np.full(integer.size, highspy.HighsVarType.kInteger)
        _ok(h.changeColsIntegrality(integer.size, integer, types), "the binaries")
    nrows = A.shape[0]
    _ok(h.addRows(nrows, m.row_lo, m.row_hi, A.nnz, A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32), A.data), "the rows")
    if h.getNumRow() != nrows or h.getNumCol() != n or h.getNumNz() != A.nnz:
        raise MilpError(f"HiGHS holds {h.getNumRow()} rows / {h.getNumNz()} nonzeros, expected {nrows} / {A.nnz}")
    _ok(h.changeColCost(m.t_col, 1.0), "the objective")
    _ok(h.changeObjectiveSense(highspy.ObjSense.kMaximize), "the objective sense")
    return h


def build_clause_milp(network: Network, bounds: Bounds, lower: np.ndarray, upper: np.ndarray, clause: Clause, t_upper: float = np.inf) -> ClauseMilp:
    m = build_milp_model(network, bounds, lower, upper, clause, t_upper)
    fields = {f: getattr(m, f) for f in MilpModel.__dataclass_fields__}
    return ClauseMilp(**fields, highs=highs_model(m))


class MilpOutcome(Enum):
    REACHABLE = "reachable"  # incumbent with t >= 0 (to be confirmed by a forward pass)
    UNREACHABLE = "unreachable"  # proven max t < 0
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"  # the solver's answer is not a proof either way (numerical trouble)
    ERROR = "error"


@dataclass(frozen=True)
class MilpResult:
    outcome: MilpOutcome
    best_t: float  # incumbent objective (-inf if none), in t's own units
    dual_bound: float  # proven upper bound on t, in t's own units
    point: np.ndarray | None  # input part of the incumbent
    seconds: float
    message: str = ""


def _option(h: highspy.Highs, name: str) -> float:
    """A numeric HiGHS option (highspy returns the value, or (status, value) in some versions)."""
    v = h.getOptionValue(name)
    return float(v[-1] if isinstance(v, tuple) else v)


def solve_clause_milp(m: ClauseMilp, time_budget: float, warm_start: np.ndarray | None = None, early_stop: bool = True) -> MilpResult:
    """Maximize t within ``time_budget`` wall seconds (enforced by a callback)."""
    start = time.perf_counter()
    h = m.highs
    h.setOptionValue("time_limit", max(time_budget, 0.01))
    if warm_start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = list(m.solution_from_input(warm_start))
        sol.value_valid = True
        h.setSolution(sol)  # a rejected warm start is harmless: it only guides the search
    deadline = start + time_budget

    def interrupt(e: highspy.highs.HighsCallbackEvent) -> None:
        out = e.data_out
        if caught or time.perf_counter() > deadline:  # caught: a deferred Ctrl-C / SIGTERM
            e.interrupt()
        elif early_stop and (out.mip_primal_bound > SAT_STOP or out.mip_dual_bound < -UNSAT_MARGIN):
            e.interrupt()

    h.cbMipInterrupt.subscribe(interrupt)
    with deferred_signals() as caught:  # an interrupt stops the solve and is raised after it
        try:
            run_status = h.run()
        finally:
            h.cbMipInterrupt.unsubscribe(interrupt)
    seconds = time.perf_counter() - start
    ts = m.t_scale
    if run_status == highspy.HighsStatus.kError:
        return MilpResult(MilpOutcome.ERROR, -np.inf, np.inf, None, seconds, "HiGHS run() returned kError")
    model_status = h.getModelStatus()
    info = h.getInfo()
    sol = h.getSolution()
    has_point = info.primal_solution_status == 2 and len(sol.col_value) == m.num_cols  # 2 = feasible
    best = float(info.objective_function_value) if has_point else -np.inf  # scaled units
    # a model solved in presolve leaves mip_dual_bound at 0.0 (valid but useless): "optimal"
    # below then uses the best point plus HiGHS's gap tolerance instead
    dual = float(info.mip_dual_bound)
    if np.isnan(dual):
        dual = np.inf  # no bound at all
    point = m.input_point(sol.col_value) if has_point else None
    msg = h.modelStatusToString(model_status)
    if model_status == highspy.HighsModelStatus.kInfeasible:
        # t is unbounded below, so every input of the box gives a feasible point: "infeasible"
        # is a numerical breakdown (tolerances against the model's values), never a proof
        return MilpResult(MilpOutcome.UNKNOWN, -np.inf, np.inf, None, seconds, f"HiGHS reports {msg} on a model that has a feasible point for every input: not a proof")
    if has_point and best >= 0.0:
        return MilpResult(MilpOutcome.REACHABLE, best * ts, dual * ts, point, seconds, msg)
    if model_status == highspy.HighsModelStatus.kOptimal and has_point:
        # "optimal" means the best point is within HiGHS's gap tolerances of the true maximum
        gap = max(_option(h, "mip_abs_gap"), _option(h, "mip_rel_gap") * abs(best))
        proven = min(dual, best + gap)
        if proven < -UNSAT_MARGIN:
            return MilpResult(MilpOutcome.UNREACHABLE, best * ts, proven * ts, point, seconds, msg)
        return MilpResult(MilpOutcome.TIMEOUT, best * ts, proven * ts, point, seconds,
                          f"{msg} with a gap straddling 0 (best {best * ts:.3g}, bound {proven * ts:.3g})")
    if np.isfinite(dual) and dual < -UNSAT_MARGIN:
        return MilpResult(MilpOutcome.UNREACHABLE, best * ts, dual * ts, point, seconds, msg)
    if model_status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kSolutionLimit, highspy.HighsModelStatus.kIterationLimit):
        return MilpResult(MilpOutcome.TIMEOUT, best * ts, dual * ts, point, seconds, msg)
    return MilpResult(MilpOutcome.ERROR, best * ts, dual * ts, point, seconds, f"unexpected HiGHS status: {msg}")
