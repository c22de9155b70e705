"""LP-relaxation bound tightening (``--bounds lp``): CROWN first, then, layer by layer, one LP
per bound of each neuron CROWN leaves unstable.

For hidden layer k the LP is the triangle relaxation of layers 0..k-1 over the input box with
the (already tightened) bounds of those layers: active ReLUs ``a = z``, unstable ones
``a >= 0, a >= z, a <= u (z - l) / (u - l)`` plus ``l <= z <= u``; inactive ones are the
constant 0. It is at least as tight as CROWN's back-substitution (which uses one fixed linear
relaxation per neuron) and often stabilizes neurons, removing big-M binaries from the MILP.

Soundness does not rest on the LP solver's tolerances: each bound is the weak-duality value
``sum_i sup_{r in [L_i, U_i]} y_i r + sum_j sup_{x_j in [l_j, u_j]} (c - A^T y)_j x_j`` for the
dual vector y HiGHS returns (valid for ANY y, so a slightly infeasible dual only makes it
looser), used only when HiGHS reports the LP optimal, widened like every other bound, and
intersected with CROWN's: never looser than CROWN. A neuron whose LP is not optimal, or
that the time budget does not reach, keeps its CROWN bound.

One HiGHS LP per layer; only its objective changes between neurons, so the dual simplex
re-solves from the previous basis. Each LP has a small time limit and the whole pass a time
budget (a fraction of the per-input timeout).
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import scipy.sparse as sp

from robustbench_mr.verifiers.bounds.chain import SLACK, Bounds, crown_bounds, layer_crown
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.highs import deferred_signals

PER_LP_SECONDS = 0.5
DEFAULT_LP_BUDGET = 10.0  # seconds for the whole pass when the caller gives none


def _safe_max(c: np.ndarray, A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray, col_lb: np.ndarray, col_ub: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Upper bound of max c.x s.t. row_lo <= A x <= row_hi, col_lb <= x <= col_ub, valid for any y,
    and the magnitude of its terms (the scale of its round-off, for the widening)."""
    y = y.copy()
    y[~np.isfinite(row_lo) & (y < 0)] = 0.0  # sup over r <= hi of y r is finite only for y >= 0
    y[~np.isfinite(row_hi) & (y > 0)] = 0.0
    rows = np.where(y > 0, y * np.where(np.isfinite(row_hi), row_hi, 0.0), y * np.where(np.isfinite(row_lo), row_lo, 0.0))
    d = c - A.T @ y
    cols = np.where(d > 0, d * col_ub, d * col_lb)
    # |A^T y| and |c| enter d: their terms' size bounds d's round-off (times the column bound)
    dmag = np.abs(c) + abs(A).T @ np.abs(y)
    reach = np.maximum(np.abs(col_lb), np.abs(col_ub))
    mag = float(np.sum(np.abs(rows)) + np.sum(dmag * np.where(np.isfinite(reach), reach, 0.0)))
    return float(np.sum(rows) + np.sum(cols)), mag


