"""Intermediate-bound refinement by bound search: each unstable neuron's pre-activation bounds
tightened by a short ReLU-split branch and bound over the sub-network that computes it.

Why: on mnist_fc 256x4 at eps 0.05 the proof tree of ReLU-split bab is exponentially sensitive
to the intermediate bounds it starts from, and alpha-CROWN's are no tighter than the triangle
LP's. MILP-refined bounds (alpha-beta-CROWN's ``bab-refine``, 1 s of HiGHS per neuron; 320 s
for layers 2 and 4 of prop_0_0.05) take prop_0's first clause from 63,673 domains to 1,189,
and the whole property from more than 474,000 domains (300 s, open) to 43,781 (unsat, 31.6 s).
HiGHS is too slow for that on this budget (0.1 s or 0.3 s per neuron tightened nothing: its
model build and root LP take most of it). The same search on the batched bound engine does it
in a fraction of a second per neuron.

For hidden layer k >= 1 and an unstable neuron i of it (l_i < 0 < u_i), the sub-network is the
chain's layers up to affine layer k, with the (already refined) bounds of layers < k. Upper
side: bab on the clause ``-z_i <= 0`` (the region z_i >= 0) with no attack, best first; when
it stops, every input of the box lies in a closed domain (there z_i < 0) or an open one (there
z_i <= -value), so ``z_i <= max(0, -worst_open)`` (``BabResult.worst_open``): a sound upper
bound whatever the search did, tighter the further it got; all closed: z_i <= 0 (stable).
Lower side alike on ``z_i <= 0``. The bounds are intersected with the old ones (never looser),
and each refined layer's successors are recomputed by CROWN from the refined bounds (and
intersected), so the next layer's searches start from them.
"""

from __future__ import annotations

import time

import numpy as np

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.chain import Bounds, graph_boxes, layer_crown
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import Clause

MAX_PER_NEURON = 0.5  # seconds of bound search per neuron side at most (the budget is shared out evenly below it)
MIN_PER_NEURON = 0.05  # and at least (less is little more than the root's bound, which alpha-CROWN has given)
LATER_WEIGHT = 0.5  # a later layer's unstable neuron against one of the layer being searched, in the time shares
ROOT_ITERS = 20  # alpha-beta iterations at each search's root
REFINE_AFTER = 0.1  # bab runs on this fraction of the time left first: properties it closes there skip the refinement
# of the time left after that first slice, for the refinement: side by side (mnist_fc, 120 s cap,
# worktrees of 66e24c4) 0.5 decided 58 / 60 and 0.35 57 (256x4 prop_6_0.03 unsat in 97.6 s),
# the other verdicts the same; the instances both decided took up to 15 s longer
REFINE_FRACTION = 0.5
# the widest hidden layer, at most: on oval21's conv chains (hidden layers 2,048-4,096 wide) the
# refinement took 27-33 s per instance and decided nothing more; three base_kw instances took
# 2.2-3.7x as long (img8194 20.7 -> 77.7 s) (side by side with 8760535, 120 s cap)
REFINE_MAX_WIDTH = 1024
REFINE_MAX_TARGETS = 2048  # unstable neurons past the first hidden layer, at most: more would get too little search each (a later layer's count falls as the earlier ones are refined)


def refine_applies(network: Network, b: Bounds) -> bool:
    """Whether to refine ``b`` before ReLU-split bab: a chain with at least two hidden layers, none
    wider than ``REFINE_MAX_WIDTH``, and between 1 and ``REFINE_MAX_TARGETS`` unstable neurons
    past the first one (whose bounds are exact)."""
    targets = sum(int(_unstable(l, u).size) for l, u in b.hidden[1:])
    widest = max(a.weight.shape[0] for a in network.affines[:-1]) if len(network.affines) > 1 else 0
    return len(network.affines) >= 3 and widest <= REFINE_MAX_WIDTH and 0 < targets <= REFINE_MAX_TARGETS


