"""Decide one ``Property`` on a ``Graph`` (residual / pooled nets the chain form cannot hold).

Escalation, each stage only while some clause is open and under one ``Deadline``:
interval bounds -> CROWN (intermediate bounds by back-substitution) -> alpha-CROWN on the
spec rows -> the MILP of the graph (``milp/graph.py``) when it has at most
``bab.MILP_MAX_UNSTABLE`` unstable ReLUs, else branch and bound over ReLU splits (``decide/bab.py``;
up to ``bab.PORTFOLIO_MAX_UNSTABLE`` on its share of the time left per clause, ``bab_time_share``,
the graph MILP taking the clauses it left open). ``sat`` only with a point whose float64 forward pass
satisfies a clause (the caller's falsifier runs first); ``unsat`` only when every clause has
a row whose sound lower bound exceeds its right-hand side, or the MILP proves it; otherwise
``unknown`` (nothing decides; e.g. a branch-and-bound domain with every ReLU fixed that its
LP does not close) or ``timeout``. Which stage decided is in the result's ``bound_method`` and
message (domains bounded, depth).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING
from robustbench_mr.verifiers.bounds.engine import node_bounds, spec_lower
from robustbench_mr.verifiers.form.graph import Graph
from robustbench_mr.verifiers.spec.property import Property
from robustbench_mr.verifiers.status import PropertyResult, PropertyStatus

if TYPE_CHECKING:
    from robustbench_mr.verifiers.decide.stages import StageClock


# the chain verifier's --bounds names -> the graph engine's stages
STAGES = {"interval": ("interval",), "crown": ("interval", "crown"), "lp": ("interval", "crown", "alpha"),
          "alpha": ("interval", "crown", "alpha"), "alpha-lp": ("interval", "crown", "alpha")}


def open_clauses(prop: Property, lower_rows: np.ndarray) -> list[int]:
    """Clauses not proven unreachable: clause k is unreachable when some row r has
    lower(C_r y) > d_r (its rows are stacked in ``lower_rows`` in clause order)."""
    out, r = [], 0
    for k, c in enumerate(prop.clauses):
        n = c.C.shape[0]
        if not bool(np.any(lower_rows[r:r + n] > c.d)):
            out.append(k)
        r += n
    return out


def check_graph_property(graph: Graph, prop: Property, deadline: Deadline, bounds: str = "alpha", solver: str = "highs",
                         branching: str = DEFAULT_BRANCHING) -> PropertyResult:
    """Decide ``prop`` on the graph form within ``deadline`` (module doc); the result's
    ``stages`` / ``search`` / ``domains`` / ``max_depth`` say where the time went."""
    from robustbench_mr.verifiers.decide.stages import StageClock

    clock = StageClock()
    return clock.stamp(_check_graph_property(graph, prop, deadline, bounds, solver, branching, clock))


def _check_graph_property(graph: Graph, prop: Property, deadline: Deadline, bounds: str, solver: str, branching: str,
                          clock: "StageClock") -> PropertyResult:
    start = time.perf_counter()
    clock.enter("bounds", "bounds")
    if prop.lower.size != graph.num_inputs:
        raise ValueError(f"property box has {prop.lower.size} inputs, the network takes {graph.num_inputs}")
    C = np.vstack([c.C for c in prop.clauses])
    lo = torch.as_tensor(prop.lower, dtype=torch.float64, device=graph.device).reshape(1, *graph.input_shape)
    hi = torch.as_tensor(prop.upper, dtype=torch.float64, device=graph.device).reshape(1, *graph.input_shape)
    Ct = torch.as_tensor(C, dtype=torch.float64, device=graph.device)
    gb = None
    unstable = 0
    stages_run = []
    for stage in STAGES.get(bounds, STAGES["alpha"]):
        if deadline.expired():
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, time.perf_counter() - start, f"time up after {'+'.join(stages_run) or 'nothing'}",
                                  unstable, 0, bounds)
        if stage != "alpha" or gb is None:
            gb = node_bounds(graph, lo, hi, "interval" if stage == "interval" else "crown", deadline)
            unstable = int(gb.unstable(graph)[0])
        low = spec_lower(graph, gb, Ct, stage, deadline)[0].cpu().numpy()
        stages_run.append(stage)
        if not open_clauses(prop, low):
            return PropertyResult(PropertyStatus.UNSAT, None, None, time.perf_counter() - start, f"proven by {stage} bounds", unstable, 0, stage)
    if deadline.expired():
        return PropertyResult(PropertyStatus.TIMEOUT, None, None, time.perf_counter() - start, f"time up after {'+'.join(stages_run)} bounds",
                              unstable, 0, bounds)
    from robustbench_mr.verifiers.decide.bab import prefer_relu_bab

    if not prefer_relu_bab(unstable):
        # few unstable ReLUs: one MILP per clause is exact and usually fast
        from robustbench_mr.verifiers.milp.graph import solve_graph_property

        clock.enter("milp", "milp")
        return solve_graph_property(graph, prop, gb, deadline, solver=solver, start=start, unstable=unstable)
    # many: branch and bound over ReLU splits, clause by clause (decide/bab.py); up to
    # bab.PORTFOLIO_MAX_UNSTABLE on its share of the time left per clause, the graph MILP deciding what it left open
    from robustbench_mr.verifiers.decide.bab import bab_clauses, bab_time_share

    def confirm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        y = graph.forward(x)
        return (x, y) if prop.contains_input(x) and prop.is_violated_by(y) else None

    share = bab_time_share(unstable)
    clock.enter("bab", "relu-bab")
    ks = open_clauses(prop, low)
    r = bab_clauses(graph, gb, [(k, prop.clauses[k]) for k in ks], deadline, confirm, branching=branching, share=share)
    clock.domains, clock.max_depth = r.domains, r.max_depth
    if r.counterexample is not None:
        return PropertyResult(PropertyStatus.SAT, r.counterexample[0], r.counterexample[1], time.perf_counter() - start,
                              f"relu-split bab counterexample ({r.message})", unstable, 0, f"{bounds}+bab")
    left_open, bab_msg = list(r.left_open), f"relu-split bab ({r.message})"
    if left_open and (share >= 1.0 or deadline.expired()):
        status = PropertyStatus.TIMEOUT if deadline.expired() else PropertyStatus.UNKNOWN
        return PropertyResult(status, None, None, time.perf_counter() - start, bab_msg, unstable, 0, f"{bounds}+bab")
    if left_open:
        from robustbench_mr.verifiers.milp.graph import solve_graph_property

        clock.enter("milp", "relu-bab+milp")
        rest = Property(prop.lower, prop.upper, tuple(prop.clauses[k] for k in left_open), prop.name)
        r = solve_graph_property(graph, rest, gb, deadline, solver=solver, start=start, unstable=unstable)
        return dataclasses.replace(r, message=f"{r.message}; after {bab_msg} ({len(left_open)} clause(s) left open)")
    return PropertyResult(PropertyStatus.UNSAT, None, None, time.perf_counter() - start,
                          f"every open clause closed by relu-split bab ({r.message})", unstable, 0, f"{bounds}+bab")
