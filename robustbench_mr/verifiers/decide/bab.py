"""Branch and bound over ReLU splits on the graph engine (complete search; beta-CROWN style).

A domain is the input box with some unstable ReLUs fixed: "active" (pre-activation z >= 0, its
lower bound raised to 0) or "inactive" (z <= 0, its upper bound lowered to 0). Both halves cover
the parent, so "every domain closed" is a proof.

Bounding a domain (``_bound``): the root's bounds of every node, the split neurons' bounds
clamped, the interval bounds after them recomputed and intersected; then the clause's rows are
bounded by back-substitution with

* alpha-CROWN slopes: the lower slope of every unstable ReLU, per (domain, row, neuron),
  inherited from the parent and optimized further;
* beta-CROWN multipliers (Wang et al. 2021): for each split ``s z >= 0`` (s = +1 active, -1
  inactive) the Lagrangian term ``-beta s z`` with ``beta >= 0`` joins the back-substitution
  (``backward_lower``'s ``extra``). On the domain ``s z >= 0`` the term is <= 0, so the bound
  stays sound for every beta >= 0 and every slope in [0, 1]; both are optimized by projected
  Adam, and the best bound of any iterate is kept (each one is sound; a NaN bound counts as
  open); the children start from the last iterate's values, and the branching scores and
  attack points are read from the last iterate too (they must describe what is stored).

A domain is closed when some row's lower bound exceeds its right-hand side. Every bounded batch
is attacked: each domain's attack point (the input corner minimizing its linear bound) is run
forward, and ``ATTACK_STEPS`` signed-gradient steps on the clause's violation start from those
of the ``ATTACK_DOMAINS`` most violated children; a hit is returned as a candidate. Domains are bounded
``batch`` at a time in one engine call, the most violated ones first (depth first once the
open set passes half of ``max_open``). Branching: ``babsr``
scores each unstable neuron by the part of the bound its triangle relaxation costs (|A| times the
chord's intercept, Bunel et al. 2020); ``fsb`` (filtered smart branching, De Palma et al. 2021)
bounds both children of the ``FSB_CANDIDATES`` best BaBSR candidates with one back-substitution
each (the parent's slopes and multipliers) and splits the one whose worse child is best. A domain
with every ReLU fixed is affine: its exact LP decides it.

The open domains are stored as split signs (int8), slopes and multipliers (float32: any value is
sound, they are only where the next optimization starts) and the best branching candidates, not
as boxes: the boxes are rebuilt from the root's when a domain is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from robustbench_mr.deadline import Deadline, DeadlineExceeded
from robustbench_mr.verifiers.decide import BRANCHING, DEFAULT_BRANCHING
from robustbench_mr.verifiers.bounds.engine import Adam, GraphBounds, backward_lower, interval_boxes, spec_coefficients, unit_rows_lower
from robustbench_mr.verifiers.form.graph import Graph
from robustbench_mr.verifiers.form.ops import Box, ReLU
from robustbench_mr.verifiers.form.ops.relu import relaxation, relaxed
from robustbench_mr.verifiers.spec.property import Clause

MILP_MAX_UNSTABLE = 40  # at most this many unstable ReLUs: one MILP (exact, usually fast); more: ReLU-split bab
# up to this many, bab gets PORTFOLIO_BAB_SHARE of the time left at each clause's turn, and the
# MILP the rest from the first clause bab does not close in its share: on Wong & Kolter's MNIST
# net (100-220 unstable) bab closes every robust input within 11 s, but one input (test 3384, 146
# unstable) has a counterexample of margin 0.0024 that neither PGD (2,048 restarts, 60 s) nor 120 s
# of bab finds and the MILP finds (now in 71 s: bab 40 s, MILP 30 s). Per clause, not one share
# for all clauses: on mnist_fc's 256x4 net (prop_11_0.05, 9 clauses) a third of the whole time
# closed 3 clauses, a third per clause closes 6 (bab on the whole time: all 9, in 94 s); since the
# branching coefficients are the last iterate's (66ec23f), all 9 close within their shares (26.4 s)
PORTFOLIO_MAX_UNSTABLE = 200
PORTFOLIO_BAB_SHARE = 1 / 3
FSB_CANDIDATES = 3
ROOT_ITERS = 40  # alpha-beta iterations at the root (slopes only: no splits yet)
DOMAIN_ITERS = 8  # per batch of children (they start from their parent's optimized values)
ALPHA_LR, BETA_LR = 0.1, 0.05
STORE = torch.float32  # dtype of the stored slopes and multipliers (any value is sound)
# dtype of the Adam iterations, which only choose the slopes and multipliers (any value is
# sound): each domain's bound is the float64 bound of its last and its best iterate, the only
# numbers that close a domain. On mnist_fc 256x4 one iteration of 256 domains takes 11.3 ms in
# float32 against 18.7 ms in float64 (1 thread); prop_0_0.05's clause 0 closes in the same
# 63.7k domains in 43.0 s instead of 50.8 s
OPTIMIZE = torch.float32
ATTACK_DOMAINS, ATTACK_STEPS = 8, 10  # per bounded batch: descent from the most violated children's attack points
STORE_BYTES = 2 * 2 ** 30  # the open domains' memory: the open set is capped to fit it


@dataclass(frozen=True)
class BabResult:
    proven: bool  # every domain closed
    domains: int  # domains bounded
    max_depth: int
    open_domains: int
    seconds: float
    message: str
    counterexample: np.ndarray | None = field(default=None, repr=False)  # a candidate only: the caller confirms it
    # the lowest value (max over rows of lower(C y) - d) of any domain still open when it stopped:
    # every input of the box lies in a closed domain (value > 0) or an open one, so the clause's
    # rows satisfy max_r (C_r y - d_r) >= worst_open everywhere (+inf: proven; -inf: nothing bounded)
    worst_open: float = -float("inf")


def prefer_relu_bab(unstable: int, bounds: str = "crown") -> bool:
    """The search for a property left open by its bounds on a net with ``unstable`` unstable
    ReLUs (after the input split's turn, for low-dimensional inputs): ReLU-split branch and
    bound above ``MILP_MAX_UNSTABLE``, else one MILP. Interval-only runs (the paper's baseline
    setting) keep the MILP."""
    return bounds != "interval" and unstable > MILP_MAX_UNSTABLE


def bab_time_share(unstable: int) -> float:
    """The fraction of the time left at each clause's turn that ReLU-split bab gets on it before
    the MILP takes what bab left open (``bab_clauses``): ``PORTFOLIO_BAB_SHARE`` up to
    ``PORTFOLIO_MAX_UNSTABLE`` unstable ReLUs (a MILP of that size can still finish, and finds
    needle-thin counterexamples that bab's attacks miss), else 1."""
    return PORTFOLIO_BAB_SHARE if unstable <= PORTFOLIO_MAX_UNSTABLE else 1.0


@dataclass(frozen=True)
class ClausesResult:
    """What :func:`bab_clauses` did to a property's open clauses."""

    left_open: tuple[int, ...]  # the clauses (their keys) it did not prove unreachable
    counterexample: tuple[np.ndarray, np.ndarray] | None  # (x, y), confirmed by the caller's ``confirm``
    domains: int  # domains bounded, all clauses together
    max_depth: int
    message: str  # what bab did; for the first clause left open, why


def bab_clauses(graph: Graph, gb: GraphBounds, clauses: Sequence[tuple[int, Clause]], deadline: Deadline,
                confirm: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray] | None], branching: str = DEFAULT_BRANCHING,
                share: float = 1.0) -> ClausesResult:
    """ReLU-split bab on each ``(key, clause)`` in turn (the likeliest reachable first, as the caller
    orders them) until one yields a counterexample that ``confirm`` (the caller's forward pass on
    its own model, float64) accepts, or the deadline passes: the one driver of the chain and the
    graph form, each of which then hands ``left_open`` to its own MILP (or reports it).

    ``share`` < 1 (``bab_time_share``): each clause gets that fraction of the time left at its
    turn; the first clause whose share runs out leaves it and every later clause open, so the
    caller's MILP has at least the rest of that moment's time. A clause bab does not prove for
    another reason (its memory cap, a fully fixed domain its LP does not close) is not a verdict:
    the next clause is still tried (it may hold the counterexample of a disjunction)."""
    left: list[int] = []
    domains, depth, why = 0, 0, ""
    share_spent = False  # a clause used up its share: the rest is the MILP's
    for key, clause in clauses:
        if deadline.expired() or share_spent:
            left.append(key)
            why = why or f"clause {key}: time up before its turn"
            continue
        own = deadline if share >= 1.0 else Deadline(share * max(deadline.left(), 0.0))
        r = relu_bab(graph, gb, clause, own, branching=branching)
        domains, depth = domains + r.domains, max(depth, r.max_depth)
        hit = confirm(r.counterexample) if r.counterexample is not None else None
        if hit is not None:
            return ClausesResult((key,), hit, domains, depth, f"{branching}, {domains} domains, depth {depth}; clause {key}: {r.message}")
        if not r.proven:
            left.append(key)
            share_spent = own is not deadline and own.expired() and not deadline.expired()
            why = why or f"clause {key}: {r.message}" + (" (counterexample candidate not confirmed)" if r.counterexample is not None else "") + (
                " (its share of the time spent)" if share_spent else "")
    summary = f"{branching}, {domains} domains, depth {depth}" + (f"; {len(left)} clause(s) open, {why}" if left else "")
    return ClausesResult(tuple(left), None, domains, depth, summary)