def _unstable(l: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.nonzero((l < 0) & (u > 0))[0]


def refine_chain_bounds(network: Network, lower: np.ndarray, upper: np.ndarray, b: Bounds, budget: float,
                        deadline: Deadline | None = None) -> tuple[Bounds, dict]:
    """``b`` with the unstable neurons of hidden layers 1.. tightened by bound search, within
    ``budget`` wall seconds (and the caller's ``deadline``): the refined bounds and what was done
    (seconds, neurons searched, unstable counts before and after). Layer 0's bounds are exact
    (an affine map of the box), so the first layer searched is layer 1."""
    from robustbench_mr.verifiers.bounds.engine import GraphBounds
    from robustbench_mr.verifiers.decide.bab import relu_bab
    from robustbench_mr.verifiers.form.from_chain import chain_graph

    start = time.perf_counter()
    stop = start + max(budget, 0.0)
    if deadline is not None:
        stop = min(stop, time.perf_counter() + max(deadline.left(), 0.0))
    los, his = [np.array(l, dtype=np.float64) for l in b.lower], [np.array(u, dtype=np.float64) for u in b.upper]
    hidden = len(network.affines) - 1
    before = [int(_unstable(l, u).size) for l, u in zip(los[:hidden], his[:hidden])]
    searched = 0
    for k in range(1, hidden):
        targets = _unstable(los[k], his[k])
        if not targets.size:
            continue
        # the widest triangle relaxations first (their chords cost the most): when the time is
        # short, the narrow ones are the ones left out
        l_, u_ = los[k][targets], his[k][targets]
        targets = targets[np.argsort(-(u_ * -l_) / (u_ - l_), kind="stable")]
        later = sum(int(_unstable(los[j], his[j]).size) for j in range(k + 1, hidden))
        # this layer's part of the time left: its searches against the later layers' (weighted
        # by LATER_WEIGHT: their counts fall as this layer's bounds tighten)
        left = stop - time.perf_counter()
        layer_stop = time.perf_counter() + left * targets.size / (targets.size + LATER_WEIGHT * later)
        sub = Network(network.input_shape, network.layers[:2 * k + 1])
        graph = chain_graph(sub)
        gb = GraphBounds(graph_boxes(sub, lower, upper, los[:k + 1], his[:k + 1]), b.method)
        n = los[k].size
        # +1: the upper bound (the region z_i >= 0), -1: the lower bound
        searches = [(i, side) for i in targets for side in (1.0, -1.0)]
        for done, (i, side) in enumerate(searches):
            if (side > 0 and his[k][i] <= 0) or (side < 0 and los[k][i] >= 0):
                continue
            # the layer's time left shared evenly by its remaining searches, at least MIN_PER_NEURON
            share = min(MAX_PER_NEURON, max(MIN_PER_NEURON, (layer_stop - time.perf_counter()) / (len(searches) - done)))
            if time.perf_counter() + share > layer_stop + MIN_PER_NEURON / 2:
                break
            C = np.zeros((1, n))
            C[0, i] = -side
            r = relu_bab(graph, gb, Clause(C, np.zeros(1)), Deadline(share), attack=False, root_iters=ROOT_ITERS)
            searched += 1
            if not r.worst_open > -np.inf:
                continue  # nothing bounded (or no finite bound: a NaN is never taken)
            # closed domains: side * z_i < 0; open ones: side * z_i <= -value
            reach = -min(r.worst_open, 0.0)
            if side > 0:
                his[k][i] = min(his[k][i], reach)
            else:
                los[k][i] = max(los[k][i], -reach)
        # the successors from the refined bounds (CROWN), never looser than before
        for j in range(k + 1, len(network.affines)):
            rows = np.arange(los[j].size)
            lj, uj = layer_crown(network, j, los[:j], his[:j], lower, upper, rows)
            los[j], his[j] = np.maximum(los[j], lj), np.minimum(his[j], uj)
        if time.perf_counter() >= stop:
            break
    after = [int(_unstable(l, u).size) for l, u in zip(los[:hidden], his[:hidden])]
    info = {"seconds": round(time.perf_counter() - start, 3), "searched": searched, "unstable_before": before, "unstable_after": after}
    return Bounds(tuple(los), tuple(his), b.method), info