class _LayerLp:
    """The triangle-relaxation LP of layers 0..k-1 (columns: inputs, then each layer's a)."""

    def __init__(self, network: Network, k: int, lo: np.ndarray, hi: np.ndarray, los: list[np.ndarray], his: list[np.ndarray]) -> None:
        from robustbench_mr.verifiers.highs import MilpError, drop_tiny_coefficients, quiet_highs

        affines = network.affines
        col_lb, col_ub = [lo], [hi]
        prev = np.arange(lo.size)  # columns of the previous layer's outputs (-1: constant 0)
        ncols = lo.size
        blocks_r, blocks_c, blocks_v, rlo, rhi = [], [], [], [], []
        nrows = 0

        def add(dense: np.ndarray, in_cols: np.ndarray, own: np.ndarray | None, own_coef: np.ndarray | None, lo_: np.ndarray, hi_: np.ndarray) -> None:
            nonlocal nrows
            r, c = np.nonzero(dense)
            blocks_r.append(r + nrows)
            blocks_c.append(in_cols[c])
            blocks_v.append(dense[r, c])
            if own is not None:
                blocks_r.append(np.arange(nrows, nrows + dense.shape[0]))
                blocks_c.append(own)
                blocks_v.append(own_coef)
            rlo.append(lo_)
            rhi.append(hi_)
            nrows += dense.shape[0]

        for j in range(k):
            W, b = affines[j].weight, affines[j].bias
            live = prev >= 0
            Wl, in_cols = W[:, live], prev[live]
            l, u = los[j], his[j]
            act = l >= 0
            uns = (l < 0) & (u > 0)
            cols = np.full(W.shape[0], -1, dtype=np.int64)
            ia, iu = np.nonzero(act)[0], np.nonzero(uns)[0]
            cols[ia] = np.arange(ncols, ncols + ia.size)
            cols[iu] = np.arange(ncols + ia.size, ncols + ia.size + iu.size)
            col_lb += [l[ia], np.zeros(iu.size)]
            col_ub += [u[ia], u[iu]]
            ncols += ia.size + iu.size
            if ia.size:  # a - W a_prev = b
                add(-Wl[ia], in_cols, cols[ia], np.ones(ia.size), b[ia], b[ia])
            if iu.size:
                lu, uu = l[iu], u[iu]
                s = uu / (uu - lu)
                add(-Wl[iu], in_cols, cols[iu], np.ones(iu.size), b[iu], np.full(iu.size, np.inf))  # a >= z
                add(-s[:, None] * Wl[iu], in_cols, cols[iu], np.ones(iu.size), np.full(iu.size, -np.inf), s * (b[iu] - lu))  # a <= s (z - l)
                add(Wl[iu], in_cols, None, None, lu - b[iu], uu - b[iu])  # l <= z <= u
            prev = cols
        r = np.concatenate(blocks_r) if blocks_r else np.zeros(0, dtype=np.int64)
        c = np.concatenate(blocks_c) if blocks_c else np.zeros(0, dtype=np.int64)
        v = np.concatenate(blocks_v) if blocks_v else np.zeros(0)
        A = sp.csr_matrix((v, (r, c)), shape=(nrows, ncols))
        A.sum_duplicates()
        A.sort_indices()
        self.col_lb, self.col_ub = np.concatenate(col_lb), np.concatenate(col_ub)
        row_lo = np.concatenate(rlo) if rlo else np.zeros(0)
        row_hi = np.concatenate(rhi) if rhi else np.zeros(0)
        self.A, self.row_lo, self.row_hi, _ = drop_tiny_coefficients(A, row_lo, row_hi, self.col_lb, self.col_ub)
        self.prev = prev  # columns of layer k-1's outputs
        self.W, self.b = affines[k].weight, affines[k].bias
        h = quiet_highs()
        for name, val in (("output_flag", False), ("threads", 1), ("presolve", "off"), ("solver", "simplex")):
            h.setOptionValue(name, val)
        if h.addVars(ncols, self.col_lb, self.col_ub) != highspy.HighsStatus.kOk:
            raise MilpError("HiGHS rejected the LP columns")
        if nrows and h.addRows(nrows, self.row_lo, self.row_hi, self.A.nnz, self.A.indptr[:-1].astype(np.int32),
                               self.A.indices.astype(np.int32), self.A.data) != highspy.HighsStatus.kOk:
            raise MilpError("HiGHS rejected the LP rows")
        if h.getNumRow() != nrows or h.getNumNz() != self.A.nnz:
            raise MilpError("HiGHS holds a different LP than built")
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.h = h
        self.ncols = ncols
        self._cost_cols = np.zeros(0, dtype=np.int32)

    def max_of(self, i: int, sign: float, seconds: float) -> float | None:
        """Sound upper bound of ``sign * z_k[i]`` over the relaxation, or None (not optimal)."""
        live = self.prev >= 0
        w = sign * self.W[i, live]
        cols = self.prev[live].astype(np.int32)
        h = self.h
        if self._cost_cols.size:
            h.changeColsCost(self._cost_cols.size, self._cost_cols, np.zeros(self._cost_cols.size))
        h.changeColsCost(cols.size, cols, w)
        self._cost_cols = cols
        # HiGHS measures time_limit against the total run time of this Highs object (its timer
        # accumulates over every LP solved on it), so the per-LP limit is relative to that
        h.setOptionValue("time_limit", h.getRunTime() + max(seconds, 0.01))
        with deferred_signals():  # Ctrl-C / SIGTERM raised after the solve, not lost inside HiGHS
            status = h.run()
        if status != highspy.HighsStatus.kOk or h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        sol = h.getSolution()
        if not sol.dual_valid:
            return None
        c = np.zeros(self.ncols)
        c[cols] = w
        y = np.asarray(sol.row_dual, dtype=np.float64)
        const = sign * self.b[i]
        v1, m1 = _safe_max(c, self.A, self.row_lo, self.row_hi, self.col_lb, self.col_ub, y)
        v2, m2 = _safe_max(c, self.A, self.row_lo, self.row_hi, self.col_lb, self.col_ub, -y)
        best, mag = (v1, m1) if v1 <= v2 else (v2, m2)
        if not np.isfinite(best):
            return None
        # widened by its own magnitude (relative, never absolute: see bounds.SLACK)
        return best + const + SLACK * (mag + abs(const))


