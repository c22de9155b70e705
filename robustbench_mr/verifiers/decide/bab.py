"""Branch and bound over ReLU splits on the graph engine (complete search for graph nets).

A domain is the input box with some unstable ReLUs fixed: "active" (pre-activation >= 0, its
lower bound raised to 0) or "inactive" (<= 0, its upper bound lowered to 0). Both halves cover
the parent, so "every domain closed" is a proof. A domain is bounded by CROWN back-substitution
through its own bounds (a fixed ReLU is linear, so its relaxation is exact; the parent's bounds
of every other neuron stay valid on the smaller set, and the interval bounds after the split
are recomputed and intersected). Domains are bounded in batches (``batch`` at a time, all in one
engine call), best first (the most violated domain is split next). Branching: ``babsr`` scores
each unstable neuron by the part of the bound its triangle relaxation costs (|A| times the
chord's intercept, Bunel et al. 2020's BaBSR); ``fsb`` (filtered smart branching, De Palma et
al. 2021) bounds both children of the best ``FSB_CANDIDATES`` BaBSR candidates and splits the one
whose worse child is best. Not yet: beta-CROWN's optimized split multipliers and alpha slopes
per domain (the bounds here are plain CROWN with the split bounds).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from robustbench_mr.deadline import Deadline, DeadlineExceeded
from robustbench_mr.verifiers.bounds.engine import GraphBounds, backward_lower, interval_boxes, spec_coefficients, spec_lower
from robustbench_mr.verifiers.form.graph import Graph
from robustbench_mr.verifiers.form.ops import Box, ReLU
from robustbench_mr.verifiers.spec.property import Clause

BRANCHING = ("babsr", "fsb")
FSB_CANDIDATES = 3


@dataclass(frozen=True)
class BabResult:
    proven: bool  # every domain closed
    domains: int  # domains bounded
    max_depth: int
    open_domains: int
    seconds: float
    message: str


def _relu_nodes(graph: Graph) -> list[tuple[int, int]]:
    """(relu node, its input node) pairs."""
    return [(i, n.inputs[0]) for i, n in enumerate(graph.nodes) if isinstance(n.op, ReLU)]


def _bound(graph: Graph, boxes: list[Box], A: torch.Tensor, d: torch.Tensor, relus: list[tuple[int, int]], deadline: Deadline,
           want_taps: bool) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(D,) domain values max_r(lower(C_r y) - d_r) (> 0: closed) and the taps at each ReLU output."""
    D = boxes[0][0].shape[0]
    taps: dict[int, torch.Tensor] = {r: None for r, _ in relus} if want_taps else {}  # type: ignore[misc]
    low = spec_lower(graph, GraphBounds(boxes, "bab"), A.expand(D, *A.shape[1:]), "crown", deadline, taps=taps if want_taps else None,
                     interruptible=True)
    return (low - d).amax(dim=1), taps


def _split_boxes(graph: Graph, boxes: list[Box], p: int, flat: torch.Tensor) -> list[Box]:
    """Two children per domain (D -> 2D: first all active, then all inactive) splitting
    neuron ``flat[k]`` of node ``p`` in domain k; interval bounds after p recomputed."""
    D = boxes[0][0].shape[0]
    kids = [(torch.cat([l, l]), torch.cat([u, u])) for l, u in boxes]
    l, u = kids[p][0].flatten(1).clone(), kids[p][1].flatten(1).clone()
    ar = torch.arange(D, device=l.device)
    l[ar, flat] = torch.clamp(l[ar, flat], min=0.0)  # active: z >= 0
    u[D + ar, flat] = torch.clamp(u[D + ar, flat], max=0.0)  # inactive: z <= 0
    kids[p] = (l.reshape(kids[p][0].shape), u.reshape(kids[p][1].shape))
    return interval_boxes(graph, kids[0][0], kids[0][1], start=p + 1, boxes=kids)


def _scores(graph: Graph, boxes: list[Box], taps: dict[int, torch.Tensor], relus: list[tuple[int, int]]) -> list[tuple[int, torch.Tensor]]:
    """Per ReLU: (input node, (D, n) BaBSR score, -inf where the neuron is stable)."""
    out = []
    for r, p in relus:
        l, u = boxes[p][0].flatten(1), boxes[p][1].flatten(1)
        unstable = (l < 0) & (u > 0)
        A = taps.get(r)
        if A is None:
            out.append((p, torch.full_like(l, -float("inf"))))
            continue
        a = A.flatten(2).sum(1)  # (D, n): summed over the clause's rows
        icpt = torch.where(unstable, -l * u / torch.where(unstable, u - l, torch.ones_like(l)), torch.zeros_like(l))
        score = a.clamp(max=0).abs() * icpt + 1e-4 * a.abs() * torch.minimum(-l, u).clamp(min=0)
        out.append((p, torch.where(unstable, score, torch.full_like(score, -float("inf")))))
    return out


