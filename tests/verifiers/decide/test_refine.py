"""Intermediate-bound refinement by bound search (``decide/refine.py``) against exact region
enumeration of every neuron's range, on seeded nets and on function-preserving rescalings of
them (eight orders of magnitude per neuron); and the decision route through it against the
MILP's verdicts."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from robustbench_mr.deadline import Deadline
from robustbench_mr.verifiers.bounds.compute import compute_bounds
from robustbench_mr.verifiers.bounds.engine import node_bounds
from robustbench_mr.verifiers.decide import bab, chain, refine
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from robustbench_mr.verifiers.decide.refine import refine_applies, refine_chain_bounds
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.form.from_chain import chain_graph
from robustbench_mr.verifiers.spec.property import Clause, robustness_property

from tests.verifiers.decide.test_bab import _rescaled_permuted
from tests.verifiers.decide.test_exactness import brute_force_max, random_net


@functools.cache
def _case(seed: int) -> tuple[Network, np.ndarray, np.ndarray]:
    """A seeded 3-8-8-8-2 net and a box wide enough to leave many neurons unstable."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [3, 8, 8, 8, 2])
    c, r = rng.uniform(-1, 1, 3), rng.uniform(0.3, 0.8)
    return net, c - r, c + r


def _exact_ranges(net: Network, lo: np.ndarray, hi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact (min, max) of each pre-activation of affine layer k over the box (enumeration)."""
    sub = Network(net.input_shape, net.layers[:2 * k + 1])
    n = net.affines[k].weight.shape[0]
    eye = np.eye(n)
    return (np.array([-brute_force_max(sub, lo, hi, -eye[i:i + 1]) for i in range(n)]),
            np.array([brute_force_max(sub, lo, hi, eye[i:i + 1]) for i in range(n)]))


def _grid_ranges(net: Network, lo: np.ndarray, hi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (min, max) of each pre-activation of affine layer k on a dense grid of the box (inside
    the exact range: a sound interval must contain it)."""
    axes = [np.linspace(a, b, 31) for a, b in zip(lo, hi)]
    h = np.stack(np.meshgrid(*axes), -1).reshape(-1, lo.size)
    for a in net.affines[:k]:
        h = np.maximum(h @ a.weight.T + a.bias, 0)
    z = h @ net.affines[k].weight.T + net.affines[k].bias
    return z.min(0), z.max(0)


@functools.cache
def _exact_case_ranges(seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return _exact_ranges(*_case(seed), k)


def _check_refined(net: Network, lo: np.ndarray, hi: np.ndarray, ranges) -> tuple[int, int]:
    """Refine CROWN's bounds; assert each neuron's refined interval contains its range
    (``ranges(k)``: exact, or a grid's) and lies inside CROWN's: (neurons tightened, stabilized)."""
    b = compute_bounds(net, lo, hi, "crown")
    r, info = refine_chain_bounds(net, lo, hi, b, budget=2.0)
    tightened = stabilized = 0
    for k in range(1, len(net.affines)):
        emin, emax = ranges(k)
        scale = np.maximum(np.abs(emin), np.abs(emax)) + 1e-300
        # sound: the exact range inside the refined interval (to the engine's relative rounding)
        assert np.all(r.lower[k] <= emin + 1e-9 * scale) and np.all(r.upper[k] >= emax - 1e-9 * scale), k
        assert np.all(r.lower[k] >= b.lower[k]) and np.all(r.upper[k] <= b.upper[k]), k  # never looser
        if k < len(net.affines) - 1:
            was = (b.lower[k] < 0) & (b.upper[k] > 0)
            stabilized += int(np.sum(was & ~((r.lower[k] < 0) & (r.upper[k] > 0))))
        tightened += int(np.sum((r.upper[k] < b.upper[k] - 1e-6 * scale) | (r.lower[k] > b.lower[k] + 1e-6 * scale)))
    assert info["searched"] > 0 and sum(info["unstable_after"]) <= sum(info["unstable_before"])
    return tightened, stabilized


def test_refined_bounds_contain_every_exact_range_and_tighten_crowns() -> None:
    tightened = stabilized = 0
    for seed in range(3):
        t, s = _check_refined(*_case(seed), functools.partial(_exact_case_ranges, seed))
        tightened, stabilized = tightened + t, stabilized + s
    assert tightened >= 6 and stabilized >= 2, (tightened, stabilized)


def test_refinement_is_sound_on_rescaled_and_permuted_twins() -> None:
    """Weights over eight orders of magnitude per neuron (the same function): still sound against
    a dense grid, and still tightening (no absolute tolerance is hidden in the search)."""
    rng = np.random.default_rng(5)
    tightened = 0
    for seed in range(4):
        net, lo, hi = _case(seed)
        twin = _rescaled_permuted(net, rng)
        t, _ = _check_refined(twin, lo, hi, functools.partial(_grid_ranges, twin, lo, hi))
        tightened += t
    assert tightened >= 6


def test_a_bound_search_bounds_the_neuron_by_its_worst_open_domain() -> None:
    """``relu_bab(attack=False)`` on ``-z_i <= 0``: when it stops early, ``-worst_open`` is a
    sound upper bound of z_i (at least the exact maximum)."""
    net, lo, hi = _case(1)
    sub = Network(net.input_shape, net.layers[:5])  # up to affine layer 2
    graph = chain_graph(sub)
    gb = node_bounds(graph, torch.as_tensor(lo), torch.as_tensor(hi), "crown")
    b = compute_bounds(net, lo, hi, "crown")
    _, emax = _exact_case_ranges(1, 2)
    checked = 0
    for i in np.nonzero(b.upper[2] > 0)[0]:
        C = np.zeros((1, 8))
        C[0, i] = -1.0
        r = bab.relu_bab(graph, gb, Clause(C, np.zeros(1)), Deadline(5.0), batch=2, iters=2, attack=False, max_open=4)
        assert r.counterexample is None
        if r.proven:
            assert emax[i] <= 1e-9 * abs(b.upper[2][i])
            continue
        bound = -r.worst_open  # (a few iterations from the initial slopes: it may be looser than CROWN's box, which refine keeps then)
        assert bound >= emax[i] - 1e-9 * abs(emax[i]), (i, emax[i], bound)
        checked += 1
    assert checked >= 2


def test_refine_applies_to_deep_enough_narrow_enough_chains_only(monkeypatch: pytest.MonkeyPatch) -> None:
    net, lo, hi = _case(0)
    b = compute_bounds(net, lo, hi, "crown")
    assert refine_applies(net, b)
    shallow = random_net(np.random.default_rng(0), [3, 10, 2])
    assert not refine_applies(shallow, compute_bounds(shallow, lo, hi, "crown"))  # one hidden layer: its bounds are exact
    monkeypatch.setattr(refine, "REFINE_MAX_WIDTH", 7)
    assert not refine_applies(net, b)  # 8 wide


def test_the_refine_route_reaches_the_milps_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """With bab's first slice at zero time every bab-route property goes through the
    refinement (its stage is in the result), and the verdicts are the MILP's."""
    rng = np.random.default_rng(11)
    net = random_net(rng, [6, 24, 24, 24, 4], bias_scale=0.1)  # three hidden layers: two to search
    props = []
    for _ in range(4):
        x = rng.uniform(0.3, 0.7, size=6)
        props.append(robustness_property(x, int(np.argmax(net.forward(x))), 0.25, 4))
    monkeypatch.setattr(chain, "REFINE_AFTER", 0.0)
    via = [check_property(net, p, 8.0, bounds="crown", samples=0, input_split=False) for p in props]
    monkeypatch.setattr(bab, "MILP_MAX_UNSTABLE", 10 ** 9)
    milp = [check_property(net, p, 60.0, bounds="crown", samples=0, input_split=False) for p in props]
    refined = 0
    for a, m in zip(via, milp):
        assert a.status in (PropertyStatus.SAT, PropertyStatus.UNSAT) and m.status in (PropertyStatus.SAT, PropertyStatus.UNSAT), (a.message, m.message)
        assert a.status == m.status, (a.message, m.message)
        refined += "refine" in a.stages
    assert refined == 4 and {a.status for a in via} == {PropertyStatus.SAT, PropertyStatus.UNSAT}, [(a.unstable_relus, a.message) for a in via]
