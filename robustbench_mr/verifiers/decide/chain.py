"""Decide one ``Property`` on one ``Network``: the entry point shared by the robustness runner
and the VNN-LIB checker.

Pipeline: warm start / random samples (cheap falsification) -> sound bounds (a clause whose
spec lower bound is positive is unreachable, no MILP) -> the complete search the problem's shape
calls for: input-domain branch and bound for low-dimensional inputs (``decide/input_split.py``),
ReLU-split branch and bound with beta-CROWN bounds above ``bab.MILP_MAX_UNSTABLE`` unstable
ReLUs (``decide/bab.py``; what it leaves open goes on: up to ``bab.PORTFOLIO_MAX_UNSTABLE`` it
gets a share of the time left at each clause's turn, ``bab_time_share``, and the MILP the rest
from the first clause it does not close in its share), and one big-M MILP per remaining clause,
most promising clause first, stopping as soon as one clause is reachable. The result's
``search`` says which ran.

SAT is returned only with a counterexample inside the box whose float64
``network.forward`` output satisfies the clause; UNSAT only when every clause is proven
unreachable. A MILP incumbent that the forward pass does not confirm gives UNKNOWN.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from robustbench_mr.verifiers.bounds.methods import DEFAULT_BOUNDS
from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING
from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.bounds.chain import Bounds, graph_boxes, spec_lower_bounds
from robustbench_mr.verifiers.decide.refine import REFINE_AFTER, REFINE_FRACTION, refine_applies, refine_chain_bounds
from robustbench_mr.verifiers.milp.model import MilpOutcome
from robustbench_mr.verifiers.milp.solvers import solve_clause
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import Property
from robustbench_mr.verifiers.status import PropertyResult, PropertyStatus

if TYPE_CHECKING:
    from robustbench_mr.deadline import Deadline
    from robustbench_mr.verifiers.decide.stages import StageClock

RANDOM_SAMPLES = 64
LP_BUDGET_FRACTION = 0.3  # of the time left, for LP bound tightening (bounds="lp")
# bounds="lp" with more unstable ReLUs than this under CROWN: alpha-CROWN instead of the LP
# tightening. Two LPs per unstable neuron do not finish within their budget there, the bounds go
# to ReLU-split bab (a MILP of that size seldom finishes), which optimizes its own slopes, and the
# LP's 30 % of the time is bab's lost. Measured side by side (mnist_fc 256x4 at 120 s, CROWN
# unstable 400-800 at eps 0.05; docs/verification.md): prop_14_0.05 unsat in 65.5 s with
# alpha-CROWN's bounds (1.5 s), 106.8 s after the LP tightening (36 s). Wong & Kolter's MNIST
# net (CROWN unstable 135 mean, 223 max on its first 200 test inputs) keeps the LP bounds, which
# its portfolio MILP needs.
LP_MAX_UNSTABLE = 300


def _confirmed(network: Network, prop: Property, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) if x lies in the box and its float64 forward output reaches some clause."""
    x = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), prop.lower, prop.upper)
    y = network.forward(x)
    return (x, y) if prop.is_violated_by(y) else None


