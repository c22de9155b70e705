"""Input-domain branch and bound for networks with few inputs (ACAS Xu: 5).

The input box is covered by a frontier of sub-boxes. Each round takes a batch of the least
proven boxes and, for all of them at once (torch float64, batched over boxes):

1. recomputes every pre-activation bound on *that* sub-box: interval arithmetic, intersected
   with the bounds of the box's parent (valid: the box is a subset of it), then CROWN
   back-substitution of the neurons still unstable, intersected; all widened by
   ``SLACK`` against round-off (``form/ops/base.widen``), as for one box;
2. bounds every clause row ``C_r y`` from below by back-substitution with those relaxations,
   then (after ``SPEC_ALPHA_AFTER`` seconds of splitting), on the boxes that leaves open, by
   alpha-CROWN (``SPEC_ALPHA_ITERS`` projected Adam
   steps on the lower slopes, per box and row; every slope in [0, 1] is sound and the best
   iterate is kept): a clause whose some row satisfies ``lower(C_r y) > d_r`` is unreachable on
   the box, and a box where every clause is unreachable is dropped (proven);
3. looks for a counterexample in the boxes still open: box centres, the box vertex that
   minimizes each row's linear lower bound, then a few steps of projected sign-gradient
   ascent on the clause slack ``max_clause min_r (d_r - C_r y)``; any candidate whose float64
   ``Network.forward`` output reaches a clause (inside the original box) gives sat;
4. bisects every box still open along one input into two halves that share the midpoint, so
   the frontier always covers the original box exactly. The input is chosen by an estimate of
   how much halving it tightens the spec bound: each unstable ReLU's relaxation costs the
   bound ``gap_j`` (its intercept term in the back-substitution), and halving input i shrinks
   that neuron's range roughly by its share ``|a_ji| w_i / sum_i' |a_ji'| w_i'`` (``a_j``: the
   input coefficients of the neuron's own linear bounds); the score is ``sum_j gap_j *
   share_ji`` plus half the linear term ``|A_i| w_i`` of the spec bound. (On ACAS Xu this
   needs 10-100x fewer boxes than longest-edge or ``|A_i| w_i`` alone.)

unsat only when the frontier is empty, i.e. every piece of a cover of the box is proven; sat
only with a confirmed point. When time runs out the answer is timeout. When, past half the
budget, only a few boxes are left (typically a near-tight spot that splitting cannot
separate), they are handed to the big-M MILP (``milp/model.py``), one per box and open clause, with
that box's own bounds: a small box gives a much tighter MILP than the whole input box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustbench_mr.verifiers.bounds.chain import crown_bounds
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import Property

# Input splitting halves one input per step: shrinking every side of a d-dimensional box by a
# factor f takes about f**d boxes, so it pays off only for few inputs (ACAS Xu has 5, the VNN-COMP
# test nets 1-5); image inputs (64-3072) are left to the per-neuron MILP.
INPUT_SPLIT_MAX_INPUTS = 16
# Hand the rest to the MILP when at most this many boxes are open after MILP_HANDOFF_FRACTION of
# the time budget (or when the open boxes cannot be split any further).
MILP_FALLBACK_MAX_BOXES = 8
MILP_HANDOFF_FRACTION = 0.5
# Elements of the largest back-substitution tensor (batch x rows x width) per round: bounds
# memory (~8 bytes each, a few live copies) and keeps one round well under a second.
BATCH_ELEMENTS = 4_000_000
MAX_BATCH = 4096
BACKSUB_GROUPS = 4  # a batch back-substitutes in groups of boxes with similar unstable counts
ROOT_ATTACK_STARTS = 256  # random restarts of the gradient attack on the whole box
ROOT_ATTACK_STEPS = 16
# alpha-CROWN iterations on the spec rows of the boxes CROWN leaves open (0: CROWN only). ACAS Xu
# prop_2, `mr-eval vnnlib`, 2 shared cores: 4_2 41.6 s with CROWN only, 34.4 / 22.1 / 12.4 / 15.1 /
# 22.6 s with 2 / 5 / 10 / 20 / 40 iterations; 3_3 a timeout at 120 s (96,350 boxes open), 14.6 s with 10
SPEC_ALPHA_ITERS = 10
# ... from this many seconds of splitting on: most instances close within a second on CROWN alone,
# where alpha's iterations would cost more than they save (ACAS Xu prop_1: 0.38 -> 0.63 s per instance)
SPEC_ALPHA_AFTER = 1.0
LATE_ATTACK_AFTER = 1.0  # seconds of branch and bound before the first late attack
LATE_ATTACK_STARTS = 4096
LATE_ATTACK_STEPS = 50
ATTACK_MACS = 8_000_000_000  # caps one attack's work on big networks (~1 s); ACAS Xu gets 4096 x 50
ATTACK_STEPS = 8  # sign-gradient steps per round on the open boxes
ATTACK_BOXES = 256  # open boxes per round attacked from their centres (the least proven ones)
FRONTIER_BYTES = 1 << 29  # at most ~512 MB of open boxes (with their inherited bounds): then timeout
MIN_WIDTH = 1e-12  # relative side below which a box is not split further
LINEAR_WEIGHT = 0.5  # weight of the spec bound's linear term |A_i| w_i in the "gap" score
SPLIT_RULE = "gap"  # "gap" (see the module doc), "gaponly" (without the linear term), "coef" (|A_i| w_i)


torch: Any = None  # imported on first use (_load_torch): importing torch takes seconds, and
# decide/chain.py imports this module for every property, most of which never split inputs


def _load_torch() -> Any:
    global torch
    if torch is None:
        import torch as _torch

        torch = _torch
    return torch


@dataclass
class SplitOutcome:
    status: str  # "sat", "unsat", "timeout", "unknown", "error"
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    seconds: float = 0.0
    message: str = ""
    boxes: int = 0  # boxes bounded
    rounds: int = 0
    max_frontier: int = 0
    milp_solves: int = 0
    open_boxes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # left when undecided


class _BatchedBounds:
    """Batched bounds over many boxes by the one bound engine (``bounds/engine.py``) on the
    chain's graph (``form/from_chain.py``), and the property's rows as tensors."""

    def __init__(self, network: Network, prop: Property, method: str) -> None:
        if method not in ("crown", "interval"):
            raise ValueError(f"input splitting supports crown or interval bounds, not {method!r}")
        from robustbench_mr.verifiers.form.from_chain import affine_node, chain_graph

        self.method = method
        self.graph = chain_graph(network)
        self.node = [affine_node(k) for k in range(len(network.affines))]
        self.lin = [self.graph.nodes[i].op for i in self.node]  # the Linear ops
        self.W = [op.weight for op in self.lin]
        rows = [c.C for c in prop.clauses]
        self.S = torch.tensor(np.concatenate(rows, 0), dtype=torch.float64)  # (R, outputs)
        self.d = torch.tensor(np.concatenate([c.d for c in prop.clauses]), dtype=torch.float64)  # (R,)
        self.clause_of_row = torch.from_numpy(np.concatenate([np.full(c.C.shape[0], k) for k, c in enumerate(prop.clauses)]))
        self.num_clauses = len(prop.clauses)
        # (clauses, R) membership, for per-clause min / any over rows
        self.member = torch.nn.functional.one_hot(self.clause_of_row, self.num_clauses).T.bool()
        self.widest = max(w.shape[0] for w in self.W)
        widths = [w.shape[0] for w in self.W[:-1]]
        self.hidden_offsets = np.concatenate([[0], np.cumsum(widths)]).tolist()
        self.num_hidden = int(sum(widths))
        self.forward_macs = sum(w.numel() for w in self.W)

    def attack_starts(self, steps: int, most: int) -> int:
        """Restarts of an attack of ``steps`` steps that fit ATTACK_MACS multiply-adds."""
        return int(max(16, min(most, ATTACK_MACS // (3 * (steps + 1) * self.forward_macs))))

    def batch_size(self) -> int:
        return int(max(16, min(MAX_BATCH, BATCH_ELEMENTS // (2 * self.widest * self.widest))))

    # ---- forward pass and the attack objective
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph.forward_torch(x)

    def clause_slack(self, y: torch.Tensor) -> torch.Tensor:
        """(N, clauses): min_r (d_r - C_r y) per clause; >= 0 means the clause is reached."""
        t = self.d - y @ self.S.T  # (N, R)
        big = torch.full_like(t, torch.inf)
        return torch.where(self.member[None], t[:, None, :], big[:, None, :]).amin(-1)

    def clauses_proven(self, spec_lo: torch.Tensor) -> torch.Tensor:
        """(B, clauses): some row of the clause has ``lower(C_r y) > d_r`` on the box (unreachable there)."""
        return ((spec_lo > self.d)[:, None, :] & self.member[None]).any(-1)

    # ---- bounds
    def _upper(self, k: int, M: torch.Tensor, hl: list[torch.Tensor], hu: list[torch.Tensor], lo: torch.Tensor, hi: torch.Tensor,
               gaps: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sound upper bounds (B, rows) of ``M @ z_k`` over each box (M: (B, rows, n_k)), widened
        (the engine's back-substitution, through the relaxations of the hidden bounds ``hl``,
        ``hu`` of layers < k), and the input coefficients of the linear bounds (B, rows, inputs).
        ``gaps``: if given, gets, per hidden layer (last first), what each ReLU's relaxation adds
        to each row's bound (B, rows, width)."""
        from robustbench_mr.verifiers.bounds.engine import backward_lower
        from robustbench_mr.verifiers.form.from_chain import chain_boxes
        from robustbench_mr.verifiers.form.ops.relu import relaxation

        boxes = chain_boxes((lo, hi), list(zip(hl[:k], hu[:k])), len(self.node))
        taps: dict = {0: None}
        if gaps is not None:
            taps.update({self.node[j] + 1: None for j in range(k)})  # each ReLU's output
        low = backward_lower(self.graph, self.node[k], -M, boxes, taps=taps)  # upper(M z) = -lower(-M z)
        if gaps is not None:
            for j in range(k - 1, -1, -1):
                up_icpt = relaxation(hl[j], hu[j])[2]
                # the upper form's coefficient on the ReLU output is -tap: its positive part times the intercept
                gaps.append(taps[self.node[j] + 1].clamp(max=0).mul_(-up_icpt[:, None, :]))  # >= 0 term by term
        return -low, -taps[0]

    def _interval(self, k: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin[k].interval((lo, hi))

    def spec_bounds(self, lo: torch.Tensor, hi: torch.Tensor, prior: tuple[torch.Tensor, torch.Tensor] | None = None,
                    aux: dict | None = None, alpha_iters: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """Sound lower bounds of every clause row ``C_r y`` on each box (B, R), the input
        coefficients (B, R, inputs) of the linear lower bounds (None for interval bounds), and
        the hidden pre-activation bounds (B, hidden) found on the way.

        ``prior``: hidden bounds valid on a superset of each box (its parent's); they are
        intersected in, and a neuron they make stable needs no back-substitution.
        ``aux``: if given (crown), gets the data of the branching score: ``gaps`` (per hidden
        layer, what each ReLU's relaxation costs each spec row) and ``sens`` (per hidden layer,
        |input coefficients| of each neuron's linear bounds, (B, width, inputs)).
        ``alpha_iters``: alpha-CROWN steps on the spec rows of the boxes CROWN leaves open (crown only)."""
        from robustbench_mr.verifiers.form.ops.base import widen

        B = lo.shape[0]
        K = len(self.W)
        offs = self.hidden_offsets
        l, u = self._interval(0, lo, hi)  # exact up to round-off for the first affine map
        if prior is not None:
            l, u = torch.maximum(l, prior[0][:, offs[0]:offs[1]]), torch.minimum(u, prior[1][:, offs[0]:offs[1]])
            l = torch.minimum(l, u)
        hidden_l, hidden_u = [l], [u]
        sens = [self.W[0].abs().expand(B, -1, -1)]
        for k in range(1, K):
            l_new, u_new = self._interval(k, l.clamp(min=0), u.clamp(min=0))
            if k < K - 1 and prior is not None:
                l_new = torch.maximum(l_new, prior[0][:, offs[k]:offs[k + 1]])
                u_new = torch.minimum(u_new, prior[1][:, offs[k]:offs[k + 1]])
                l_new = torch.minimum(l_new, u_new)
            if self.method == "crown" and k < K - 1:
                # back-substitute, per box, only the neurons still unstable (padded to the
                # largest count of its group): the rest keep their interval / inherited bounds
                mask = (l_new < 0) & (u_new > 0)
                n = self.W[k].shape[0]
                if aux is not None:
                    sens.append(torch.zeros((B, n, lo.shape[1]), dtype=lo.dtype))
                cnt = mask.sum(1)
                # boxes in groups of similar unstable counts: each group pads to its own largest
                groups = torch.argsort(cnt).tensor_split(BACKSUB_GROUPS) if B >= 16 * BACKSUB_GROUPS else (torch.arange(B),)
                for g in groups:
                    m = int(cnt[g].max()) if g.numel() else 0
                    if not m:
                        continue
                    gb = g.numel()
                    idx = torch.argsort(mask[g].to(torch.int8), dim=1, descending=True, stable=True)[:, :m]  # unstable first
                    valid = torch.arange(m)[None, :] < cnt[g][:, None]
                    E = torch.zeros((gb, m, n), dtype=lo.dtype)
                    E.scatter_(2, idx[:, :, None], valid[:, :, None].to(lo.dtype))
                    ub, Ain = self._upper(k, torch.cat([E, -E], 1), [h[g] for h in hidden_l], [h[g] for h in hidden_u], lo[g], hi[g])
                    l_sym, u_sym = -ub[:, m:], ub[:, :m]
                    l_g, u_g = l_new[g], u_new[g]
                    l_old, u_old = l_g.gather(1, idx), u_g.gather(1, idx)
                    l_g = l_g.scatter(1, idx, torch.where(valid, torch.maximum(l_old, l_sym), l_old))
                    u_g = u_g.scatter(1, idx, torch.where(valid, torch.minimum(u_old, u_sym), u_old))
                    l_new[g], u_new[g] = torch.minimum(l_g, u_g), u_g  # both sound; equal means a constant
                    if aux is not None:
                        sg = torch.zeros((gb, n, lo.shape[1]), dtype=lo.dtype)
                        sg.scatter_(1, idx[:, :, None].expand(-1, -1, lo.shape[1]), (Ain[:, :m].abs() + Ain[:, m:].abs()) * valid[:, :, None] / 2.0)
                        sens[-1][g] = sg
            l, u = l_new, u_new
            if k < K - 1:
                hidden_l.append(l)
                hidden_u.append(u)
        hidden = (torch.cat(hidden_l, 1), torch.cat(hidden_u, 1))
        Sp, Sn = self.S.clamp(min=0), self.S.clamp(max=0)
        box = l @ Sp.T + u @ Sn.T
        box, _ = widen(box, box, torch.maximum(l.abs(), u.abs()) @ self.S.abs().T)
        if self.method != "crown":
            return box, None, hidden
        gaps: list | None = [] if aux is not None else None
        ub, A = self._upper(K - 1, (-self.S).expand(B, -1, -1), hidden_l, hidden_u, lo, hi, gaps)
        if aux is not None:
            aux["gaps"], aux["sens"] = gaps[::-1], sens
        sym = torch.maximum(-ub, box)
        if alpha_iters > 0:
            # alpha-CROWN on the spec rows of the boxes CROWN leaves open (every slope in [0, 1] is
            # sound; the best iterate is kept, never below CROWN's)
            idx = torch.nonzero(~self.clauses_proven(sym).all(-1)).flatten()
            if idx.numel():
                from robustbench_mr.verifiers.bounds.engine import alpha_lower
                from robustbench_mr.verifiers.form.from_chain import chain_boxes

                bxs = chain_boxes((lo[idx], hi[idx]), [(h[idx], g[idx]) for h, g in zip(hidden_l, hidden_u)], len(self.node))
                with torch.enable_grad():
                    al = alpha_lower(self.graph, self.node[K - 1], self.S.expand(idx.numel(), -1, -1), bxs, iters=alpha_iters)
                sym[idx] = torch.maximum(sym[idx], al.detach())
        return sym, -A, hidden


def _violations(network: Network, prop: Property, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """First candidate (clipped into the box) whose float64 ``Network.forward`` output reaches a clause."""
    if X.shape[0] == 0:
        return None
    X = np.clip(X, prop.lower, prop.upper)
    Y = network.forward(X)
    hit = np.zeros(X.shape[0], dtype=bool)
    for c in prop.clauses:
        hit |= np.all(Y @ c.C.T <= c.d, axis=1)
    for i in np.nonzero(hit)[0][:16]:
        # again alone: a batched product may round differently from the one-point pass that
        # check_property confirms with
        y = network.forward(X[i])
        if prop.is_violated_by(y):
            return X[i], y
    return None


def _attack(bb: _BatchedBounds, X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected sign-gradient ascent of the clause slack from X inside [lo, hi] (batched), the
    step shrinking geometrically from a quarter of the box to 1/400 of it; returns the best
    iterate per start and its (torch) slack."""
    step = (hi - lo) / 4.0
    decay = 0.01 ** (1.0 / max(steps - 1, 1))
    x = X.clone()
    best_x, best_val = x.clone(), torch.full(x.shape[:1], -torch.inf, dtype=x.dtype)
    for s in range(steps + 1):
        x = x.detach().requires_grad_(s < steps)
        with torch.set_grad_enabled(s < steps):
            obj = bb.clause_slack(bb.forward(x)).amax(-1)
        with torch.no_grad():
            better = obj > best_val
            best_x[better] = x[better]
            best_val = torch.where(better, obj, best_val)
        if s == steps:
            break
        (g,) = torch.autograd.grad(obj.sum(), x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + step * g.sign(), lo), hi)
        step = step * decay
    return best_x.detach(), best_val.detach()


def _confirm_best(network: Network, prop: Property, X: torch.Tensor, val: torch.Tensor, top: int = 16) -> tuple[np.ndarray, np.ndarray] | None:
    """Confirm by the float64 numpy forward pass the candidates whose torch slack is (nearly)
    non-negative, best first (at most ``top``)."""
    ok = torch.nonzero(val >= -1e-9).reshape(-1)
    if ok.numel() == 0:
        return None
    ok = ok[torch.argsort(val[ok], descending=True)[:top]]
    return _violations(network, prop, X[ok].numpy())


def _milp_fallback(network: Network, prop: Property, boxes: list[tuple[np.ndarray, np.ndarray]], deadline: float) -> tuple[str, str, tuple | None, int]:
    """Decide the remaining boxes by one MILP per box and open clause (bounds of that box)."""
    from robustbench_mr.verifiers.milp.model import MilpOutcome, build_clause_milp, solve_clause_milp

    solves = 0
    for lo, hi in boxes:
        b = crown_bounds(network, lo, hi)
        for clause in prop.clauses:
            spec_lo = np.maximum(clause.C, 0) @ b.lower[-1] + np.minimum(clause.C, 0) @ b.upper[-1]
            t_upper = float(np.min(clause.d - spec_lo))
            if t_upper < 0.0:
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return "timeout", f"MILP fallback: time up after {solves} solve(s)", None, solves
            m = build_clause_milp(network, b, lo, hi, clause, t_upper=t_upper)
            r = solve_clause_milp(m, remaining, warm_start=(lo + hi) / 2.0)
            solves += 1
            if r.outcome is MilpOutcome.REACHABLE:
                hit = _violations(network, prop, np.asarray(r.point).reshape(1, -1))
                if hit is not None:
                    return "sat", f"MILP counterexample on a sub-box (t={r.best_t:.3g})", hit, solves
                return "unknown", f"MILP incumbent t={r.best_t:.3g} on a sub-box not confirmed by the float64 forward pass", None, solves
            if r.outcome is MilpOutcome.UNREACHABLE:
                continue
            if r.outcome is MilpOutcome.UNKNOWN:
                return "unknown", f"MILP fallback: {r.message}", None, solves
            if r.outcome is MilpOutcome.TIMEOUT:
                return "timeout", f"MILP fallback stopped after {r.seconds:.1f}s", None, solves
            return "error", f"MILP fallback: {r.message}", None, solves
    return "unsat", f"every box proven ({len(boxes)} by MILP, {solves} solve(s))", None, solves


def split_and_bound(network: Network, prop: Property, time_budget: float, method: str = "crown", seed: int = 0,
                    milp_fallback: bool = True, max_boxes: int | None = None, proven_log: list | None = None) -> SplitOutcome:
    """Decide ``prop`` on ``network`` by input-domain branch and bound within ``time_budget`` s.

    ``max_boxes`` caps the number of boxes bounded (for tests); hitting it gives timeout.
    ``proven_log``: if given, every box proven by bounds is appended as (lo, hi) (for tests:
    proven and open boxes together must cover the input box).
    Torch runs single-threaded meanwhile (restored after): the tensors are small, parallelism is
    over instances, and on a loaded machine extra intra-op threads made small products ~100x slower.
    """
    _load_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _split_and_bound(network, prop, time_budget, method, seed, milp_fallback, max_boxes, proven_log)
    finally:
        torch.set_num_threads(threads)


def _split_and_bound(network: Network, prop: Property, time_budget: float, method: str, seed: int,
                     milp_fallback: bool, max_boxes: int | None, proven_log: list | None) -> SplitOutcome:
    start = time.perf_counter()
    deadline = start + time_budget

    def done(status: str, message: str, hit: tuple | None = None, **kw: object) -> SplitOutcome:
        x, y = hit if hit is not None else (None, None)
        return SplitOutcome(status, x, y, time.perf_counter() - start, message, boxes, rounds, max_frontier, **kw)

    boxes = rounds = max_frontier = 0
    if not prop.clauses:
        return done("unsat", "no clause: the unsafe set is empty")
    if prop.lower.size != network.num_inputs:
        raise ValueError(f"property box has {prop.lower.size} inputs, the network takes {network.num_inputs}")
    # one process-wide generator state is left alone: a local generator for the restarts
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bb = _BatchedBounds(network, prop, method)
    root_lo = torch.from_numpy(prop.lower.copy())
    root_hi = torch.from_numpy(prop.upper.copy())
    root_w = (root_hi - root_lo).clamp(min=1e-300)
    n0 = root_lo.numel()

    # root attack: random restarts over the whole box
    starts = root_lo + torch.rand((bb.attack_starts(ROOT_ATTACK_STEPS, ROOT_ATTACK_STARTS), n0), generator=gen, dtype=torch.float64) * (root_hi - root_lo)
    starts[0] = (root_lo + root_hi) / 2.0
    cand, val = _attack(bb, starts, root_lo.expand_as(starts), root_hi.expand_as(starts), ROOT_ATTACK_STEPS)
    hit = _confirm_best(network, prop, cand, val)
    if hit is not None:
        return done("sat", "counterexample by gradient attack on the whole box", hit)

    # the frontier: boxes (lo, hi), a priority (smaller = less proven: processed first) and the
    # hidden bounds of each box's parent (valid on the box: it is a subset of the parent)
    H = bb.num_hidden
    inf = torch.full((1, H), torch.inf, dtype=torch.float64)
    front = _Frontier(root_lo[None].clone(), root_hi[None].clone(), torch.zeros(1, dtype=torch.float64), -inf, inf)
    frontier_cap = max(10_000, FRONTIER_BYTES // (8 * (2 * H + 2 * n0 + 1)))
    batch = bb.batch_size()
    next_attack = LATE_ATTACK_AFTER
    stuck: list[_Frontier] = []  # boxes too small to split, not proven

    def open_boxes(limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        f = _Frontier.cat([front] + stuck)
        return [(a.numpy().copy(), b.numpy().copy()) for a, b in zip(f.lo[:limit], f.hi[:limit])]

    round_start, last_round = None, 0.0
    while front.size:
        n_open = front.size + sum(f.size for f in stuck)
        max_frontier = max(max_frontier, n_open)
        now = time.perf_counter()
        if round_start is not None:
            last_round = now - round_start
        round_start = now
        # no round that would end past the deadline (a round of hard boxes takes ~0.5 s: the
        # answer came up to that late)
        if now + last_round > deadline or (max_boxes is not None and boxes >= max_boxes) or n_open > frontier_cap:
            why = "frontier too large" if n_open > frontier_cap else "time up" if now + last_round > deadline else "box limit"
            return done("timeout", f"{why}: {n_open} box(es) left after {boxes} bounded in {rounds} round(s)", open_boxes=open_boxes(1000))
        if milp_fallback and n_open <= MILP_FALLBACK_MAX_BOXES and now - start > MILP_HANDOFF_FRACTION * time_budget:
            break
        if now - start > next_attack:
            # a hard instance: a larger attack on the whole box, at doubling intervals (at most
            # about a quarter of the time); some counterexamples sit in regions the bounds leave
            # for long among many equally open boxes
            starts = root_lo + torch.rand((bb.attack_starts(LATE_ATTACK_STEPS, LATE_ATTACK_STARTS), n0), generator=gen, dtype=torch.float64) * (root_hi - root_lo)
            t0 = time.perf_counter()
            cand, val = _attack(bb, starts, root_lo.expand_as(starts), root_hi.expand_as(starts), LATE_ATTACK_STEPS)
            hit = _confirm_best(network, prop, cand, val)
            if hit is not None:
                return done("sat", f"counterexample by a late gradient attack after {boxes} box(es)", hit)
            next_attack = 2.0 * (time.perf_counter() - start) + 3.0 * (time.perf_counter() - t0)
        rounds += 1
        cur, front = front.take(batch)
        boxes += cur.size
        lo, hi = cur.lo, cur.hi
        with torch.no_grad():
            aux: dict | None = {} if method == "crown" else None
            alpha_iters = SPEC_ALPHA_ITERS if now - start >= SPEC_ALPHA_AFTER else 0
            spec_lo, A, hidden = bb.spec_bounds(lo, hi, (cur.pl, cur.pu), aux, alpha_iters)
            margin = spec_lo - bb.d  # > 0: that row cannot hold on the box
            clause_proven = bb.clauses_proven(spec_lo)  # (B, clauses)
            keep = ~clause_proven.all(-1)
        if proven_log is not None:
            proven_log.extend((a.numpy().copy(), b.numpy().copy()) for a, b in zip(lo[~keep], hi[~keep]))
        if not bool(keep.any()):
            continue
        lo, hi, margin, clause_proven = lo[keep], hi[keep], margin[keep], clause_proven[keep]
        pl, pu = hidden[0][keep], hidden[1][keep]
        A = A[keep] if A is not None else None
        if aux is not None:
            aux = {k: [t[keep] for t in v] for k, v in aux.items()}
        # priority: the best row margin of the least proven open clause (children inherit it)
        cm = torch.where(bb.member[None], margin[:, None, :], torch.full_like(margin[:, None, :], -torch.inf)).amax(-1)
        cm = torch.where(clause_proven, torch.full_like(cm, torch.inf), cm).amin(-1)
        # counterexample candidates: centres, the vertices minimizing each row's linear lower bound, then the attack
        centre = (lo + hi) / 2.0
        cands = [centre]
        if A is not None:
            for r in range(A.shape[1]):
                cands.append(torch.where(A[:, r] > 0, lo, hi))
        X = torch.cat(cands, 0)
        with torch.no_grad():
            val = bb.clause_slack(bb.forward(X)).amax(-1)
        hit = _confirm_best(network, prop, X, val)
        if hit is None:
            # the attack from the centres of the least proven boxes
            least = torch.argsort(cm)[:ATTACK_BOXES]
            xa, va = _attack(bb, centre[least], lo[least], hi[least], ATTACK_STEPS)
            hit = _confirm_best(network, prop, xa, va)
        if hit is not None:
            return done("sat", f"counterexample in a sub-box after {boxes} box(es), {rounds} round(s)", hit)
        # split: per box, the input with the largest |coefficient| x width over the rows that
        # could prove its open clauses (the best row of each), plus a tie-break on relative width
        width = hi - lo
        rel = width / root_w
        if A is not None:
            best_row_margin = torch.where(bb.member[None], margin[:, None, :], torch.full_like(margin[:, None, :], -torch.inf))
            best_row = best_row_margin.argmax(-1)  # (B', clauses)
            # weight of each spec row: how many open clauses it is the best row of
            row_w = torch.zeros_like(margin).scatter_add_(1, best_row, (~clause_proven).to(margin.dtype))
            coef = (A.abs() * row_w[:, :, None]).sum(1)
            score = coef * width
            if SPLIT_RULE != "coef" and aux is not None:
                gap_score = torch.zeros_like(score)
                for gap, sens in zip(aux["gaps"], aux["sens"]):
                    g = (gap * row_w[:, :, None]).sum(1)  # (B', width)
                    sw = sens * width[:, None, :]
                    frac = sw / sw.sum(-1, keepdim=True).clamp(min=1e-300)
                    gap_score = gap_score + (g[:, :, None] * frac).sum(1)
                score = gap_score + (LINEAR_WEIGHT * score if SPLIT_RULE == "gap" else 1e-3 * score)
            score = score + 1e-3 * score.amax(-1, keepdim=True) * rel / rel.amax(-1, keepdim=True).clamp(min=1e-300)
            score = torch.where(rel > MIN_WIDTH, score, torch.full_like(score, -1.0))
        else:
            score = torch.where(rel > MIN_WIDTH, rel, torch.full_like(rel, -1.0))
        dim = score.argmax(-1)
        parents = _Frontier(lo, hi, cm, pl, pu)
        splittable = score.gather(1, dim[:, None]).reshape(-1) >= 0
        if not bool(splittable.all()):
            stuck.append(parents.select(~splittable))
            parents, dim = parents.select(splittable), dim[splittable]
        front = _Frontier.cat([front] + list(parents.bisect(dim)))

    rest = _Frontier.cat([front] + stuck)
    if rest.size == 0:
        return done("unsat", f"every sub-box proven: {boxes} box(es) bounded in {rounds} round(s)")
    if not milp_fallback:
        return done("timeout", f"{rest.size} box(es) too small to split and not proven", open_boxes=open_boxes(1000))
    left = open_boxes()
    if len(left) > MILP_FALLBACK_MAX_BOXES:
        # many boxes too small to split (e.g. around one isolated point): one MILP over the whole
        # box decides them all, where one MILP per box would never finish
        left = [(prop.lower.copy(), prop.upper.copy())]
    status, msg, hit, solves = _milp_fallback(network, prop, left, deadline)
    msg = f"{boxes} box(es) bounded in {rounds} round(s), {len(left)} left to the MILP: {msg}"
    return done(status, msg, hit, milp_solves=solves, open_boxes=left if status != "unsat" else [])


@dataclass
class _Frontier:
    lo: torch.Tensor  # (N, inputs)
    hi: torch.Tensor
    score: torch.Tensor  # (N,)
    pl: torch.Tensor  # (N, hidden) bounds valid on each box
    pu: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.lo.shape[0])

    def select(self, idx: torch.Tensor) -> "_Frontier":
        return _Frontier(self.lo[idx], self.hi[idx], self.score[idx], self.pl[idx], self.pu[idx])

    @staticmethod
    def cat(parts: list["_Frontier"]) -> "_Frontier":
        return _Frontier(*(torch.cat([getattr(p, f) for p in parts]) for f in ("lo", "hi", "score", "pl", "pu")))

    def take(self, n: int) -> tuple["_Frontier", "_Frontier"]:
        """The n lowest-score boxes, and the rest."""
        if self.size <= n:
            return self, self.select(slice(0, 0))
        idx = torch.topk(self.score, n, largest=False).indices
        rest = torch.ones(self.size, dtype=torch.bool)
        rest[idx] = False
        return self.select(idx), self.select(rest)

    def bisect(self, dim: torch.Tensor) -> tuple["_Frontier", "_Frontier"]:
        """Each box halved along its ``dim``: the halves share the midpoint, so they cover it."""
        rows = torch.arange(self.size)
        mid = (self.lo[rows, dim] + self.hi[rows, dim]) / 2.0
        left_hi = self.hi.clone()
        left_hi[rows, dim] = mid
        right_lo = self.lo.clone()
        right_lo[rows, dim] = mid
        return (_Frontier(self.lo, left_hi, self.score, self.pl, self.pu),
                _Frontier(right_lo, self.hi, self.score, self.pl, self.pu))


__all__ = ["INPUT_SPLIT_MAX_INPUTS", "SplitOutcome", "split_and_bound"]
