"""ReLU-split branch and bound with beta-CROWN bounds (``decide/bab.py``) on chain nets, against
independent oracles: exact region enumeration (``brute_force_max``), dense grids of the split
domains themselves, and the MILP route of the same decision; and metamorphic changes that must
not change a verdict (function-preserving rescaling, neuron permutation)."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.engine import node_bounds
from robustbench_mr.verifiers.decide import bab
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
from robustbench_mr.verifiers.form.from_chain import chain_graph
from robustbench_mr.verifiers.spec.property import Clause, Property, robustness_property

from tests.verifiers.decide.test_exactness import brute_force_max, random_net


@functools.cache
def _clause_case(seed: int) -> tuple[Network, Property, bool]:
    """A seeded 2-12-12-3 net, a box, and the clause y0 - y1 <= d with d 4% of the range below
    or above the exact minimum of y0 - y1 over the box (region enumeration; the range from a
    grid): truth = reachable."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [2, 12, 12, 3])
    c, r = rng.uniform(-1, 1, 2), rng.uniform(0.1, 0.6)
    lo, hi = c - r, c + r
    row = np.array([1.0, -1.0, 0.0])
    vmin = -brute_force_max(net, lo, hi, -row[None])
    vmax = float((net.forward(np.random.default_rng(seed).uniform(lo, hi, size=(4096, 2))) @ row).max())
    d = vmin + rng.choice([-1.0, 1.0]) * 0.04 * (vmax - vmin + 1e-9)
    return net, Property(lo, hi, (Clause(row[None], np.array([d])),)), bool(d >= vmin)


def _bab(net: Network, prop: Property, branching: str = "babsr", seconds: float = 20.0) -> bab.BabResult:
    graph = chain_graph(net)
    gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
    return bab.relu_bab(graph, gb, prop.clauses[0], Deadline(seconds), batch=32, branching=branching)


@pytest.mark.parametrize("branching", bab.BRANCHING)
def test_relu_bab_matches_region_enumeration(branching: str) -> None:
    """Proves exactly the unreachable clauses (complete on tiny nets), never a reachable one."""
    proven = unreachable = 0
    for seed in range(16):
        net, prop, reachable = _clause_case(seed)
        r = _bab(net, prop, branching)
        assert not (r.proven and reachable), f"seed {seed}: bab proved a clause the enumeration reaches"
        if not reachable:
            unreachable += 1
            assert r.proven, f"seed {seed}: an unreachable clause left open on a 24-ReLU net ({r.message})"
        proven += r.proven
    assert unreachable == proven == 5  # seeded: 5 of the 16 clauses are unreachable


def test_beta_bounds_are_sound_on_their_split_domain() -> None:
    """With splits fixed and slopes and multipliers optimized, the bound never exceeds the
    minimum over a dense grid of the points that satisfy the split signs (the domain)."""
    rng = np.random.default_rng(3)
    checked = 0
    for trial in range(10):
        net = random_net(rng, [2, 10, 10, 2])
        c, r = rng.uniform(-1, 1, 2), 0.5
        prop = Property(c - r, c + r, (Clause(np.array([[1.0, -1.0]]), np.array([0.0])),))
        graph = chain_graph(net)
        gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
        pr = bab._Problem(graph, gb, prop.clauses[0])
        signs = pr.empty_signs(1)
        unstable = [(p, j) for p in pr.inputs for j in range(pr.sizes[p])
                    if float(pr.root[p][0][0, j]) < 0 < float(pr.root[p][1][0, j])]
        picks = [unstable[k] for k in rng.permutation(len(unstable))[:2]]
        for p, j in picks:
            signs[p][0, j] = int(rng.choice([-1, 1]))
        betas = {p: torch.zeros(1, pr.R, pr.sizes[p], dtype=bab.STORE) for p in pr.inputs}
        value, _, _, _, _ = pr.optimize(signs, bab._initial_alphas(pr, 1), betas, 60, Deadline(30.0))
        axis = np.linspace(0, 1, 401)
        grid = prop.lower + (prop.upper - prop.lower) * np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
        pre = _pre_activations(net, grid)
        inside = np.ones(len(grid), dtype=bool)
        for p, j in picks:
            layer = (p - 1) // 2
            s = int(signs[p][0, j])
            inside &= (s * pre[layer][:, j]) >= 0
        if not inside.any():
            continue
        y = net.forward(grid[inside])
        true_min = float((y @ np.array([1.0, -1.0])).min())
        assert float(value[0]) <= true_min + 1e-9 * (1 + abs(true_min)), f"trial {trial}: bound {float(value[0])} above the domain's minimum {true_min}"
        checked += 1
    assert checked >= 6