def _relu_nodes(graph: Graph) -> list[tuple[int, int]]:
    """(relu node, its input node) pairs; ReLUs applied to the input itself are not split."""
    return [(i, n.inputs[0]) for i, n in enumerate(graph.nodes) if isinstance(n.op, ReLU) and n.inputs[0] != 0]


@dataclass
class _Domains:
    """A batch of D domains: split signs per ReLU input node, (D, n) in {-1, 0, 1}; slopes per
    ReLU node and multipliers per input node, (D, R, n); value (D,); depth (D,); candidate
    branchings (D, K) as indices into the concatenated ReLU inputs (-1: none)."""

    signs: dict[int, torch.Tensor]
    alphas: dict[int, torch.Tensor]
    betas: dict[int, torch.Tensor]
    value: torch.Tensor
    depth: torch.Tensor
    cand: torch.Tensor

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> "_Domains":
        """``f`` applied to every tensor (each has the domains along dim 0)."""
        return _Domains({k: f(v) for k, v in self.signs.items()}, {k: f(v) for k, v in self.alphas.items()},
                        {k: f(v) for k, v in self.betas.items()}, f(self.value), f(self.depth), f(self.cand))

    def take(self, idx: torch.Tensor) -> "_Domains":
        return self.map(lambda t: t[idx])

    @staticmethod
    def cat(parts: list["_Domains"]) -> "_Domains":
        parts = [p for p in parts if len(p)]
        first = parts[0]
        return _Domains({k: torch.cat([p.signs[k] for p in parts]) for k in first.signs}, {k: torch.cat([p.alphas[k] for p in parts]) for k in first.alphas},
                        {k: torch.cat([p.betas[k] for p in parts]) for k in first.betas}, torch.cat([p.value for p in parts]),
                        torch.cat([p.depth for p in parts]), torch.cat([p.cand for p in parts]))


