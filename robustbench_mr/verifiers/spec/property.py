"""The one internal property form (as alpha-beta-CROWN's read_vnnlib): an input box and a
disjunction of conjunctions ``C y <= d`` over the outputs y, describing the *unsafe* set.

``sat`` = some x in the box has outputs in some clause (a counterexample exists);
``unsat`` = no such x (the property holds; for local robustness: verified).
Both the VNN-LIB reader and the dataset eps-ball builder produce ``Property`` objects; a
VNN-LIB file with several input boxes becomes several Properties (sat if any is sat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Clause:
    """A conjunction of rows: C @ y <= d (all must hold)."""

    C: np.ndarray  # (rows, outputs)
    d: np.ndarray  # (rows,)

    def __post_init__(self) -> None:
        C = np.atleast_2d(np.asarray(self.C, dtype=np.float64))
        d = np.asarray(self.d, dtype=np.float64).reshape(-1)
        if C.shape[0] != d.shape[0]:
            raise ValueError(f"clause C {C.shape} and d {d.shape} disagree")
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "d", d)

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return bool(np.all(self.C @ np.asarray(y, dtype=np.float64) <= self.d + tol))


@dataclass(frozen=True, eq=False)
class Property:
    lower: np.ndarray  # flat input box
    upper: np.ndarray
    clauses: tuple[Clause, ...]
    name: str = ""

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.upper, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise ValueError("input box bounds differ in size")
        if np.any(lo > hi):
            raise ValueError("input box has lower > upper")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        object.__setattr__(self, "clauses", tuple(self.clauses))

    def is_violated_by(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """True if outputs y lie in the unsafe set (some clause holds)."""
        return any(c.holds(y, tol) for c in self.clauses)

    def contains_input(self, x: np.ndarray, tol: float = 1e-9) -> bool:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))


def robustness_property(x: np.ndarray, label: int, eps: float, num_classes: int, lo: float = 0.0, hi: float = 1.0, name: str = "") -> Property:
    """L-inf ball of radius eps around x (clipped to [lo, hi]); unsafe iff some other class
    scores at least as high as ``label`` (ties count as not robust: the conservative side)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    clauses = []
    for j in range(num_classes):
        if j == label:
            continue
        C = np.zeros((1, num_classes))
        C[0, label] = 1.0
        C[0, j] = -1.0  # y_label - y_j <= 0
        clauses.append(Clause(C, np.zeros(1)))
    return Property(np.clip(x - eps, lo, hi), np.clip(x + eps, lo, hi), tuple(clauses), name)