def test_branching_coefficients_belong_to_the_stored_slopes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``optimize`` returns the best bound of its iterates (float64, the best one chosen by the
    float32 iterations), but the coefficients the branching rule and the attack points read
    (taps) must be those of the slopes and multipliers it stores for the children: taps of
    another iterate mislead BaBSR (mnist_fc 256x4 prop_11_0.05, clause 0: 10,053 domains with the
    best iterate's taps, 643 with the stored one's). A large step size makes the iterates
    oscillate, so the last one differs from the best and may fall below the start."""
    monkeypatch.setattr(bab, "ALPHA_LR", 3.0)
    monkeypatch.setattr(bab, "BETA_LR", 3.0)
    rng = np.random.default_rng(5)
    differ = 0
    for trial in range(6):
        net = random_net(rng, [4, 16, 16, 3])
        c = rng.uniform(-1, 1, 4)
        prop = Property(c - 0.5, c + 0.5, (Clause(np.array([[1.0, -1.0, 0.0]]), np.array([0.0])),))
        graph = chain_graph(net)
        gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
        pr = bab._Problem(graph, gb, prop.clauses[0])
        D = 8
        signs = pr.empty_signs(D)
        for p in pr.inputs:  # a random split of an unstable neuron per domain and layer
            unstable = torch.nonzero((pr.root[p][0][0] < 0) & (pr.root[p][1][0] > 0)).flatten()
            if unstable.numel():
                signs[p][torch.arange(D), unstable[torch.randint(unstable.numel(), (D,), generator=torch.Generator().manual_seed(trial))]] = \
                    torch.as_tensor(rng.choice([-1, 1], D), dtype=torch.int8)
        betas0 = {p: torch.zeros(D, pr.R, pr.sizes[p], dtype=bab.STORE) for p in pr.inputs}
        alphas0 = bab._initial_alphas(pr, D)
        value, alphas, betas, taps, boxes = pr.optimize(signs, alphas0, betas0, 12, Deadline(30.0))

        def bound(a: dict, b: dict, tp: dict | None = None) -> torch.Tensor:
            with torch.no_grad():
                return (pr.lower(boxes, signs, {r: x.double() for r, x in a.items()}, {k: x.double() for k, x in b.items()}, taps=tp) - pr.d).amax(dim=1)

        again = {r: None for r, _ in pr.relus}
        again[0] = None
        stored_value = bound(alphas, betas, again)
        for r, t in taps.items():
            torch.testing.assert_close(t, again[r], rtol=1e-5, atol=1e-6 * float(again[r].abs().max()) + 1e-12)
        # the best iterate's bound: at least the stored one's and the start's (up to the slopes' float32 storage)
        assert bool((value >= stored_value - 1e-5 * (1 + stored_value.abs())).all())
        start = bound(alphas0, betas0)
        assert bool((value >= start - 1e-5 * (1 + start.abs())).all())
        differ += int((value > stored_value + 1e-6 * (1 + stored_value.abs())).sum())
    assert differ > 0  # the case the test is about: some domain's best iterate is not its last


def _pre_activations(net: Network, x: np.ndarray) -> list[np.ndarray]:
    out, h = [], x
    for a in net.affines[:-1]:
        z = h @ a.weight.T + a.bias
        out.append(z)
        h = np.maximum(z, 0)
    return out


def _rescaled_permuted(net: Network, rng: np.random.Generator) -> Network:
    """The same function: each hidden neuron scaled by a positive factor (undone in the next
    layer, exact through ReLU) over eight orders of magnitude, and the neurons permuted."""
    aff = [Affine(a.weight.copy(), a.bias.copy()) for a in net.affines]
    for k in range(len(aff) - 1):
        n = aff[k].weight.shape[0]
        s = 10.0 ** rng.uniform(-4, 4, size=n)
        perm = rng.permutation(n)
        aff[k] = Affine((aff[k].weight * s[:, None])[perm], (aff[k].bias * s)[perm])
        aff[k + 1] = Affine((aff[k + 1].weight / s[None, :])[:, perm], aff[k + 1].bias)
    layers: list = []
    for a in aff:
        layers += [a, ReLU()]
    return Network(net.input_shape, tuple(layers[:-1]))


def test_the_open_pool_hands_out_each_domain_once_in_order() -> None:
    """``_Pool`` (preallocated slots, grown on demand): every domain added comes out exactly once,
    with its own rows, the lowest values first (best first) or the deepest first, across growth
    and slot reuse; the same order as sorting the whole open set (what it replaced)."""
    rng = np.random.default_rng(3)

    def doms(ids: np.ndarray) -> bab._Domains:
        n = len(ids)
        t = torch.as_tensor(ids, dtype=torch.float32)
        return bab._Domains({3: (t % 100).to(torch.int8).reshape(n, 1).expand(n, 4).clone()}, {4: t.reshape(n, 1, 1).expand(n, 1, 5).clone()},
                            {3: -t.reshape(n, 1, 1).expand(n, 1, 4).clone()}, torch.as_tensor(rng.uniform(-1, 0, n)),
                            torch.as_tensor(rng.integers(0, 9, n)), torch.as_tensor(ids, dtype=torch.long).reshape(n, 1))

    pool = bab._Pool(doms(np.arange(1)), capacity=4)
    live = {0: (float(pool.store.value[0]), int(pool.store.depth[0]))}
    out: list[int] = []
    nxt = 1
    for step in range(40):
        k = int(rng.integers(1, 9))
        new = doms(np.arange(nxt, nxt + k))
        for i in range(k):
            live[int(new.cand[i, 0])] = (float(new.value[i]), int(new.depth[i]))
        pool.add(new, max_capacity=10_000)
        nxt += k
        depth_first = step % 3 == 2
        n = min(int(rng.integers(1, 7)), len(pool))
        got = pool.pop(n, depth_first)
        ids = got.cand[:, 0].tolist()
        key = (lambda i: -live[i][1]) if depth_first else (lambda i: live[i][0])
        want = sorted(live, key=key)[:n]
        assert sorted(key(i) for i in ids) == [key(i) for i in want]  # the n best by the rule (ties: any of them)
        for j, i in enumerate(ids):  # each row travelled with its domain
            assert float(got.alphas[4][j, 0, 0]) == i and float(got.betas[3][j, 0, 0]) == -i and int(got.signs[3][j, 0]) == i % 100
            assert (float(got.value[j]), int(got.depth[j])) == live.pop(i)
        out += ids
        assert len(pool) == len(live)
    assert len(out) == len(set(out)) and len(pool.store) > 4  # each domain once; the slots grew


def test_relu_bab_verdicts_survive_rescaling_and_permutation() -> None:
    rng = np.random.default_rng(7)
    for seed in range(6):
        net, prop, reachable = _clause_case(seed)
        twin = _rescaled_permuted(net, rng)
        x = np.random.default_rng(seed).uniform(prop.lower, prop.upper, size=(64, 2))
        assert np.allclose(twin.forward(x), net.forward(x), rtol=1e-9, atol=1e-9)
        assert _bab(twin, prop).proven == _bab(net, prop).proven == (not reachable), f"seed {seed}"


def _bab_route_case(n: int) -> tuple[Network, list[Property]]:
    """A seeded 6-48-48-4 net with more than ``MILP_MAX_UNSTABLE`` unstable ReLUs on eps-0.2
    balls (the ReLU-split bab route) and robustness properties at its first ``n`` seeded points."""
    rng = np.random.default_rng(11)
    net = random_net(rng, [6, 48, 48, 4], bias_scale=0.1)
    props = []
    for _ in range(n):
        x = rng.uniform(0.3, 0.7, size=6)
        props.append(robustness_property(x, int(np.argmax(net.forward(x))), 0.2, 4))
    return net, props


def test_check_property_chooses_relu_bab_and_agrees_with_the_milp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MILP_MAX_UNSTABLE unstable ReLUs the decision runs ReLU-split bab (and says so);
    forced to the MILP it reaches the same verdicts."""
    net, runs = _bab_route_case(6)
    threshold = bab.MILP_MAX_UNSTABLE
    bab_side = [check_property(net, p, 30.0, bounds="crown", samples=0, input_split=False) for p in runs]
    monkeypatch.setattr(bab, "MILP_MAX_UNSTABLE", 10 ** 9)
    milp_side = [check_property(net, p, 30.0, bounds="crown", samples=0, input_split=False) for p in runs]
    for a, b in zip(bab_side, milp_side):
        assert a.status in (PropertyStatus.SAT, PropertyStatus.UNSAT) and b.status in (PropertyStatus.SAT, PropertyStatus.UNSAT), (a, b)
        assert a.status == b.status, (a.message, b.message)
    via_bab = [r for r in bab_side if r.search == "relu-bab"]
    assert len(via_bab) == 6 and all(r.unstable_relus > threshold for r in via_bab)
    assert [r.status.value for r in bab_side].count("sat") == 1  # seeded: found at a domain's attack point
    assert all(r.search == "milp" for r in milp_side if r.unstable_relus > 0 and r.status is PropertyStatus.UNSAT)


