"""Exactness of the MILP verifier against an independent brute force on 2-D input nets.

The brute force enumerates every linear region of the network inside the input box
(depth-first over neurons, keeping a sign only where an exact LP (scipy linprog) says the
region is non-empty), then maximizes each adversarial margin by one LP per region. Its
answer (max margin >= 0 <=> a counterexample exists) must match the MILP verdict on every
input where the margin is not within round-off of 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
from robustbench_mr.verifiers.spec.property import Clause, Property, robustness_property
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property


def random_net(rng: np.random.Generator, sizes: list[int], bias_scale: float = 0.3) -> Network:
    """A seeded ReLU MLP with layer widths ``sizes`` (shared by the verifier tests)."""
    layers: list = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [Affine(rng.normal(size=(b, a)) / np.sqrt(a), rng.normal(size=b) * bias_scale), ReLU()]
    return Network((sizes[0],), tuple(layers[:-1]))


def _lp_max(c: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float | None:
    """max c.x s.t. A x <= b, lo <= x <= hi (None if empty)."""
    r = linprog(-c, A_ub=A if len(A) else None, b_ub=b if len(b) else None, bounds=list(zip(lo, hi)), method="highs")
    return None if r.status == 2 else -r.fun


def brute_force_max(network: Network, lo: np.ndarray, hi: np.ndarray, objective_rows: np.ndarray) -> float:
    """max over the box of max_r objective_rows[r] . y(x), by exact region enumeration."""
    affines = network.affines
    best = -np.inf

    def visit(k: int, G: np.ndarray, h: np.ndarray, A: list, b: list, i: int, Gnext: np.ndarray, hnext: np.ndarray) -> None:
        # G, h: current layer's pre-activation as affine map of x; i: neuron being split;
        # Gnext/hnext: the post-activation map built so far (rows for neurons < i).
        nonlocal best
        if i == G.shape[0]:
            W, c = affines[k + 1].weight, affines[k + 1].bias
            G2, h2 = W @ Gnext, W @ hnext + c
            if k + 1 == len(affines) - 1:
                for row in objective_rows:
                    v = _lp_max(row @ G2, np.array(A).reshape(-1, len(lo)), np.array(b), lo, hi)
                    if v is not None:
                        best = max(best, v + row @ h2)
                return
            visit(k + 1, G2, h2, A, b, 0, np.zeros((0, len(lo))), np.zeros(0))
            return
        g, hh = G[i], h[i]
        Aa, ba = np.array(A).reshape(-1, len(lo)), np.array(b)
        hi_v = _lp_max(g, Aa, ba, lo, hi)
        lo_v = _lp_max(-g, Aa, ba, lo, hi)
        if hi_v is None:
            return
        if hi_v + hh > 0:  # active part non-empty: -g.x <= h
            visit(k, G, h, A + [-g], b + [hh], i + 1, np.vstack([Gnext, g]), np.append(hnext, hh))
        if -lo_v + hh < 0:  # inactive part non-empty: g.x <= -h
            visit(k, G, h, A + [g], b + [-hh], i + 1, np.vstack([Gnext, np.zeros_like(g)]), np.append(hnext, 0.0))

    W0, b0 = affines[0].weight, affines[0].bias
    visit(0, W0, b0, [], [], 0, np.zeros((0, len(lo))), np.zeros(0))
    return best


def random_robustness_property(rng: np.random.Generator, net: Network) -> tuple[Property, np.ndarray]:
    """A seeded robustness property of a 2-input, 3-class ``net`` around a random point, and
    its margin rows y_j - y_label (j != label) for the brute force."""
    x = rng.uniform(0.2, 0.8, size=2)
    label = int(np.argmax(net.forward(x)))
    eps = float(rng.choice([0.05, 0.2, 0.4, 0.8]))
    rows = np.array([np.eye(3)[j] - np.eye(3)[label] for j in range(3) if j != label])
    return robustness_property(x, label, eps, 3), rows


def random_clause_property(rng: np.random.Generator) -> tuple[Network, Property]:
    """A seeded 2-10-6-4 net and two clauses of two rows each on the wide box [-1, 1]^2."""
    net = random_net(rng, [2, 10, 6, 4])
    clauses = tuple(Clause(rng.normal(size=(2, 4)), rng.normal(size=2) - 1.0) for _ in range(2))
    return net, Property(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), clauses)


def clause_property_truth(net: Network, prop: Property) -> float:
    """max over clauses of max_x min_r (d_r - C_r y(x)) by brute force (> 0: sat)."""
    return max(_brute_clause_slack(net, prop.lower, prop.upper, c) for c in prop.clauses)


_TRUTH: dict[tuple[int, int], float] = {}


@pytest.mark.parametrize("bounds, input_split", [("interval", False), ("crown", False), ("lp", False), ("alpha", False), ("alpha-lp", False), ("crown", None)])
def test_robustness_verdicts_match_brute_force(bounds: str, input_split: bool | None) -> None:
    """MILP verdicts with each bound method (input splitting off), and the default pipeline."""
    rng = np.random.default_rng(1)
    decided = {"sat": 0, "unsat": 0}
    for trial in range(3):
        net = random_net(rng, [2, 8, 8, 3])
        for case in range(5):
            prop, rows = random_robustness_property(rng, net)
            if (trial, case) not in _TRUTH:  # the same seeded cases for every parametrization
                _TRUTH[trial, case] = brute_force_max(net, prop.lower, prop.upper, rows)
            truth = _TRUTH[trial, case]
            r = check_property(net, prop, timeout=20, bounds=bounds, samples=0, input_split=input_split)  # no sampling: exercise the MILP
            if abs(truth) < 1e-6:
                continue  # a tie within round-off: either verdict is defensible
            expected = PropertyStatus.SAT if truth > 0 else PropertyStatus.UNSAT
            assert r.status is expected, (trial, prop.lower, prop.upper, truth, r)
            decided[r.status.value] += 1
            if r.status is PropertyStatus.SAT:
                assert prop.contains_input(r.counterexample) and prop.is_violated_by(net.forward(r.counterexample))
    assert decided["sat"] >= 3 and decided["unsat"] >= 3, decided  # the test covers both answers


def test_general_clauses_multi_row_and_wide_box() -> None:
    """Several rows per clause and several clauses on a wide (ACAS-like) box."""
    rng = np.random.default_rng(7)
    checked = {"sat": 0, "unsat": 0}
    for _ in range(10):
        net, prop = random_clause_property(rng)
        truth = clause_property_truth(net, prop)
        if abs(truth) < 1e-6:
            continue
        r = check_property(net, prop, timeout=20, samples=0)
        assert r.status is (PropertyStatus.SAT if truth > 0 else PropertyStatus.UNSAT), (truth, r)
        checked[r.status.value] += 1
        if r.status is PropertyStatus.SAT:
            assert prop.is_violated_by(net.forward(r.counterexample))
    assert checked["sat"] >= 1 and checked["unsat"] >= 1, checked


def _brute_clause_slack(net: Network, lo: np.ndarray, hi: np.ndarray, clause: Clause) -> float:
    """max_x min_r (d_r - C_r y(x)) by dense region enumeration through a fine grid + LP."""
    # enumerate patterns on a fine grid, then solve an exact LP per pattern found
    g = np.linspace(0, 1, 201)
    pts = lo + (hi - lo) * np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    z, pats = pts, []
    for layer in net.affines[:-1]:
        z = z @ layer.weight.T + layer.bias
        pats.append(z > 0)
        z = np.maximum(z, 0)
    keys = np.concatenate(pats, 1)
    best = -np.inf
    for key in np.unique(keys, axis=0):
        # affine map and sign constraints of this region
        G, h = np.eye(2), np.zeros(2)
        A, b, off = [], [], 0
        for layer in net.affines[:-1]:
            G, h = layer.weight @ G, layer.weight @ h + layer.bias
            s = key[off:off + G.shape[0]]
            off += G.shape[0]
            A += list(np.where(s[:, None], -G, G))
            b += list(np.where(s, h, -h))
            G, h = G * s[:, None], h * s
        last = net.affines[-1]
        G, h = last.weight @ G, last.weight @ h + last.bias
        # variables (x, t): max t s.t. t + C (G x + h) <= d
        CG = clause.C @ G
        A_ub = np.vstack([np.hstack([np.array(A), np.zeros((len(A), 1))]), np.hstack([CG, np.ones((len(CG), 1))])])
        b_ub = np.concatenate([np.array(b), clause.d - clause.C @ h])
        r = linprog(np.array([0, 0, -1.0]), A_ub=A_ub, b_ub=b_ub, bounds=list(zip(lo, hi)) + [(-1e3, 1e3)], method="highs")
        if r.status == 0:
            best = max(best, -r.fun)
    return best
