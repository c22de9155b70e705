"""The one place a ReLU becomes MILP constraints, from its own pre-activation bounds [l, u].

Tjeng et al.'s big-M encoding of a = relu(z), z = w . a_prev + b:

* inactive (u <= 0): a = 0, no column at all (the next layer drops its weight);
* active (l >= 0):   a = z, one continuous column and one equality row;
* unstable (l < 0 < u): a continuous column a in [0, u] and a binary d with
      a >= z,   a <= z - l (1 - d),   a <= u d
  (d = 1: a = z >= 0; d = 0: a = 0 >= z). Only unstable ReLUs get a binary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class ReluPhase(Enum):
    INACTIVE = "inactive"
    ACTIVE = "active"
    UNSTABLE = "unstable"


def relu_phases(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Array of ``ReluPhase`` codes: 0 inactive, 1 active, 2 unstable."""
    return np.where(upper <= 0, 0, np.where(lower >= 0, 1, 2)).astype(np.int8)


@dataclass
class SparseRows:
    """Rows ``row_lo <= A x <= row_hi`` collected as COO triplets, turned into CSR once."""

    rows: list[np.ndarray]
    cols: list[np.ndarray]
    vals: list[np.ndarray]
    lo: list[np.ndarray]
    hi: list[np.ndarray]
    count: int = 0

    @classmethod
    def empty(cls) -> "SparseRows":
        return cls([], [], [], [], [])

    def add_block(self, dense: np.ndarray, col_index: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Add rows ``lo <= dense @ x[col_index] <= hi``; zeros are dropped. Returns row ids."""
        r, c = np.nonzero(dense)
        ids = np.arange(self.count, self.count + dense.shape[0])
        self.rows.append(ids[r])
        self.cols.append(np.asarray(col_index)[c])
        self.vals.append(dense[r, c])
        self.lo.append(np.asarray(lo, dtype=np.float64))
        self.hi.append(np.asarray(hi, dtype=np.float64))
        self.count += dense.shape[0]
        return ids

    def add_entries(self, row_ids: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Extra coefficients on rows already added (e.g. a ReLU's own column)."""
        self.rows.append(np.asarray(row_ids))
        self.cols.append(np.asarray(cols))
        self.vals.append(np.asarray(vals, dtype=np.float64))


def encode_relu_layer(rows: SparseRows, weight: np.ndarray, bias: np.ndarray, prev_cols: np.ndarray, prev_const: np.ndarray,
                      lower: np.ndarray, upper: np.ndarray, new_col: "ColumnAllocator") -> tuple[np.ndarray, np.ndarray, int]:
    """Encode a = relu(weight @ a_prev + bias) with bounds [lower, upper].

    ``prev_cols[j]`` is the column of a_prev[j] or -1 where a_prev[j] is the constant
    ``prev_const[j]`` (an inactive ReLU is the constant 0). Returns (cols, consts, binaries)
    for this layer in the same form.
    """
    live = prev_cols >= 0
    W = weight[:, live]
    b = bias + weight[:, ~live] @ prev_const[~live]
    in_cols = prev_cols[live]
    phase = relu_phases(lower, upper)
    cols = np.full(weight.shape[0], -1, dtype=np.int64)
    consts = np.zeros(weight.shape[0])

    act = np.nonzero(phase == 1)[0]
    if act.size:
        cols[act] = new_col(np.maximum(lower[act], 0.0), upper[act], integer=False)
        ids = rows.add_block(-W[act], in_cols, b[act], b[act])  # a - W a_prev = b
        rows.add_entries(ids, cols[act], np.ones(act.size))

    uns = np.nonzero(phase == 2)[0]
    if uns.size:
        l, u = lower[uns], upper[uns]
        cols[uns] = new_col(np.zeros(uns.size), u, integer=False)
        d = new_col(np.zeros(uns.size), np.ones(uns.size), integer=True)
        ids = rows.add_block(-W[uns], in_cols, b[uns], np.full(uns.size, np.inf))  # a - z >= 0
        rows.add_entries(ids, cols[uns], np.ones(uns.size))
        ids = rows.add_block(-W[uns], in_cols, np.full(uns.size, -np.inf), b[uns] - l)  # a - z - l d <= -l
        rows.add_entries(ids, cols[uns], np.ones(uns.size))
        rows.add_entries(ids, d, -l)
        ids = rows.add_block(np.zeros((uns.size, 0)), np.zeros(0, dtype=np.int64), np.full(uns.size, -np.inf), np.zeros(uns.size))
        rows.add_entries(ids, cols[uns], np.ones(uns.size))  # a - u d <= 0
        rows.add_entries(ids, d, -u)
    return cols, consts, int(uns.size)


class ColumnAllocator:
    """Hands out consecutive column ids and records their bounds and integrality."""

    def __init__(self) -> None:
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.count = 0

    def __call__(self, lb: np.ndarray, ub: np.ndarray, integer: bool) -> np.ndarray:
        lb = np.asarray(lb, dtype=np.float64).reshape(-1)
        ub = np.asarray(ub, dtype=np.float64).reshape(-1)
        ids = np.arange(self.count, self.count + lb.size)
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(np.full(lb.size, integer))
        self.count += lb.size
        return ids


def encode_relu_columns(rows: SparseRows, in_cols: np.ndarray, out_cols: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                        new_col: "ColumnAllocator") -> int:
    """Encode out = relu(in) between existing columns (the graph MILP, where the
    pre-activation has its own column): inactive neurons need no row (their output column is
    fixed to 0 by its bounds, set by the caller), active ones one equality, unstable ones a
    binary and the three big-M rows above. Returns the number of binaries."""
    phase = relu_phases(lower, upper)
    act = np.nonzero(phase == 1)[0]
    if act.size:
        ids = rows.add_block(np.zeros((act.size, 0)), np.zeros(0, dtype=np.int64), np.zeros(act.size), np.zeros(act.size))
        rows.add_entries(np.concatenate([ids, ids]), np.concatenate([out_cols[act], in_cols[act]]), np.concatenate([np.ones(act.size), -np.ones(act.size)]))
    uns = np.nonzero(phase == 2)[0]
    if uns.size:
        l, u = lower[uns], upper[uns]
        d = new_col(np.zeros(uns.size), np.ones(uns.size), integer=True)
        o, z = out_cols[uns], in_cols[uns]
        none = np.zeros((uns.size, 0))
        empty = np.zeros(0, dtype=np.int64)
        ids = rows.add_block(none, empty, np.zeros(uns.size), np.full(uns.size, np.inf))  # a - z >= 0
        rows.add_entries(np.concatenate([ids, ids]), np.concatenate([o, z]), np.concatenate([np.ones(uns.size), -np.ones(uns.size)]))
        ids = rows.add_block(none, empty, np.full(uns.size, -np.inf), -l)  # a - z - l d <= -l
        rows.add_entries(np.concatenate([ids, ids, ids]), np.concatenate([o, z, d]), np.concatenate([np.ones(uns.size), -np.ones(uns.size), -l]))
        ids = rows.add_block(none, empty, np.full(uns.size, -np.inf), np.zeros(uns.size))  # a - u d <= 0
        rows.add_entries(np.concatenate([ids, ids]), np.concatenate([o, d]), np.concatenate([np.ones(uns.size), -u]))
    return int(uns.size)