def test_check_property_passes_its_branching_rule_to_relu_bab() -> None:
    """``check_property(branching=...)`` is the rule bab runs (its message names it), and both
    rules reach the same verdict on the bab-route net above."""
    net, (prop,) = _bab_route_case(1)
    out = {rule: check_property(net, prop, 30.0, bounds="crown", samples=0, input_split=False, branching=rule) for rule in bab.BRANCHING}
    for rule, r in out.items():
        assert r.search == "relu-bab" and f"({rule}, " in r.message, (rule, r.message)
    assert len({r.status for r in out.values()}) == 1 and out["babsr"].status in (PropertyStatus.SAT, PropertyStatus.UNSAT)


def test_lp_runs_as_alpha_crown_past_its_unstable_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bounds="lp"`` with more than ``LP_MAX_UNSTABLE`` ReLUs unstable under CROWN runs
    alpha-CROWN and no LP tightening (the result says so); the verdicts are those of the LP
    bounds below the limit."""
    from robustbench_mr.verifiers.bounds import lp_tighten
    from robustbench_mr.verifiers.decide import chain

    net, props = _bab_route_case(3)
    assert chain.LP_MAX_UNSTABLE > 0
    with_lp = [check_property(net, p, 30.0, bounds="lp", samples=0, input_split=False) for p in props]
    assert all(r.bound_method.startswith("lp") for r in with_lp if r.unstable_relus), [r.bound_method for r in with_lp]
    monkeypatch.setattr(chain, "LP_MAX_UNSTABLE", 0)

    def no_lp(*args: object, **kwargs: object) -> None:
        raise AssertionError("the LP tightening ran past LP_MAX_UNSTABLE")

    monkeypatch.setattr(lp_tighten, "lp_bounds", no_lp)
    with_alpha = [check_property(net, p, 30.0, bounds="lp", samples=0, input_split=False) for p in props]
    for a, b in zip(with_lp, with_alpha):
        assert a.status == b.status and a.status in (PropertyStatus.SAT, PropertyStatus.UNSAT), (a.message, b.message)
    assert any(r.bound_method.startswith("alpha") for r in with_alpha), [r.bound_method for r in with_alpha]


def test_bab_time_share_leaves_the_milp_the_rest_up_to_the_portfolio_limit() -> None:
    assert bab.bab_time_share(bab.MILP_MAX_UNSTABLE + 1) == bab.PORTFOLIO_BAB_SHARE < 1.0
    assert bab.bab_time_share(bab.PORTFOLIO_MAX_UNSTABLE) == bab.PORTFOLIO_BAB_SHARE
    assert bab.bab_time_share(bab.PORTFOLIO_MAX_UNSTABLE + 1) == 1.0


def _timed_bab(monkeypatch: pytest.MonkeyPatch, outer: Deadline, closes: dict[int, str], seconds: float) -> list[tuple[int, float, float]]:
    """``bab.relu_bab`` replaced by one that, per clause (keyed by its d), closes it in ``seconds``
    ("closes"), runs until its own deadline without closing it ("runs"), or gives up at once as
    at its memory cap ("cap"); each call's (clause, its deadline's time left, ``outer``'s time
    left) at its start."""
    calls: list[tuple[int, float, float]] = []

    def fake(graph, gb, clause, deadline, branching="babsr"):  # noqa: ANN001 - bab.relu_bab's signature
        key = int(clause.d[0])
        calls.append((key, deadline.left(), outer.left()))
        if closes[key] == "closes":
            time.sleep(seconds)
            return bab.BabResult(True, 1, 0, 0, seconds, "closed")
        while closes[key] == "runs" and not deadline.expired():
            time.sleep(0.005)
        return bab.BabResult(False, 1, 0, 1, 0.0, "past the memory cap" if closes[key] == "cap" else "time up")

    monkeypatch.setattr(bab, "relu_bab", fake)
    return calls


def test_each_clause_gets_its_share_of_the_time_left_at_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``share`` < 1 bab gets that fraction of the time left at each clause's turn (so it
    goes on while it closes clause after clause, past the share of the whole time), and the first
    clause that spends its share leaves itself and every later clause to the MILP, which then
    has at least 1 - share of that moment's time; a clause left open for another reason (its
    memory cap) does not stop the next."""
    clauses = [(k, Clause(np.ones((1, 2)), np.array([float(k)]))) for k in range(6)]
    outer = Deadline(0.4)
    calls = _timed_bab(monkeypatch, outer, {k: "closes" for k in range(6)}, 0.05)
    r = bab.bab_clauses(None, None, clauses, outer, lambda x: None, share=1 / 3)  # type: ignore[arg-type]
    assert r.left_open == () and [c[0] for c in calls] == list(range(6))  # 0.3 s of bab, past a third of 0.4 s
    for _, own, whole in calls:
        assert own <= whole / 3 + 1e-3 and own >= whole / 3 - 0.01
    outer = Deadline(0.6)
    calls = _timed_bab(monkeypatch, outer, {0: "cap", 1: "closes", 2: "runs", 3: "closes"}, 0.02)
    r = bab.bab_clauses(None, None, clauses[:4], outer, lambda x: None, share=1 / 3)  # type: ignore[arg-type]
    assert [c[0] for c in calls] == [0, 1, 2] and r.left_open == (0, 2, 3), r.message
    assert "clause 0: past the memory cap" in r.message
    assert outer.left() >= (2 / 3) * calls[2][2] - 0.02
    outer = Deadline(0.6)
    calls = _timed_bab(monkeypatch, outer, {0: "closes", 1: "runs", 2: "closes", 3: "closes"}, 0.02)
    r = bab.bab_clauses(None, None, clauses[:4], outer, lambda x: None, share=1 / 3)  # type: ignore[arg-type]
    assert [c[0] for c in calls] == [0, 1] and r.left_open == (1, 2, 3), r.message
    assert "its share of the time spent" in r.message
    assert outer.left() >= (2 / 3) * calls[1][2] - 0.02
    # share 1: the caller's own deadline for every clause, and a clause at its cap does not stop the next
    outer = Deadline(5.0)
    calls = _timed_bab(monkeypatch, outer, {0: "cap", 1: "closes"}, 0.0)
    r = bab.bab_clauses(None, None, clauses[:2], outer, lambda x: None)  # type: ignore[arg-type]
    assert r.left_open == (0,) and [c[0] for c in calls] == [0, 1] and all(abs(own - whole) < 0.05 for _, own, whole in calls)


