"""The big-M MILP of a ``Graph``, built op by op (each op's ``milp_rows``), one per clause.

Every node gets a column per value (a reshape shares its input's columns), bounded by the
engine's bounds of that node; linear ops and convolutions give one equality row per output
(sparse: a convolution's rows have kernel-size entries); residual Adds are equality rows;
ReLUs go through ``relu_encoding.encode_relu_columns`` (binaries only on unstable neurons);
MaxPool has its exact encoding. The clause's slack t <= d_r - C_r y is maximized; the model
is scaled and handed to HiGHS exactly as the chain MILP (``milp/model.py``): the same proof rules
(``solve_clause_milp``) apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.engine import GraphBounds
from robustbench_mr.verifiers.form.graph import Graph
from robustbench_mr.verifiers.form.ops import ReLU
from robustbench_mr.verifiers.milp.model import (MilpError, MilpModel, MilpOutcome, drop_tiny_coefficients, highs_model,
                                           scale_model, solve_clause_milp)
from robustbench_mr.verifiers.spec.property import Clause, Property
from robustbench_mr.verifiers.milp.relu_encoding import ColumnAllocator, SparseRows, encode_relu_columns
from robustbench_mr.verifiers.status import PropertyResult
from robustbench_mr.verifiers.status import PropertyStatus


class GraphMilpBuilder:
    """What an op's ``milp_rows`` may call: columns, rows, and the ReLU encoding."""

    def __init__(self) -> None:
        self.cols = ColumnAllocator()
        self.rows = SparseRows.empty()
        self.binaries = 0

    def new_cols(self, lb: np.ndarray, ub: np.ndarray, integer: bool = False) -> np.ndarray:
        return self.cols(lb, ub, integer)

    def row(self, cols: list[int], vals: list[float], lo: float, hi: float) -> None:
        ids = self.rows.add_block(np.zeros((1, 0)), np.zeros(0, dtype=np.int64), np.array([lo]), np.array([hi]))
        self.rows.add_entries(np.repeat(ids, len(cols)), np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=np.float64))
        self.binaries = int(sum(int(np.sum(i)) for i in self.cols.integer))

    def affine(self, out: np.ndarray, terms: list[tuple[np.ndarray, sp.spmatrix]], bias: np.ndarray) -> None:
        """out = sum_k M_k in_k + bias, one equality row per output."""
        n = out.size
        ids = self.rows.add_block(np.zeros((n, 0)), np.zeros(0, dtype=np.int64), bias, bias)
        self.rows.add_entries(ids, out.reshape(-1), np.ones(n))
        for cols, M in terms:
            M = sp.coo_matrix(M)
            keep = M.data != 0
            self.rows.add_entries(ids[M.row[keep]], cols.reshape(-1)[M.col[keep]], -M.data[keep])

    def relu(self, out: np.ndarray, inp: np.ndarray, in_box: tuple[torch.Tensor, torch.Tensor]) -> None:
        lo, hi = (t[0].reshape(-1).cpu().numpy() for t in in_box)
        self.binaries += encode_relu_columns(self.rows, inp.reshape(-1), out.reshape(-1), lo, hi, self.cols)

    def alias(self, out: np.ndarray, inp: np.ndarray) -> None:
        raise AssertionError("aliases are resolved by build_graph_milp")


@dataclass
class GraphMilpModel(MilpModel):
    graph: Graph | None = None
    node_cols: list[np.ndarray] = field(default_factory=list)

    def _unscaled_solution(self, x: np.ndarray) -> np.ndarray:
        """The column vector of an input point: every node's value, each binary, t."""
        v = np.zeros(self.num_cols)
        with torch.no_grad():
            vals = self.graph.forward_all(torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(1, -1), device=self.graph.device))
        for i, cols in enumerate(self.node_cols):
            v[cols.reshape(-1)] = vals[i].reshape(-1).cpu().numpy()
        for i, n in enumerate(self.graph.nodes):
            if isinstance(n.op, ReLU):
                pre = vals[n.inputs[0]].reshape(-1).cpu().numpy()
                b = self.binary_cols[i] if i < len(self.binary_cols) else None
                if b is not None and b.size:
                    mask = b >= 0
                    v[b[mask]] = (pre[mask] > 0).astype(np.float64)
        y = vals[self.graph.output].reshape(-1).cpu().numpy()
        v[self.t_col] = float(np.min(self.clause.d - self.clause.C @ y))
        return v