def _take(boxes: list[Box], idx: torch.Tensor) -> list[Box]:
    return [(l[idx], u[idx]) for l, u in boxes]


def _cat(parts: list[list[Box]]) -> list[Box]:
    return [(torch.cat([p[i][0] for p in parts]), torch.cat([p[i][1] for p in parts])) for i in range(len(parts[0]))]


def relu_bab(graph: Graph, gb: GraphBounds, clause: Clause, deadline: Deadline, batch: int = 64, branching: str = "babsr") -> BabResult:
    """Prove the clause unreachable (every row set C y <= d empty) over the box of ``gb``
    (one box: B == 1), or run out of time. Never claims a counterexample (the falsifier does)."""
    if branching not in BRANCHING:
        raise ValueError(f"branching {branching!r}: choose one of {', '.join(BRANCHING)}")
    start = time.perf_counter()
    relus = _relu_nodes(graph)
    A = spec_coefficients(graph, torch.as_tensor(clause.C), 1)
    d = torch.as_tensor(clause.d, dtype=torch.float64, device=graph.device).reshape(1, -1)
    boxes = [(l.clone(), u.clone()) for l, u in gb.boxes]
    counter = itertools.count()
    bounded, max_depth = 0, 0
    try:
        values, taps = _bound(graph, boxes, A, d, relus, deadline, True)
    except DeadlineExceeded:
        return BabResult(False, 0, 0, 1, time.perf_counter() - start, "time up bounding the root")
    bounded += 1
    if float(values[0]) > 0:
        return BabResult(True, bounded, 0, 0, time.perf_counter() - start, "the root is closed")
    # the open domains: a heap of (value, tiebreak, depth, boxes of one domain, taps of one domain)
    heap = [(float(values[0]), next(counter), 0, boxes, {k: v for k, v in taps.items() if v is not None})]
    while heap:
        if deadline.expired():
            return BabResult(False, bounded, max_depth, len(heap), time.perf_counter() - start, f"time up with {len(heap)} open domains")
        take = [heapq.heappop(heap) for _ in range(min(batch, len(heap)))]
        doms = _cat([t[3] for t in take])
        dtaps = {k: torch.cat([t[4][k] for t in take]) for k in take[0][4]}
        depth = torch.tensor([t[2] for t in take])
        scores = _scores(graph, doms, dtaps, relus)
        D = len(take)
        # the best-scored unstable neuron of each domain, over all ReLU layers
        best_val = torch.full((D,), -float("inf"), dtype=torch.float64)
        best_node = torch.full((D,), -1, dtype=torch.long)
        best_idx = torch.zeros(D, dtype=torch.long)
        cand: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        for p, s in scores:
            v, j = s.max(dim=1)
            better = v > best_val
            best_val = torch.where(better, v, best_val)
            best_node = torch.where(better, torch.full_like(best_node, p), best_node)
            best_idx = torch.where(better, j, best_idx)
            if branching == "fsb":
                k = min(FSB_CANDIDATES, s.shape[1])
                tv, tj = s.topk(k, dim=1)
                cand += [(tv[:, c], p, tj[:, c]) for c in range(k)]
        fixed = torch.nonzero(best_node < 0).flatten()
        if fixed.numel():
            # every ReLU of these domains is fixed: the net is affine there and the domain's own
            # bounds (as column bounds) make its LP exact; a closed one is dropped
            for k in fixed.tolist():
                if not _lp_closes(graph, _take(doms, torch.tensor([k])), clause, deadline):
                    return BabResult(False, bounded, max_depth, len(heap) + D, time.perf_counter() - start,
                                     "a domain with every ReLU fixed is not closed by its exact LP (the clause may be reachable)")
            keep = torch.nonzero(best_node >= 0).flatten()
            if keep.numel() == 0:
                continue
            take = [take[k] for k in keep.tolist()]
            doms, depth = _take(doms, keep), depth[keep]
            dtaps = {k: v[keep] for k, v in dtaps.items()}
            best_node, best_idx, D = best_node[keep], best_idx[keep], keep.numel()
            cand = [(v[keep], p, j[keep]) for v, p, j in cand]
        try:
            if branching == "fsb" and cand:
                best_node, best_idx = _fsb_choice(graph, doms, A, d, relus, deadline, cand, best_node, best_idx)
            children: list[list[Box]] = []
            for p in sorted(set(best_node.tolist())):
                sel = torch.nonzero(best_node == p).flatten()
                children.append((sel, _split_boxes(graph, _take(doms, sel), p, best_idx[sel])))
            kid_boxes = _cat([c[1] for c in children])
            order = torch.cat([torch.cat([c[0], c[0]]) for c in children])  # parent of each child
            values, taps = _bound(graph, kid_boxes, A, d, relus, deadline, True)
        except DeadlineExceeded:
            return BabResult(False, bounded, max_depth, len(heap) + D, time.perf_counter() - start, f"time up with {len(heap) + D} open domains")
        bounded += values.shape[0]
        for k in range(values.shape[0]):
            if float(values[k]) > 0:
                continue  # closed
            dep = int(depth[order[k]]) + 1
            max_depth = max(max_depth, dep)
            one = [(l[k:k + 1], u[k:k + 1]) for l, u in kid_boxes]
            heapq.heappush(heap, (float(values[k]), next(counter), dep, one, {r: t[k:k + 1] for r, t in taps.items() if t is not None}))
    return BabResult(True, bounded, max_depth, 0, time.perf_counter() - start, f"every domain closed ({bounded} bounded, depth {max_depth})")