def lp_bounds(network: Network, lower: np.ndarray, upper: np.ndarray, time_budget: float | None = None, base: Bounds | None = None) -> Bounds:
    """CROWN bounds, then LP tightening of still-unstable neurons within ``time_budget`` seconds."""
    start = time.perf_counter()
    budget = DEFAULT_LP_BUDGET if time_budget is None else max(float(time_budget), 0.0)
    cb = base if base is not None else crown_bounds(network, lower, upper)
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    affines = network.affines
    los, his = [cb.lower[0].copy()], [cb.upper[0].copy()]
    tightened = 0
    for k in range(1, len(affines)):
        l, u = cb.lower[k].copy(), cb.upper[k].copy()
        # CROWN again with the tightened relaxations of layers < k (intersected: never looser)
        rows = np.arange(l.size) if k == len(affines) - 1 else np.nonzero((l < 0) & (u > 0))[0]
        if rows.size and tightened:
            l_sym, u_sym = layer_crown(network, k, los, his, lo, hi, rows)
            l[rows] = np.maximum(l[rows], l_sym)
            u[rows] = np.minimum(u[rows], u_sym)
            l = np.minimum(l, u)
        if k < len(affines) - 1:
            todo = np.nonzero((l < 0) & (u > 0))[0]
            if todo.size and time.perf_counter() - start < budget:
                lp = _LayerLp(network, k, lo, hi, los, his)
                # nearly stable neurons first: an LP most likely removes their binary
                todo = todo[np.argsort(np.minimum(-l[todo], u[todo]))]
                for i in todo:
                    for sign in (1.0, -1.0):
                        left = budget - (time.perf_counter() - start)
                        if left <= 0:
                            break
                        if (sign > 0 and u[i] <= 0) or (sign < 0 and l[i] >= 0):
                            continue  # already stable on this side
                        v = lp.max_of(int(i), sign, min(PER_LP_SECONDS, left))
                        if v is None:
                            continue
                        if sign > 0:
                            new = v  # already widened by its magnitude (max_of)
                            if new < u[i]:
                                u[i], tightened = max(new, l[i]), tightened + 1
                        else:
                            new = -v
                            if new > l[i]:
                                l[i], tightened = min(new, u[i]), tightened + 1
                    if time.perf_counter() - start >= budget:
                        break
        los.append(l)
        his.append(u)
    return Bounds(tuple(los), tuple(his), "lp")
