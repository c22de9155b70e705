"""Typed verdicts: one property (``PropertyStatus``, VNN-COMP's answers) and one test input of
the robustness verifier (``VerifyStatus``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class PropertyStatus(str, Enum):
    """VNN-COMP's answers (sat = a counterexample exists) plus ``error``."""

    SAT = "sat"
    UNSAT = "unsat"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    ERROR = "error"


class VerifyStatus(Enum):
    VERIFIED = "verified"
    FALSIFIED = "falsified"  # a counterexample confirmed by float64 forward passes
    MISCLASSIFIED = "misclassified"
    TIMEOUT = "timeout"
    ERROR = "error"
    UNKNOWN = "unknown"  # e.g. a solver incumbent that the forward pass did not confirm


# Statuses a re-run does not recompute.
DECIDED = frozenset({VerifyStatus.VERIFIED, VerifyStatus.FALSIFIED, VerifyStatus.MISCLASSIFIED})


@dataclass(frozen=True, eq=False)
class VerifyResult:
    idx: int
    label: int
    prediction: int
    status: VerifyStatus
    seconds: float
    pgd_broken: bool = False
    unstable_relus: int = 0
    binaries: int = 0
    bound_method: str = ""
    dual_bound: float | None = None
    message: str = ""
    counterexample: np.ndarray | None = field(default=None, repr=False)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (``decide/stages.py``)
    search: str = ""  # the complete search that ran: bounds, input-split, relu-bab, relu-bab+milp or milp


@dataclass(frozen=True, eq=False)
class PropertyResult:
    status: PropertyStatus
    counterexample: np.ndarray | None
    output: np.ndarray | None
    seconds: float
    message: str = ""
    unstable_relus: int = 0
    binaries: int = 0
    bound_method: str = ""
    milp_solves: int = 0
    dual_bound: float | None = None  # best proven upper bound on the clause slack t (gap info)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage: attack, bounds, input_split, bab, milp
    search: str = ""  # what decided it or ran last: attack, bounds, input-split, relu-bab, relu-bab+milp (bab on its share of the time, then the MILP) or milp (``decide/stages.py``)
    domains: int = 0  # sub-problems bounded by the search (input boxes or ReLU-split domains)
    max_depth: int = 0  # deepest ReLU-split domain