def _fsb_choice(graph: Graph, doms: list[Box], A: torch.Tensor, d: torch.Tensor, relus: list[tuple[int, int]], deadline: Deadline,
                cand: list[tuple[torch.Tensor, int, torch.Tensor]], best_node: torch.Tensor, best_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each domain, the candidate whose worse child bound is highest (ties: BaBSR's pick)."""
    D = doms[0][0].shape[0]
    best = torch.full((D,), -float("inf"), dtype=torch.float64)
    node, idx = best_node.clone(), best_idx.clone()
    for v, p, j in cand:
        ok = torch.isfinite(v)
        if not bool(ok.any()):
            continue
        sel = torch.nonzero(ok).flatten()
        kids = _split_boxes(graph, _take(doms, sel), p, j[sel])
        vals, _ = _bound(graph, kids, A, d, relus, deadline, False)
        worse = torch.minimum(vals[: sel.numel()], vals[sel.numel():])
        better = worse > best[sel]
        best[sel] = torch.where(better, worse, best[sel])
        node[sel] = torch.where(better, torch.full_like(node[sel], p), node[sel])
        idx[sel] = torch.where(better, j[sel], idx[sel])
    return node, idx


def _lp_closes(graph: Graph, boxes: list[Box], clause: Clause, deadline: Deadline) -> bool:
    """The exact LP (graph MILP without binaries) of one fully fixed domain proves the clause unreachable."""
    from robustbench_mr.verifiers.milp.model import MilpOutcome, solve_clause_milp
    from robustbench_mr.verifiers.milp.graph import with_highs, build_graph_milp
    from robustbench_mr.verifiers.spec.property import Property

    lo, hi = boxes[0][0].reshape(-1).cpu().numpy(), boxes[0][1].reshape(-1).cpu().numpy()
    m = build_graph_milp(graph, GraphBounds(boxes, "bab"), Property(lo, hi, (clause,)), clause)
    if m.binaries:
        return False
    r = solve_clause_milp(with_highs(m), max(deadline.left(), 0.01))
    if r.outcome is MilpOutcome.UNKNOWN:
        # HiGHS calls the domain infeasible: the split signs may contradict each other, but the
        # solver's word is no proof; the engine's bounds are (a crossing proves it empty)
        return _empty_by_bounds(graph, boxes, deadline)
    return r.outcome is MilpOutcome.UNREACHABLE


def _empty_by_bounds(graph: Graph, boxes: list[Box], deadline: Deadline) -> bool:
    """CROWN bounds of every ReLU input recomputed over the domain (its split bounds in the
    relaxations); a lower bound above an upper bound (or an upper bound below a lower one)
    means no input satisfies the domain's sign constraints: it is empty (sound: both bounds are)."""
    boxes = list(boxes)
    for p in graph.piecewise_inputs():
        if p == 0:
            continue
        l, u = boxes[p]
        n = l[0].numel()
        E = torch.zeros(1, 2 * n, n, dtype=l.dtype, device=l.device)
        ar = torch.arange(n, device=l.device)
        E[0, ar, ar] = 1.0
        E[0, n + ar, ar] = -1.0
        try:
            low = backward_lower(graph, p, E.reshape(1, 2 * n, *l.shape[1:]), boxes, deadline=deadline)
        except DeadlineExceeded:
            return False
        new_l = torch.maximum(l.flatten(1), low[:, :n])
        new_u = torch.minimum(u.flatten(1), -low[:, n:])
        if bool((new_l > new_u).any()):
            return True
        boxes[p] = (new_l.reshape(l.shape), new_u.reshape(u.shape))
        boxes = interval_boxes(graph, boxes[0][0], boxes[0][1], start=p + 1, boxes=boxes)
    return False