class _Pool:
    """The open domains in preallocated slots (capacity doubled when full): taking the next batch
    and adding the children touch only their own rows. Before, every step copied the whole open
    set twice (the rest after the batch, then the rest with the children); at 25k open domains
    that was 18 % of bab's time on mnist_fc 256x4 prop_6_0.03 and it grew with the open set."""

    def __init__(self, first: _Domains, capacity: int) -> None:
        self.store = _Pool._resized(first, max(capacity, len(first)))
        self.live = torch.zeros(len(self.store), dtype=torch.bool, device=first.value.device)
        self.live[:len(first)] = True
        self.count = len(first)

    def __len__(self) -> int:
        return self.count

    @staticmethod
    def _resized(d: _Domains, capacity: int) -> _Domains:
        def grow(t: torch.Tensor) -> torch.Tensor:
            out = torch.empty((capacity, *t.shape[1:]), dtype=t.dtype, device=t.device)
            out[:len(t)] = t
            return out
        return d.map(grow)

    def add(self, doms: _Domains, max_capacity: int) -> None:
        free = torch.nonzero(~self.live).flatten()
        if free.numel() < len(doms):
            need = self.count + len(doms)
            self.store = _Pool._resized(self.store, max(need, min(2 * len(self.store), max_capacity)))
            self.live = torch.cat([self.live, torch.zeros(len(self.store) - len(self.live), dtype=torch.bool, device=self.live.device)])
            free = torch.nonzero(~self.live).flatten()
        slots = free[:len(doms)]
        st = self.store
        for mine, theirs in ((st.signs, doms.signs), (st.alphas, doms.alphas), (st.betas, doms.betas)):
            for k, v in theirs.items():
                mine[k][slots] = v
        st.value[slots], st.depth[slots], st.cand[slots] = doms.value, doms.depth, doms.cand
        self.live[slots] = True
        self.count += len(doms)

    def worst(self) -> float:
        """The lowest value of an open domain (+inf when none is open)."""
        return float(torch.where(self.live, self.store.value, torch.full_like(self.store.value, float("inf"))).min()) if self.count else float("inf")

    def pop(self, n: int, depth_first: bool) -> _Domains:
        """The ``n`` most violated open domains (lowest value), or the ``n`` deepest."""
        if depth_first:
            key = torch.where(self.live, self.store.depth, torch.full_like(self.store.depth, -1))
            idx = key.topk(n, largest=True).indices
        else:
            key = torch.where(self.live, self.store.value, torch.full_like(self.store.value, float("inf")))
            idx = key.topk(n, largest=False).indices
        out = self.store.take(idx)
        self.live[idx] = False
        self.count -= n
        return out