def build_graph_milp(graph: Graph, gb: GraphBounds, prop: Property, clause: Clause, t_upper: float = np.inf) -> GraphMilpModel:
    b = GraphMilpBuilder()
    node_cols: list[np.ndarray] = []
    binary_cols: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in graph.nodes]
    for i, n in enumerate(graph.nodes):
        lo, hi = (t[0].reshape(-1).cpu().numpy() for t in gb.boxes[i])
        if i == 0:
            node_cols.append(b.new_cols(prop.lower, prop.upper).reshape(n.shape))
            continue
        if n.op.kind == "reshape":
            node_cols.append(node_cols[n.inputs[0]].reshape(n.shape))
            continue
        cols = b.new_cols(lo, hi).reshape(n.shape)
        node_cols.append(cols)
        first_binary = b.cols.count
        n.op.milp_rows(b, [node_cols[j] for j in n.inputs], cols, [gb.boxes[j] for j in n.inputs], gb.boxes[i])
        if isinstance(n.op, ReLU):
            plo, phi = (t[0].reshape(-1).cpu().numpy() for t in gb.boxes[n.inputs[0]])
            unstable = (plo < 0) & (phi > 0)
            bc = np.full(plo.size, -1, dtype=np.int64)
            bc[np.nonzero(unstable)[0]] = np.arange(first_binary, b.cols.count)
            binary_cols[i] = bc
    y = node_cols[graph.output].reshape(-1)
    t_col = int(b.new_cols(np.array([-np.inf]), np.array([t_upper]))[0])
    R = clause.C.shape[0]
    ids = b.rows.add_block(clause.C, y, np.full(R, -np.inf), clause.d)  # t + C y <= d
    b.rows.add_entries(ids, np.full(R, t_col), np.ones(R))
    cols, rows = b.cols, b.rows
    n = cols.count
    r = np.concatenate(rows.rows)
    c = np.concatenate(rows.cols)
    v = np.concatenate(rows.vals)
    keys = r.astype(np.int64) * n + c
    if np.unique(keys).size != keys.size:
        raise MilpError("duplicate (row, column) coefficient in the graph MILP")
    A = sp.csr_matrix((v, (r, c)), shape=(rows.count, n))
    A.sort_indices()
    lb, ub = np.concatenate(cols.lb), np.concatenate(cols.ub)
    row_lo, row_hi = np.concatenate(rows.lo), np.concatenate(rows.hi)
    integer = np.concatenate(cols.integer).astype(bool)
    ref = np.maximum(np.abs(lb), np.abs(ub))
    ylo, yhi = (t[0].reshape(-1).cpu().numpy() for t in gb.boxes[graph.output])
    t_lo = float(np.min(clause.d - (np.maximum(clause.C, 0) @ yhi + np.minimum(clause.C, 0) @ ylo)))
    t_ref = max(abs(t_lo) if np.isfinite(t_lo) else 0.0, abs(t_upper) if np.isfinite(t_upper) else 0.0)
    ref[t_col] = t_ref if t_ref > 0 else 1.0
    ref = np.where(np.isfinite(ref), ref, 1.0)
    A, row_lo, row_hi, lb, ub, col_scale = scale_model(A, row_lo, row_hi, lb, ub, integer, ref)
    A, row_lo, row_hi, dropped = drop_tiny_coefficients(A, row_lo, row_hi, lb, ub)
    input_cols = node_cols[0].reshape(-1)
    return GraphMilpModel(A, row_lo, row_hi, lb, ub, integer, input_cols, [], binary_cols, t_col, n, int(integer.sum()), clause, None,
                          dropped, col_scale, graph=graph, node_cols=node_cols)


def solve_graph_property(graph: Graph, prop: Property, gb: GraphBounds, deadline: Deadline, solver: str = "highs", start: float | None = None,
                         unstable: int = 0) -> PropertyResult:
    """One MILP per clause (most promising first), stopping at the first confirmed counterexample;
    ``solver``: HiGHS in process, or cbc / gurobi / cplex through PuLP (``solvers.SOLVERS``)."""
    start = time.perf_counter() if start is None else start
    from robustbench_mr.verifiers.milp.solvers import SOLVERS

    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    warm = (prop.lower + prop.upper) / 2
    solves, binaries, unknown = 0, 0, ""
    for clause in prop.clauses:
        if deadline.expired():
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, time.perf_counter() - start, f"time up after {solves} graph MILP solve(s)",
                                  unstable, binaries, "milp-graph", solves)
        m = build_graph_milp(graph, gb, prop, clause)
        binaries = max(binaries, m.binaries)
        if solver == "highs":
            r = solve_clause_milp(with_highs(m), deadline.left(), warm_start=warm)
        else:  # the same model through PuLP (cbc / gurobi / cplex), as for the chain MILP
            from robustbench_mr.verifiers.milp.pulp_solver import solve_clause_pulp

            r = solve_clause_pulp(m, solver, deadline.left(), warm_start=warm)
        solves += 1
        if r.outcome is MilpOutcome.REACHABLE and r.point is not None:
            x = np.clip(r.point, prop.lower, prop.upper)
            y = graph.forward(x)
            if prop.is_violated_by(y):
                return PropertyResult(PropertyStatus.SAT, x, y, time.perf_counter() - start, f"graph MILP counterexample (t={r.best_t:.3g})",
                                      unstable, binaries, "milp-graph", solves, r.dual_bound)
            unknown = f"graph MILP incumbent t={r.best_t:.3g} not confirmed by the float64 forward pass"
            continue
        if r.outcome is MilpOutcome.UNREACHABLE:
            continue
        if r.outcome is MilpOutcome.UNKNOWN:
            unknown = r.message
            continue
        if r.outcome is MilpOutcome.TIMEOUT:
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, time.perf_counter() - start, f"graph MILP stopped: {r.message}",
                                  unstable, binaries, "milp-graph", solves, r.dual_bound)
        return PropertyResult(PropertyStatus.ERROR, None, None, time.perf_counter() - start, r.message, unstable, binaries, "milp-graph", solves)
    if unknown:
        return PropertyResult(PropertyStatus.UNKNOWN, None, None, time.perf_counter() - start, unknown, unstable, binaries, "milp-graph", solves)
    return PropertyResult(PropertyStatus.UNSAT, None, None, time.perf_counter() - start, f"every clause proven unreachable ({solves} graph MILP solve(s))",
                          unstable, binaries, "milp-graph", solves)


@dataclass
class _GraphClauseMilp(GraphMilpModel):
    highs: object = None


def with_highs(m: GraphMilpModel) -> _GraphClauseMilp:
    fields_ = {f: getattr(m, f) for f in GraphMilpModel.__dataclass_fields__}
    return _GraphClauseMilp(**fields_, highs=highs_model(m))
