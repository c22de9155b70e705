"""``--solver cbc`` (PuLP's bundled CBC) builds the same big-M model as HiGHS and gives the same
verdicts; a CBC time limit is a timeout, never a proof (PuLP says "Optimal" after a time limit
with an incumbent: only ``sol_status`` and CBC's own status line are trusted)."""

from __future__ import annotations

import numpy as np
import pulp
import pytest

from robustbench_mr.verifiers.milp.model import MilpOutcome
from robustbench_mr.verifiers.spec.property import robustness_property
from robustbench_mr.verifiers.milp.pulp_solver import SolverUnavailable, _classify, check_available, solver_version
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property

from tests.verifiers.decide.test_exactness import clause_property_truth, random_clause_property, random_net


def _cbc_available() -> bool:
    try:
        check_available("cbc")
    except SolverUnavailable:
        return False
    return True


pytestmark = pytest.mark.skipif(not _cbc_available(), reason="PuLP's CBC binary is not available")


def test_cbc_matches_highs_and_brute_force_on_tiny_nets() -> None:
    rng = np.random.default_rng(7)
    seen = {"sat": 0, "unsat": 0}
    for _ in range(10):
        net, prop = random_clause_property(rng)
        # no sampling and no input splitting: the MILP decides
        kw = dict(timeout=20, samples=0, input_split=False)
        highs, cbc = check_property(net, prop, **kw), check_property(net, prop, solver="cbc", **kw)
        assert cbc.status is highs.status, (cbc, highs)
        if cbc.milp_solves == 0:
            continue
        truth = clause_property_truth(net, prop)
        assert abs(truth) > 1e-6
        assert cbc.status is (PropertyStatus.SAT if truth > 0 else PropertyStatus.UNSAT), (truth, cbc)
        if cbc.status is PropertyStatus.SAT:
            assert prop.contains_input(cbc.counterexample) and prop.is_violated_by(net.forward(cbc.counterexample))
        seen[cbc.status.value] += 1
    assert seen["sat"] >= 2 and seen["unsat"] >= 1, seen


def test_cbc_time_limit_is_a_timeout_not_verified() -> None:
    rng = np.random.default_rng(0)
    net = random_net(rng, [20, 80, 80, 10])
    x = rng.uniform(0.3, 0.7, size=20)
    prop = robustness_property(x, int(np.argmax(net.forward(x))), 0.05, 10)  # robust, but HiGHS needs ~10 s
    r = check_property(net, prop, timeout=0.3, bounds="interval", samples=0, solver="cbc", input_split=False)
    assert r.status is PropertyStatus.TIMEOUT, r


@pytest.mark.parametrize("status, sol_status, raw, t, expected", [
    # PuLP's LpStatus says Optimal after a time limit with an incumbent: not a proof
    (pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible, "Stopped on time - objective value -0.5", -0.5, MilpOutcome.TIMEOUT),
    (pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible, "Stopped on time - objective value 0.3", 0.3, MilpOutcome.REACHABLE),
    (pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound, "Stopped on time - no solution", None, MilpOutcome.TIMEOUT),
    # some solvers' "not solved" becomes sol_status "infeasible" in PuLP: not a proof either
    (pulp.LpStatusNotSolved, pulp.LpSolutionInfeasible, "", None, MilpOutcome.TIMEOUT),
    (pulp.LpStatusInfeasible, pulp.LpSolutionInfeasible, "Infeasible - objective value 0.1", None, MilpOutcome.UNREACHABLE),
    (pulp.LpStatusInfeasible, pulp.LpSolutionNoSolutionFound, "Integer infeasible - objective value 0.04", None, MilpOutcome.UNREACHABLE),
    (pulp.LpStatusOptimal, pulp.LpSolutionOptimal, "Optimal - objective value -0.02", -0.02, MilpOutcome.UNREACHABLE),
    (pulp.LpStatusOptimal, pulp.LpSolutionOptimal, "", 0.0, MilpOutcome.REACHABLE),
])
def test_status_classification(status: int, sol_status: int, raw: str, t: float | None, expected: MilpOutcome) -> None:
    assert _classify(status, sol_status, raw, t)[0] is expected


def test_unavailable_solver_is_a_one_line_error_and_versions_are_named() -> None:
    assert solver_version("cbc").startswith("CBC ")
    assert solver_version("highs").startswith("HiGHS ")
    if not pulp.GUROBI(msg=False).available() and not pulp.GUROBI_CMD(msg=False).available():
        with pytest.raises(SolverUnavailable, match="--solver gurobi") as e:
            check_available("gurobi")
        assert "\n" not in str(e.value)


def test_graph_milp_through_cbc_agrees_with_highs() -> None:
    """The graph form's MILP (residual nets) through PuLP's CBC: the same verdicts as HiGHS on
    the dense-grid cases of the graph decision tests."""
    import torch

    from robustbench_mr.deadline import Deadline
    from robustbench_mr.verifiers.bounds.engine import node_bounds
    from robustbench_mr.verifiers.milp.graph import solve_graph_property
    from tests.verifiers.decide.test_graph import _case

    decided = 0
    for seed in range(4):
        graph, prop, grid_sat = _case(seed)
        gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
        h = solve_graph_property(graph, prop, gb, Deadline(30.0), solver="highs")
        c = solve_graph_property(graph, prop, gb, Deadline(30.0), solver="cbc")
        assert c.status is h.status, seed
        if c.status.value == "unsat":
            assert not grid_sat
        decided += c.status.value in ("sat", "unsat")
    assert decided >= 3