class _Problem:
    """The root's boxes and the clause, and how to bound batches of domains of it."""

    def __init__(self, graph: Graph, gb: GraphBounds, clause: Clause) -> None:
        self.graph = graph
        self.relus = _relu_nodes(graph)
        self.relu_inputs = {n.inputs[0] for n in graph.nodes if isinstance(n.op, ReLU)}
        self.root = [(l[:1], u[:1]) for l, u in gb.boxes]
        self.A = spec_coefficients(graph, torch.as_tensor(clause.C), 1)
        self.d = torch.as_tensor(clause.d, dtype=torch.float64, device=graph.device).reshape(1, -1)
        self.R = self.A.shape[1]
        # the net and the rows in OPTIMIZE, for the iterations (the bounds are float64)
        self.fast_graph = graph if OPTIMIZE == torch.float64 else graph.to(graph.device, OPTIMIZE)
        self.fast_A, self.fast_d = self.A.to(OPTIMIZE), self.d.to(OPTIMIZE)
        self.inputs = sorted({p for _, p in self.relus})
        self.sizes = {p: self.root[p][0][0].numel() for p in self.inputs}
        off, self.offset = 0, {}
        for p in self.inputs:
            self.offset[p] = off
            off += self.sizes[p]
        self.total = off

    def boxes(self, signs: dict[int, torch.Tensor]) -> list[Box]:
        """Each domain's boxes: the root's with the split neurons clamped, IBP after each split layer."""
        D = next(iter(signs.values())).shape[0] if signs else 1
        boxes = [(l.expand(D, *l.shape[1:]), u.expand(D, *u.shape[1:])) for l, u in self.root]
        for p in self.inputs:
            s = signs[p]
            if not bool((s != 0).any()):
                continue
            l, u = boxes[p]
            shape = l.shape
            l = torch.where(s > 0, l.flatten(1).clamp(min=0), l.flatten(1)).reshape(shape)
            u = torch.where(s < 0, u.flatten(1).clamp(max=0), u.flatten(1)).reshape(shape)
            boxes[p] = (l, u)
            boxes = interval_boxes(self.graph, boxes[0][0], boxes[0][1], start=p + 1, boxes=boxes)
        return boxes

    def empty_signs(self, D: int) -> dict[int, torch.Tensor]:
        return {p: torch.zeros(D, self.sizes[p], dtype=torch.int8, device=self.graph.device) for p in self.inputs}

    def lower(self, boxes: list[Box], signs: dict[int, torch.Tensor], alphas: dict[int, torch.Tensor], betas: dict[int, torch.Tensor],
              taps: dict[int, torch.Tensor] | None = None, fast: bool = False) -> torch.Tensor:
        """(D, R) sound lower bounds of the clause rows with these slopes and multipliers (``fast``:
        in OPTIMIZE, on boxes in OPTIMIZE: a guide for the optimizer, not a bound)."""
        D = boxes[0][0].shape[0]
        extra = {}
        for p in self.inputs:
            s = signs[p]
            if bool((s != 0).any()):
                b = betas[p].clamp(min=0)  # beta >= 0 (sound); the gradient passes through
                b = betas[p] + (b - betas[p]).detach()
                extra[p] = (-(b * s.unsqueeze(1).to(b.dtype))).reshape(D, self.R, *self.root[p][0].shape[1:])
        graph, A = (self.fast_graph, self.fast_A) if fast else (self.graph, self.A)
        return backward_lower(graph, graph.output, A.expand(D, *A.shape[1:]), boxes, slopes=alphas, taps=taps, extra=extra)

    def relaxed(self, boxes: list[Box]) -> list[Box]:
        """``boxes`` with the ReLU inputs' relaxations computed once (for repeated bounds)."""
        return [relaxed(b) if i in self.relu_inputs else b for i, b in enumerate(boxes)]

    def fast_boxes(self, boxes: list[Box]) -> list[Box]:
        """``boxes`` in OPTIMIZE, relaxed (for the iterations)."""
        if OPTIMIZE != torch.float64:
            boxes = [(l.to(OPTIMIZE), u.to(OPTIMIZE)) for l, u in boxes]
        return self.relaxed(boxes)

    def optimize(self, signs: dict[int, torch.Tensor], alphas0: dict[int, torch.Tensor], betas0: dict[int, torch.Tensor], iters: int,
                 deadline: Deadline) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor], list[Box]]:
        """(value (D,), slopes, multipliers, taps at the ReLU outputs, boxes): ``iters`` projected
        Adam steps in OPTIMIZE (at least one evaluation); the value is the float64 bound of each
        domain's last iterate or of its best one (by OPTIMIZE's values), whichever is higher
        (each is sound, whatever the iterations computed). The slopes, multipliers and taps are
        the last iterate's: the children start from it, and the branching scores and attack
        points must describe the relaxation that is stored (the best iterate's taps beside the
        last iterate's slopes misled BaBSR: mnist_fc 256x4 prop_11_0.05, clause 0, 10,053
        domains to close; with these, 643). Storing the best iterate instead (its slopes and
        taps) is worse still: prop_0_0.05's clause 0, closed in 63,691 domains, had 46,139 open
        after 92,503."""
        boxes = self.boxes(signs)
        opt = OPTIMIZE
        fast_boxes = self.fast_boxes(boxes)
        alphas = {r: a.to(opt).clone().requires_grad_(True) for r, a in alphas0.items()}
        betas = {p: b.to(opt).clone().requires_grad_(True) for p, b in betas0.items()}
        params = list(alphas.values()) + [betas[p] for p in self.inputs if bool((signs[p] != 0).any())]
        opt_a = Adam(list(alphas.values()), lr=ALPHA_LR) if alphas else None
        bparams = params[len(alphas):]
        opt_b = Adam(bparams, lr=BETA_LR) if bparams else None
        D = next(iter(signs.values())).shape[0] if signs else 1
        best = torch.full((D,), -float("inf"), dtype=opt, device=self.graph.device)
        kept_a = {r: a.detach().clone() for r, a in alphas.items()}  # each domain's best iterate
        kept_b = {p: b.detach().clone() for p, b in betas.items()}
        last_is_best = False  # the current values are each domain's best iterate
        last = 0.0
        for it in range(max(1, iters)):
            if it and deadline.left() <= last:
                break
            deadline.check("bounding domains")
            t0 = time.perf_counter()
            low = self.lower(fast_boxes, signs, alphas, betas, fast=True)
            v = (low - self.fast_d).amax(dim=1).detach()
            better = v > best  # never at a NaN iterate
            last_is_best = bool(better.all())
            if bool(better.any()):
                best = torch.where(better, v, best)
                for kept, cur in ((kept_a, alphas), (kept_b, betas)):
                    for k, t in cur.items():
                        kept[k] = torch.where(better.reshape(D, *[1] * (t.dim() - 1)), t.detach(), kept[k])
            if it == iters - 1 or not params or bool((best > 0).all()):
                break  # the last iteration, nothing to optimize, or every domain looks closed
            grads = torch.autograd.grad(-low.sum(), params, allow_unused=True)
            grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads))
            if opt_a is not None:
                opt_a.step(grads[:len(alphas)])
            if opt_b is not None:
                opt_b.step(grads[len(alphas):])
            with torch.no_grad():
                for a in alphas.values():
                    a.clamp_(0, 1)
                for b in bparams:
                    b.clamp_(min=0)
            last_is_best = False
            last = time.perf_counter() - t0
        f64 = torch.float64

        def bound(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor], tp: dict[int, torch.Tensor | None] | None = None) -> torch.Tensor:
            with torch.no_grad():
                low = self.lower(boxes, signs, {r: x.detach().to(f64) for r, x in a.items()}, {p: x.detach().to(f64) for p, x in b.items()},
                                 taps=tp)  # type: ignore[arg-type]
            v = (low - self.d).amax(dim=1)
            return torch.where(torch.isnan(v), torch.full_like(v, -float("inf")), v)  # a NaN bound is open, never closed

        tp: dict[int, torch.Tensor | None] = {r: None for r, _ in self.relus}
        tp[0] = None  # the input coefficients: their minimizing corner is the domain's attack point
        if not last_is_best:
            boxes = self.relaxed(boxes)  # two evaluations
        value = bound(alphas, betas, tp)
        if not last_is_best:
            value = torch.maximum(value, bound(kept_a, kept_b))
        taps = {r: t for r, t in tp.items() if t is not None}
        return (value, {r: a.detach().to(STORE) for r, a in alphas.items()}, {p: b.detach().to(STORE) for p, b in betas.items()}, taps, boxes)

    def attack_points(self, boxes: list[Box], taps: dict[int, torch.Tensor]) -> torch.Tensor | None:
        """(D, *input) the corner of the input box that minimizes each domain's linear lower
        bound of its first row (beta-CROWN's primal guess): where a domain is loose, the net's
        value there is often near the bound's."""
        A0 = taps.get(0)
        if A0 is None:
            return None
        lo, hi = boxes[0]
        return torch.where(A0[:, 0] >= 0, lo, hi)

    def violating(self, x: torch.Tensor) -> np.ndarray | None:
        """The first of the points ``x`` whose float64 output satisfies every row of the clause."""
        with torch.no_grad():
            y = self.graph.forward_torch(x)
        C = self.A[0].flatten(1)
        hit = ((y @ C.T) <= self.d).all(dim=1)
        k = torch.nonzero(hit).flatten()
        return x[int(k[0])].reshape(-1).cpu().numpy() if k.numel() else None

    def descend(self, x0: torch.Tensor, steps: int = ATTACK_STEPS) -> np.ndarray | None:
        """Signed-gradient descent on the clause's violation max_r (C_r y - d_r) from ``x0``
        (D, *input) inside the input box, step from a tenth of the box to nothing; the first
        point whose float64 output satisfies the clause, or None."""
        lo, hi = self.root[0]
        C = self.A[0].flatten(1)
        x = x0.detach().clone()
        for k in range(steps):
            x.requires_grad_(True)
            viol = (self.graph.forward_torch(x) @ C.T - self.d).amax(dim=1)
            if bool((viol <= 0).any()):
                break
            (g,) = torch.autograd.grad(viol.sum(), x)
            with torch.no_grad():
                x = torch.maximum(torch.minimum(x - 0.1 * (1 - k / steps) * (hi - lo) * g.sign(), hi), lo)
        return self.violating(x.detach())

    def scores(self, boxes: list[Box], taps: dict[int, torch.Tensor]) -> torch.Tensor:
        """(D, total) BaBSR score of every ReLU input neuron, -inf where it is stable."""
        out = []
        for r, p in self.relus:
            l, u = boxes[p][0].flatten(1), boxes[p][1].flatten(1)
            unstable = (l < 0) & (u > 0)
            A = taps.get(r)
            if A is None:
                out.append(torch.full_like(l, -float("inf")))
                continue
            a = A.flatten(2).sum(1)  # (D, n): summed over the clause's rows
            icpt = torch.where(unstable, -l * u / torch.where(unstable, u - l, torch.ones_like(l)), torch.zeros_like(l))
            score = a.clamp(max=0).abs() * icpt + 1e-4 * a.abs() * torch.minimum(-l, u).clamp(min=0)
            out.append(torch.where(unstable, score, torch.full_like(score, -float("inf"))))
        return torch.cat(out, dim=1)

    def candidates(self, boxes: list[Box], taps: dict[int, torch.Tensor], k: int) -> torch.Tensor:
        s = self.scores(boxes, taps)
        k = min(k, s.shape[1])
        v, j = s.topk(k, dim=1)
        return torch.where(torch.isfinite(v), j, torch.full_like(j, -1))

    def locate(self, flat: torch.Tensor) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """(node p, rows, neuron index in p) for global candidate indices ``flat`` (D,)."""
        out = []
        for p in self.inputs:
            sel = torch.nonzero((flat >= self.offset[p]) & (flat < self.offset[p] + self.sizes[p])).flatten()
            if sel.numel():
                out.append((p, sel, flat[sel] - self.offset[p]))
        return out

    def children(self, doms: _Domains, flat: torch.Tensor) -> _Domains:
        """2D children (first every active half, then every inactive one) splitting ``flat[k]`` in domain k."""
        D = len(doms)
        kids = _Domains.cat([doms, doms])
        kids.signs = {p: s.clone() for p, s in kids.signs.items()}
        ar = torch.arange(D, device=flat.device)
        for p, sel, idx in self.locate(flat):
            kids.signs[p][ar[sel], idx] = 1
            kids.signs[p][D + ar[sel], idx] = -1
        kids.depth = kids.depth + 1
        return kids