def test_what_bab_leaves_open_in_its_share_the_milp_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bab given a vanishing share of the time closes nothing; the MILP then decides every
    property within the same deadline, with the verdicts of bab on the whole time, and the
    result says both ran. (The portfolio alone: the refinement's first bab slice, on the whole
    time of its slice, would close these before the share applies; test_refine.py has that route.)"""
    from robustbench_mr.verifiers.decide import chain

    monkeypatch.setattr(chain, "refine_applies", lambda network, b: False)
    net, props = _bab_route_case(4)
    whole = [check_property(net, p, 30.0, bounds="crown", samples=0, input_split=False) for p in props]
    monkeypatch.setattr(bab, "PORTFOLIO_BAB_SHARE", 1e-9)
    shared = [check_property(net, p, 30.0, bounds="crown", samples=0, input_split=False) for p in props]
    for a, b in zip(whole, shared):
        assert a.search == "relu-bab" and b.unstable_relus > bab.MILP_MAX_UNSTABLE
        assert b.search == "relu-bab+milp" and "after relu-split bab" in b.message, b.message
        assert b.status is a.status and a.status in (PropertyStatus.SAT, PropertyStatus.UNSAT), (a.message, b.message)
        assert b.stages["bab"] < 1.0 and b.stages["milp"] > 0.0


def test_depth_first_order_and_open_cap_keep_the_verdicts() -> None:
    """With the open set capped near the batch (so the search runs depth first), the unreachable
    clauses are still proven and no reachable one is; a cap below what a clause needs stops
    with a message, not a verdict."""
    proven = 0
    for seed in range(16):
        net, prop, reachable = _clause_case(seed)
        graph = chain_graph(net)
        gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
        r = bab.relu_bab(graph, gb, prop.clauses[0], Deadline(20.0), batch=8, max_open=16)
        assert r.proven == (not reachable) or (not r.proven and "cap" in r.message), (seed, r.message)
        assert not (r.proven and reachable)
        proven += r.proven
    assert proven == 5  # seeded: every unreachable clause, depth first as well


def test_bab_clauses_returns_only_confirmed_counterexamples_and_tries_every_clause() -> None:
    """The one clause driver of the chain and graph forms: a counterexample comes back only when
    the caller's ``confirm`` accepts it (otherwise its clause stays open, and the next clause
    still gets its turn); proven clauses are not in ``left_open``."""
    net, prop, _ = next(c for c in map(_clause_case, range(16)) if c[2])
    graph = chain_graph(net)
    gb = node_bounds(graph, torch.as_tensor(prop.lower), torch.as_tensor(prop.upper), "crown")
    # the same net and box: a clause far below the minimum (unreachable) after the reachable one
    row = prop.clauses[0].C
    vmin = -brute_force_max(net, prop.lower, prop.upper, -row)
    far = Clause(row, np.array([vmin - 1.0]))
    clauses = [(7, prop.clauses[0]), (9, far)]

    def confirm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        y = net.forward(x[None])[0]
        ok = bool(np.all(prop.lower - 1e-12 <= x) and np.all(x <= prop.upper + 1e-12) and np.all(row @ y <= prop.clauses[0].d))
        return (x, y) if ok else None

    r = bab.bab_clauses(graph, gb, clauses, Deadline(20.0), confirm)
    assert r.counterexample is not None and r.left_open == (7,)
    x, y = r.counterexample
    assert float((row @ y)[0]) <= float(prop.clauses[0].d[0])
    # the caller refuses every candidate: the reachable clause stays open, the unreachable one is still proven
    refused = bab.bab_clauses(graph, gb, clauses, Deadline(20.0), lambda x: None)
    assert refused.counterexample is None and refused.left_open == (7,), refused.message
    assert "clause 7" in refused.message
    # no time: nothing is proven, nothing is claimed
    late = bab.bab_clauses(graph, gb, clauses, Deadline(0.0), confirm)
    assert late.counterexample is None and late.left_open == (7, 9)
