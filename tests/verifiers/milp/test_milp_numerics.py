"""Coefficients below HiGHS's small_matrix_value (1e-9) are folded into the row bounds soundly.

HiGHS drops such entries itself and answers ``kWarning`` (real nets have 1e-14 weights, e.g.
VNN-COMP oval21's wide net). We drop them before HiGHS sees them and widen each row by what
the dropped entries can contribute, so the model is a relaxation: never an unsat where a
counterexample exists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.highs import TINY_COEFF, drop_tiny_coefficients
from robustbench_mr.verifiers.milp.model import MilpOutcome, build_clause_milp, solve_clause_milp
from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
from robustbench_mr.verifiers.spec.property import Clause, Property
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property


def _tiny_net(scale: float) -> Network:
    """x in [0, 1] -> h = relu(x - 0.5), relu(0.5 - x) (both unstable) -> y = (0, scale * h0 - h1).

    The tiny weight sits in one row beside a weight of 1, so it stays tiny after the MILP's
    row and column scaling (which makes a weight that is small on its own harmless) and is
    folded into the row bounds."""
    return Network((1,), (Affine(np.array([[1.0], [-1.0]]), np.array([-0.5, 0.5])), ReLU(),
                          Affine(np.array([[0.0, 0.0], [scale, -1.0]]), np.zeros(2))))


def test_drop_tiny_coefficients_is_a_relaxation() -> None:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(30, 12))
    mask = rng.uniform(size=dense.shape) < 0.3
    dense[mask] = rng.choice([1e-14, -3e-12, 5e-10, -1e-9], size=int(mask.sum()))
    A = sp.csr_matrix(dense)
    lb, ub = -rng.uniform(0, 3, size=12), rng.uniform(0, 3, size=12)
    for _ in range(50):  # rows tight at a random point (equalities): the point must stay feasible
        x = rng.uniform(lb, ub)
        ax = A @ x
        B, lo, hi, dropped = drop_tiny_coefficients(A, ax.copy(), ax.copy(), lb, ub)
        assert dropped > 0 and np.all(np.abs(B.data) > TINY_COEFF)
        bx = B @ x
        assert np.all(lo <= bx) and np.all(bx <= hi)


def test_tiny_output_weight_keeps_the_verdict_sound() -> None:
    net = _tiny_net(1e-12)
    box = (np.zeros(1), np.ones(1))
    b = compute_bounds(net, *box, "crown")
    # y1 >= 2e-13 is reachable (any x >= 0.7): only through the 1e-12 weight
    reach = Property(*box, (Clause(np.array([[0.0, -1.0]]), np.array([-2e-13])),))
    m = build_clause_milp(net, b, *box, reach.clauses[0])  # HiGHS used to answer kWarning here
    assert m.dropped >= 1
    assert solve_clause_milp(m, 10).outcome is not MilpOutcome.UNREACHABLE
    r = check_property(net, reach, timeout=10, samples=0, input_split=False)
    assert r.status in (PropertyStatus.SAT, PropertyStatus.UNKNOWN), r  # dropping without widening said unsat
    if r.status is PropertyStatus.SAT:
        assert reach.is_violated_by(net.forward(r.counterexample))
    # y1 >= 1e-6 is unreachable (max is 5e-13): the widening (<= 5e-13) keeps the proof
    unreach = Property(*box, (Clause(np.array([[0.0, -1.0]]), np.array([-1e-6])),))
    assert check_property(net, unreach, timeout=10, samples=0, input_split=False).status is PropertyStatus.UNSAT
    r = solve_clause_milp(build_clause_milp(net, b, *box, unreach.clauses[0]), 10)  # the MILP itself, not the bounds
    assert r.outcome is MilpOutcome.UNREACHABLE, r