def _initial_alphas(problem: _Problem, D: int) -> dict[int, torch.Tensor]:
    out = {}
    for r, p in problem.relus:
        l, u = problem.root[p]
        init, _, _, unstable = relaxation(l, u)
        if bool(unstable.any()):
            out[r] = init.unsqueeze(1).expand(D, problem.R, *init.shape[1:]).to(STORE).clone()
    return out


def relu_bab(graph: Graph, gb: GraphBounds, clause: Clause, deadline: Deadline, batch: int = 256, branching: str = DEFAULT_BRANCHING,
             root_iters: int = ROOT_ITERS, iters: int = DOMAIN_ITERS, max_open: int = 400_000, attack: bool = True) -> BabResult:
    """Prove the clause unreachable (every row set C y <= d empty) over the box of ``gb``
    (its first box), or run out of time (or past ``max_open`` open domains, fewer where they
    would not fit ``STORE_BYTES``), or stop at a
    domain's attack point whose output reaches the clause (``counterexample``: a candidate that
    the caller confirms on the original model; never a verdict by itself). ``attack=False``:
    no attack points (a bound search, ``decide/refine.py``: the result's ``worst_open`` is what it is for)."""
    if branching not in BRANCHING:
        raise ValueError(f"branching {branching!r}: choose one of {', '.join(BRANCHING)}")
    start = time.perf_counter()
    pr = _Problem(graph, gb, clause)
    bounded, max_depth = 0, 0
    k_cand = FSB_CANDIDATES if branching == "fsb" else 1
    try:
        signs = pr.empty_signs(1)
        betas = {p: torch.zeros(1, pr.R, pr.sizes[p], dtype=STORE, device=graph.device) for p in pr.inputs}
        value, alphas, betas, taps, boxes = pr.optimize(signs, _initial_alphas(pr, 1), betas, root_iters, deadline)
    except DeadlineExceeded:
        return BabResult(False, 0, 0, 1, time.perf_counter() - start, "time up bounding the root")
    bounded += 1
    per_domain = pr.total + 4 * sum(a[0].numel() for a in alphas.values()) + 4 * pr.R * pr.total + 8 * k_cand + 16
    max_open = max(batch, min(max_open, STORE_BYTES // per_domain))
    if float(value[0]) > 0:
        return BabResult(True, bounded, 0, 0, time.perf_counter() - start, "the root is closed", worst_open=float("inf"))
    pts = pr.attack_points(boxes, taps) if attack else None
    hit = pr.violating(pts) if pts is not None else None
    if hit is not None:
        return BabResult(False, bounded, 0, 1, time.perf_counter() - start, "the root's attack point reaches the clause", counterexample=hit,
                         worst_open=float(value[0]))
    pool = _Pool(_Domains(signs, alphas, betas, value, torch.zeros(1, dtype=torch.long, device=graph.device), pr.candidates(boxes, {r: t for r, t in taps.items() if r}, k_cand)),
                 capacity=4 * batch)
    while len(pool):
        if deadline.expired():
            return _stopped(bounded, max_depth, len(pool), start, f"time up with {len(pool)} open domains", pool.worst())
        if len(pool) > max_open:
            return _stopped(bounded, max_depth, len(pool), start, f"{len(pool)} open domains: past the memory cap", pool.worst())
        n = min(max(1, batch // 2), len(pool))
        # best first (the most violated domains: they need the most splits, and their attack
        # points are the likeliest hits); depth first once the open set fills half its cap (the
        # deepest domains are the nearest to closing, and memory stays bounded)
        doms = pool.pop(n, depth_first=len(pool) > max_open // 2)
        try:
            fixed = doms.cand[:, 0] < 0
            if bool(fixed.any()):
                # every ReLU of these domains is fixed: the net is affine there, its exact LP decides
                for k in torch.nonzero(fixed).flatten().tolist():
                    one = doms.take(torch.tensor([k]))
                    if not _lp_closes(graph, pr.boxes(one.signs), clause, deadline):
                        return _stopped(bounded, max_depth, len(pool) + len(doms), start,
                                        "a domain with every ReLU fixed is not closed by its exact LP (the clause may be reachable)",
                                        min(pool.worst(), float(doms.value.min())))
                doms = doms.take(torch.nonzero(~fixed).flatten())
                if not len(doms):
                    continue
            flat = doms.cand[:, 0]
            if branching == "fsb" and doms.cand.shape[1] > 1:
                flat = _fsb_choice(pr, doms)
            kids = pr.children(doms, flat)
            value, alphas, betas, taps, boxes = pr.optimize(kids.signs, kids.alphas, kids.betas, iters, deadline)
        except DeadlineExceeded:
            return _stopped(bounded, max_depth, len(pool) + len(doms), start, f"time up with {len(pool) + len(doms)} open domains",
                            min(pool.worst(), float(doms.value.min())))
        bounded += len(kids)
        kids.alphas, kids.betas, kids.value = alphas, betas, value
        pts = pr.attack_points(boxes, taps) if attack else None
        hit = pr.violating(pts) if pts is not None else None
        if hit is None and pts is not None:
            # a few descent steps from the attack points of the most violated children
            hit = pr.descend(pts[torch.argsort(value)[:ATTACK_DOMAINS]])
        if hit is not None:
            return BabResult(False, bounded, max_depth, len(pool) + len(kids), time.perf_counter() - start,
                             "a domain's attack point reaches the clause", counterexample=hit)
        keep = torch.nonzero(value <= 0).flatten()
        if keep.numel():
            kids.cand = pr.candidates([(l[keep], u[keep]) for l, u in boxes], {r: t[keep] for r, t in taps.items() if r}, k_cand)
            open_kids = _Domains({k: v[keep] for k, v in kids.signs.items()}, {k: v[keep] for k, v in kids.alphas.items()},
                                 {k: v[keep] for k, v in kids.betas.items()}, value[keep], kids.depth[keep], kids.cand)
            max_depth = max(max_depth, int(open_kids.depth.max()))
            pool.add(open_kids, max_capacity=max_open + 2 * batch)
    return BabResult(True, bounded, max_depth, 0, time.perf_counter() - start, f"every domain closed ({bounded} bounded, depth {max_depth})",
                     worst_open=float("inf"))


def _stopped(bounded: int, max_depth: int, open_domains: int, start: float, message: str, worst_open: float) -> BabResult:
    return BabResult(False, bounded, max_depth, open_domains, time.perf_counter() - start, message, worst_open=worst_open)


def _fsb_choice(pr: _Problem, doms: _Domains) -> torch.Tensor:
    """For each domain, the candidate whose worse child bound is highest (one back-substitution
    in OPTIMIZE with the parent's slopes and multipliers: a choice, not a bound; ties and
    failures: BaBSR's pick)."""
    D = len(doms)
    best = torch.full((D,), -float("inf"), dtype=OPTIMIZE, device=doms.value.device)
    choice = doms.cand[:, 0].clone()
    with torch.no_grad():
        for c in range(doms.cand.shape[1]):
            flat = doms.cand[:, c]
            ok = flat >= 0
            if not bool(ok.any()):
                continue
            sub = doms.take(torch.nonzero(ok).flatten())
            kids = pr.children(sub, flat[ok])
            boxes = pr.fast_boxes(pr.boxes(kids.signs))
            low = pr.lower(boxes, kids.signs, {r: a.to(OPTIMIZE) for r, a in kids.alphas.items()}, {p: b.to(OPTIMIZE) for p, b in kids.betas.items()},
                           fast=True)
            v = (low - pr.fast_d).amax(dim=1)
            m = len(sub)
            worse = torch.minimum(v[:m], v[m:])
            rows = torch.nonzero(ok).flatten()
            better = worse > best[rows]
            best[rows] = torch.where(better, worse, best[rows])
            choice[rows] = torch.where(better, flat[rows], choice[rows])
    return choice


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
        try:
            low = unit_rows_lower(graph, p, torch.arange(n, device=l.device), 1, boxes, deadline)
        except DeadlineExceeded:
            return False
        new_l = torch.maximum(l.flatten(1), low[:, :n])
        new_u = torch.minimum(u.flatten(1), -low[:, n:])
        if bool((new_l > new_u).any()):
            return True
        boxes[p] = (new_l.reshape(l.shape), new_u.reshape(u.shape))
        boxes = interval_boxes(graph, boxes[0][0], boxes[0][1], start=p + 1, boxes=boxes)
    return False