def _sample_falsify(network: Network, prop: Property, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    if n <= 0:
        return None
    pts = rng.uniform(prop.lower, prop.upper, size=(n, prop.lower.size))
    pts[0] = (prop.lower + prop.upper) / 2.0
    ys = network.forward(pts)
    for x, y in zip(pts, ys):
        if prop.is_violated_by(y):
            return x, y
    return None


ALPHA_BUDGET_FRACTION = 0.2  # of the time left, for alpha-CROWN (bounds="alpha" / "alpha-lp")
ALPHA_SPEC_FRACTION = 0.05  # of the time left, for the alpha-optimized clause bounds


def _clause_spec_lower(network: Network, prop: Property, b: Bounds, bounds: str, time_left: float) -> list[np.ndarray]:
    """Sound lower bounds of ``C y`` for each clause: from the output box (interval), by
    back-substitution, or alpha-optimized back-substitution (alpha methods; all rows at once)."""
    if bounds == "interval":
        return [np.maximum(c.C, 0) @ b.lower[-1] + np.minimum(c.C, 0) @ b.upper[-1] for c in prop.clauses]
    rows = np.vstack([c.C for c in prop.clauses])  # every clause's rows in one back-substitution (rows are independent)
    if bounds not in ("alpha", "alpha-lp"):
        spec = spec_lower_bounds(network, b, prop.lower, prop.upper, rows)
    else:
        from robustbench_mr.verifiers.bounds.chain_alpha import alpha_spec_lower_bounds

        spec = alpha_spec_lower_bounds(network, b, prop.lower, prop.upper, rows, ALPHA_SPEC_FRACTION * time_left)
    return np.split(spec, np.cumsum([c.C.shape[0] for c in prop.clauses])[:-1])


def _all_proven(prop: Property, spec: list[np.ndarray]) -> bool:
    return all(float(np.min(c.d - lo)) < 0.0 for c, lo in zip(prop.clauses, spec))


def _escalated_bounds(network: Network, prop: Property, bounds: str, time_left: float) -> Bounds:
    """``bounds``; for ``lp``: CROWN, escalated to LP tightening (``bounds/lp_tighten.py``, at most
    ``LP_BUDGET_FRACTION`` of the time left) only when CROWN leaves some clause open, and to
    alpha-CROWN instead where CROWN leaves more than ``LP_MAX_UNSTABLE`` ReLUs unstable; for
    ``alpha``: CROWN, escalated to alpha-CROWN (``bounds/chain_alpha.py``, at most
    ``ALPHA_BUDGET_FRACTION`` of the time left); ``alpha-lp``: CROWN, then the LP tightening,
    then alpha-CROWN on top of the LP bounds, each only while some clause is open."""
    if bounds not in ("lp", "alpha", "alpha-lp"):
        return compute_bounds(network, prop.lower, prop.upper, bounds)
    from robustbench_mr.verifiers.bounds.lp_tighten import lp_bounds

    start = time.perf_counter()
    cb = compute_bounds(network, prop.lower, prop.upper, "crown")
    if cb.num_unstable == 0:
        return Bounds(cb.lower, cb.upper, bounds)  # no binaries at all: nothing to tighten
    if _all_proven(prop, _clause_spec_lower(network, prop, cb, "crown", time_left)):
        return Bounds(cb.lower, cb.upper, bounds)  # CROWN proves every clause: no LP
    if bounds == "lp" and cb.num_unstable > LP_MAX_UNSTABLE:
        bounds = "alpha"  # see LP_MAX_UNSTABLE; the result says which bounds ran (Bounds.method)
    if bounds == "alpha-lp":  # LP first (exact per neuron where its budget reaches), then alpha-CROWN on top
        cb = lp_bounds(network, prop.lower, prop.upper, LP_BUDGET_FRACTION * time_left, base=cb)
        if cb.num_unstable == 0 or _all_proven(prop, _clause_spec_lower(network, prop, cb, "lp", time_left)):
            return Bounds(cb.lower, cb.upper, bounds)
    if bounds != "lp":
        from robustbench_mr.verifiers.bounds.chain_alpha import alpha_bounds

        ab = alpha_bounds(network, prop.lower, prop.upper, ALPHA_BUDGET_FRACTION * max(time_left - (time.perf_counter() - start), 0.0), base=cb)
        return Bounds(ab.lower, ab.upper, bounds)
    lb = lp_bounds(network, prop.lower, prop.upper, LP_BUDGET_FRACTION * time_left, base=cb)
    return Bounds(lb.lower, lb.upper, bounds)


def _relu_bab_clauses(network: Network, prop: Property, b: Bounds, open_clauses: list, deadline: "Deadline",
                      clock: "StageClock", branching: str, share: float) -> tuple[list, str, tuple[np.ndarray, np.ndarray] | None]:
    """ReLU-split branch and bound (``bab.bab_clauses``, ``share`` of the time left per clause) on
    each open clause over the chain's graph (``form/from_chain``), from the bounds ``b``: the
    clauses it does not prove, what it did, and a counterexample confirmed by the chain's float64
    forward pass, or None."""
    from robustbench_mr.verifiers.bounds.engine import GraphBounds
    from robustbench_mr.verifiers.decide.bab import bab_clauses
    from robustbench_mr.verifiers.form.from_chain import chain_graph

    clock.enter("bab", "relu-bab")
    graph = chain_graph(network)
    gb = GraphBounds(graph_boxes(network, prop.lower, prop.upper, b.lower, b.upper), b.method)
    r = bab_clauses(graph, gb, list(enumerate(clause for _, clause in open_clauses)), deadline, lambda x: _confirmed(network, prop, x),
                    branching=branching, share=share)
    clock.domains, clock.max_depth = clock.domains + r.domains, max(clock.max_depth, r.max_depth)
    return [open_clauses[k] for k in r.left_open], r.message, r.counterexample


def check_property(network: Network, prop: Property, timeout: "float | Deadline", bounds: str = DEFAULT_BOUNDS, warm_start: np.ndarray | None = None,
                   early_stop: bool = True, samples: int = RANDOM_SAMPLES, seed: int = 0, solver: str = "highs",
                   input_split: bool | None = None, branching: str = DEFAULT_BRANCHING) -> PropertyResult:
    """Decide ``prop`` on ``network`` within ``timeout``: wall seconds from the call, or the
    caller's own ``Deadline`` (a VNN-COMP instance's, which started with its first byte), which
    every stage asks for the time left.

    ``early_stop=False`` solves every clause's MILP to optimality (the slow baseline of
    ``bench/verify.py``); verdicts are the same. ``solver``: highs (default, in-process) or
    cbc / gurobi / cplex through PuLP (``milp/pulp_solver.py``). ``input_split``: decide the clauses
    left open by input-domain branch and bound (``decide/input_split.py``) instead of the MILP; default
    (None): when the network has at most ``INPUT_SPLIT_MAX_INPUTS`` inputs. ``branching``: ReLU-split
    bab's rule (``decide.BRANCHING``: babsr or fsb).
    The result's ``stages`` / ``search`` / ``domains`` say where the time went (``stages.py``).
    """
    from robustbench_mr.verifiers.decide.stages import StageClock

    clock = StageClock()
    return clock.stamp(_check_property(network, prop, timeout, bounds, warm_start, early_stop, samples, seed, solver, input_split, branching, clock))


def _check_property(network: Network, prop: Property, timeout: "float | Deadline", bounds: str, warm_start: np.ndarray | None, early_stop: bool,
                    samples: int, seed: int, solver: str, input_split: bool | None, branching: str, clock: "StageClock") -> PropertyResult:
    from robustbench_mr.deadline import Deadline

    start = time.perf_counter()
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(float(timeout), start=start)

    def elapsed() -> float:
        return time.perf_counter() - start

    if prop.lower.size != network.num_inputs:
        raise ValueError(f"property box has {prop.lower.size} inputs, the network takes {network.num_inputs}")
    clock.enter("attack", "attack")
    if warm_start is not None:
        hit = _confirmed(network, prop, warm_start)
        if hit is not None:
            return PropertyResult(PropertyStatus.SAT, hit[0], hit[1], elapsed(), "warm start is a counterexample", bound_method=bounds)
    hit = _sample_falsify(network, prop, np.random.default_rng(seed), samples)
    if hit is not None:
        return PropertyResult(PropertyStatus.SAT, hit[0], hit[1], elapsed(), "random sample is a counterexample", bound_method=bounds)

    clock.enter("bounds", "bounds")
    if bounds != "interval":
        # cheap first: interval bounds alone often prove robust inputs of certifiably trained nets
        ib = compute_bounds(network, prop.lower, prop.upper, "interval")
        if _all_proven(prop, _clause_spec_lower(network, prop, ib, "interval", 0.0)):
            return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), "proven by interval bounds", ib.num_unstable, 0, "interval")

    from robustbench_mr.verifiers.decide.input_split import INPUT_SPLIT_MAX_INPUTS, split_and_bound  # torch loads lazily

    if input_split if input_split is not None else network.num_inputs <= INPUT_SPLIT_MAX_INPUTS:
        if bounds != "interval" and sum(network.relu_widths) <= 4096:
            # CROWN on the whole box is cheap (numpy) for the small nets that split inputs, and
            # spares the split (and its torch import, seconds of start-up) on easy instances
            cb = compute_bounds(network, prop.lower, prop.upper, "crown")
            if _all_proven(prop, _clause_spec_lower(network, prop, cb, "crown", 0.0)):
                return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), "proven by crown bounds", cb.num_unstable, 0, "crown")
        # before any whole-box bound tightening: the splitting bounds every sub-box itself
        method = "interval" if bounds == "interval" else "crown"
        clock.enter("input_split", "input-split")
        try:
            s = split_and_bound(network, prop, deadline.left(), method=method, seed=seed)
        except Exception as exc:  # noqa: BLE001 - reported as this property's error, never as a verdict
            return PropertyResult(PropertyStatus.ERROR, None, None, elapsed(), f"input split: {type(exc).__name__}: {exc}", 0, 0, bounds)
        clock.domains = s.boxes
        hit = _confirmed(network, prop, s.counterexample) if s.status == "sat" and s.counterexample is not None else None
        status = PropertyStatus.SAT if hit else PropertyStatus.UNKNOWN if s.status == "sat" else PropertyStatus(s.status)
        msg = f"input split: {s.message}" + (" (counterexample not confirmed)" if status is PropertyStatus.UNKNOWN and s.status == "sat" else "")
        return PropertyResult(status, hit[0] if hit else None, hit[1] if hit else None, elapsed(), msg, 0, 0, method + "+input-split", s.milp_solves)

    b = _escalated_bounds(network, prop, bounds, deadline.left())
    bounds = b.method  # what ran: "lp" runs as alpha-CROWN past LP_MAX_UNSTABLE
    unstable = b.num_unstable
    # t_clause = min_r (d_r - C_r y) <= min_r (d_r - lower(C_r y)): reachable needs t >= 0
    open_clauses = []
    for clause, spec_lo in zip(prop.clauses, _clause_spec_lower(network, prop, b, bounds, deadline.left())):
        t_upper = float(np.min(clause.d - spec_lo))
        if t_upper < 0.0:
            continue  # unreachable by bounds alone
        open_clauses.append((t_upper, clause))
    if not open_clauses:
        return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), f"proven by {bounds} bounds", unstable, 0, bounds)

    open_clauses.sort(key=lambda tc: -tc[0])  # most likely reachable first
    from robustbench_mr.verifiers.decide.bab import bab_time_share, prefer_relu_bab

    def bab_verdict(bab_open: list, bab_msg: str, hit: tuple[np.ndarray, np.ndarray] | None, note: str) -> PropertyResult | None:
        """What a bab pass decided, if anything: a confirmed counterexample, every clause closed, or time up."""
        if hit is not None:
            return PropertyResult(PropertyStatus.SAT, hit[0], hit[1], elapsed(), f"relu-split bab counterexample ({bab_msg}){note}", unstable, 0, bounds + "+bab")
        if not bab_open:
            return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), f"every open clause closed by relu-split bab ({bab_msg}){note}", unstable, 0, bounds + "+bab")
        if deadline.expired():
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, elapsed(), f"relu-split bab: {bab_msg}{note}", unstable, 0, bounds + "+bab")
        return None

    if prefer_relu_bab(unstable, bounds) and refine_applies(network, b):
        # a first slice of bab (easy properties close in it, without paying for the refinement),
        # then the intermediate bounds refined by bound search (decide/refine.py), then the
        # search below on the refined bounds (fewer unstable ReLUs: a much smaller proof tree)
        first = Deadline(REFINE_AFTER * max(deadline.left(), 0.0))
        bab_open, bab_msg, hit = _relu_bab_clauses(network, prop, b, open_clauses, first, clock, branching, 1.0)
        verdict = bab_verdict(bab_open, bab_msg, hit, "")
        if verdict is not None:
            return verdict
        clock.enter("refine")
        b, info = refine_chain_bounds(network, prop.lower, prop.upper, b, REFINE_FRACTION * deadline.left(), deadline)
        bounds, unstable = bounds + "+refine", b.num_unstable
        refine_note = (f"; bounds refined by bound search ({info['searched']} searches, {info['seconds']:.1f}s, unstable "
                       f"{sum(info['unstable_before'])} -> {sum(info['unstable_after'])})")
        clock.enter("bounds")
        kept = {id(c) for _, c in bab_open}
        open_clauses = [(float(np.min(c.d - lo)), c) for c, lo in zip(prop.clauses, _clause_spec_lower(network, prop, b, b.method, deadline.left()))
                        if id(c) in kept and float(np.min(c.d - lo)) >= 0.0]
        if not open_clauses:
            return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), f"proven by the refined bounds (after relu-split bab: {bab_msg}){refine_note}",
                                  unstable, 0, bounds)
        open_clauses.sort(key=lambda tc: -tc[0])
    else:
        refine_note = ""
    bab_note = refine_note
    if prefer_relu_bab(unstable, bounds):
        # many unstable ReLUs: one MILP rarely finishes; ReLU-split branch and bound with
        # beta-CROWN bounds (decide/bab.py) proves clause by clause; what it leaves open (out of
        # its memory cap, or a fully fixed domain its LP does not close) goes to the MILP
        # below PORTFOLIO_MAX_UNSTABLE, bab on its share of the time left per clause, then the MILP
        bab_open, bab_msg, hit = _relu_bab_clauses(network, prop, b, open_clauses, deadline, clock, branching, bab_time_share(unstable))
        verdict = bab_verdict(bab_open, bab_msg, hit, refine_note)
        if verdict is not None:
            return verdict
        open_clauses = bab_open
        bab_note = f"{refine_note}; after relu-split bab: {bab_msg}"
    clock.enter("milp", "relu-bab+milp" if clock.search == "relu-bab" else "milp")
    warm = warm_start if warm_start is not None else (prop.lower + prop.upper) / 2.0
    warm = np.clip(np.asarray(warm, dtype=np.float64).reshape(-1), prop.lower, prop.upper)
    binaries, solves, unknown, worst_dual = 0, 0, "", -np.inf
    for t_upper, clause in open_clauses:
        remaining = deadline.left()
        if remaining <= 0:
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, elapsed(), f"{len(open_clauses) - solves} clause(s) left undecided{bab_note}", unstable, binaries, bounds, solves)
        try:
            r, nb = solve_clause(network, b, prop.lower, prop.upper, clause, t_upper, deadline.left(), warm_start=warm, early_stop=early_stop, solver=solver)
            binaries = max(binaries, nb)
        except Exception as exc:  # noqa: BLE001 - reported as this property's error, never as a verdict
            return PropertyResult(PropertyStatus.ERROR, None, None, elapsed(), f"{type(exc).__name__}: {exc}", unstable, binaries, bounds, solves)
        solves += 1
        if r.outcome is MilpOutcome.REACHABLE:
            hit = _confirmed(network, prop, r.point)
            if hit is not None:
                return PropertyResult(PropertyStatus.SAT, hit[0], hit[1], elapsed(), f"MILP counterexample (t={r.best_t:.3g}){bab_note}", unstable, binaries, bounds, solves, r.dual_bound)
            unknown = f"MILP incumbent t={r.best_t:.3g} not confirmed by the float64 forward pass"
            continue
        if r.outcome is MilpOutcome.UNREACHABLE:
            worst_dual = max(worst_dual, r.dual_bound)
            continue
        if r.outcome is MilpOutcome.UNKNOWN:
            unknown = r.message  # no proof for this clause; another clause may still be reachable
            continue
        if r.outcome is MilpOutcome.TIMEOUT:
            return PropertyResult(PropertyStatus.TIMEOUT, None, None, elapsed(), f"MILP stopped after {r.seconds:.1f}s (best t {r.best_t:.3g}, bound {r.dual_bound:.3g}){bab_note}", unstable, binaries, bounds, solves, r.dual_bound)
        return PropertyResult(PropertyStatus.ERROR, None, None, elapsed(), r.message, unstable, binaries, bounds, solves)
    if unknown:
        return PropertyResult(PropertyStatus.UNKNOWN, None, None, elapsed(), unknown, unstable, binaries, bounds, solves)
    return PropertyResult(PropertyStatus.UNSAT, None, None, elapsed(), f"every clause proven unreachable ({solves} MILP solve(s)){bab_note}", unstable, binaries, bounds, solves, worst_dual)
