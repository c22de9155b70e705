"""Input-domain branch and bound (``verifiers/decide/input_split.py``): verdicts against the brute force
of test_exactness on 2-D nets, counterexamples inside the box and violating, the batched bounds
sound and equal to bounds/chain.py's, and the boxes always covering the input box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_mr.verifiers.decide import input_split as isp
from robustbench_mr.verifiers.bounds.chain import crown_bounds, interval_bounds, spec_lower_bounds
from robustbench_mr.verifiers.spec.property import Clause, Property, robustness_property
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from tests.verifiers.decide.test_exactness import _brute_clause_slack, brute_force_max, clause_property_truth, random_clause_property, random_net, random_robustness_property


def _check_sat(net, prop, x):
    assert x is not None
    assert prop.contains_input(x, tol=0.0), (x, prop.lower, prop.upper)
    assert prop.is_violated_by(net.forward(x))


@pytest.mark.parametrize("method, alpha_from_start", [("crown", False), ("crown", True), ("interval", False)])
def test_robustness_verdicts_match_brute_force(method, alpha_from_start, monkeypatch):
    if alpha_from_start:  # tiny nets close within the first second: force the alpha pass on
        monkeypatch.setattr(isp, "SPEC_ALPHA_AFTER", 0.0)
    rng = np.random.default_rng(3)
    decided = {"sat": 0, "unsat": 0}
    for _ in range(3):
        net = random_net(rng, [2, 8, 8, 3])
        for _ in range(5):
            prop, rows = random_robustness_property(rng, net)
            truth = brute_force_max(net, prop.lower, prop.upper, rows)
            if abs(truth) < 1e-6:
                continue  # a tie within round-off: either verdict is defensible
            r = isp.split_and_bound(net, prop, 20.0, method=method, milp_fallback=False)
            assert r.status == ("sat" if truth > 0 else "unsat"), (truth, r)
            decided[r.status] += 1
            if r.status == "sat":
                _check_sat(net, prop, r.counterexample)
                np.testing.assert_array_equal(r.output, net.forward(r.counterexample))
    assert decided["sat"] >= 3 and decided["unsat"] >= 3, decided


def test_alpha_spec_bounds_are_sound_and_never_looser_than_crown():
    """The alpha pass on the spec rows (boxes CROWN leaves open): every bound at least CROWN's,
    never above the true minimum over samples of the box, and tighter somewhere."""
    isp._load_torch()
    rng = np.random.default_rng(6)
    net = random_net(rng, [3, 16, 16, 12, 4])
    C = rng.normal(size=(3, 4))
    prop = Property(-np.ones(3), np.ones(3), (Clause(C, np.full(3, 1e9)),))  # nothing closes: every box gets the pass
    bb = isp._BatchedBounds(net, prop, "crown")
    lo = rng.uniform(-1, 0.4, size=(30, 3))
    hi = np.minimum(lo + rng.uniform(0.2, 0.6, size=(30, 3)), 1.0)
    with torch.no_grad():
        crown, _, _ = bb.spec_bounds(torch.from_numpy(lo), torch.from_numpy(hi))
        alpha, _, _ = bb.spec_bounds(torch.from_numpy(lo), torch.from_numpy(hi), alpha_iters=20)
    assert torch.all(alpha >= crown)
    assert bool((alpha > crown + 1e-6).any()), "alpha never tightened a bound: the pass did not run"
    for i in range(lo.shape[0]):
        x = np.concatenate([rng.uniform(lo[i], hi[i], size=(2000, 3)), np.stack(np.meshgrid(*zip(lo[i], hi[i]))).reshape(3, -1).T])
        assert np.all(net.forward(x) @ C.T >= alpha[i].numpy()), i


@pytest.mark.parametrize("alpha_from_start", [False, True])
def test_general_clauses_through_check_property(alpha_from_start, monkeypatch):
    """Several clauses of several rows on a wide box; the verdict of check_property's input
    split path (no sampling) matches the brute force, and the MILP path agrees."""
    if alpha_from_start:
        monkeypatch.setattr(isp, "SPEC_ALPHA_AFTER", 0.0)
    rng = np.random.default_rng(11)
    checked = {"sat": 0, "unsat": 0}
    for _ in range(8):
        net, prop = random_clause_property(rng)
        truth = clause_property_truth(net, prop)
        if abs(truth) < 1e-6:
            continue
        expected = PropertyStatus.SAT if truth > 0 else PropertyStatus.UNSAT
        r = check_property(net, prop, timeout=20, samples=0)
        assert r.status is expected, (truth, r)
        checked[r.status.value] += 1
        if r.status is PropertyStatus.SAT:
            _check_sat(net, prop, r.counterexample)
        if r.bound_method.endswith("input-split"):
            assert check_property(net, prop, timeout=20, samples=0, input_split=False).status is expected
    assert checked["sat"] >= 1 and checked["unsat"] >= 1, checked


def test_batched_bounds_are_sound_and_match_bounds_py():
    isp._load_torch()
    rng = np.random.default_rng(5)
    net = random_net(rng, [3, 12, 12, 10, 4])
    C = rng.normal(size=(3, 4))
    prop = Property(-np.ones(3), np.ones(3), (Clause(C, np.zeros(3)),))
    for method in ("crown", "interval"):
        bb = isp._BatchedBounds(net, prop, method)
        lo = rng.uniform(-1, 0.8, size=(40, 3))
        hi = np.minimum(lo + rng.uniform(0, 0.6, size=(40, 3)), 1.0)
        hi[0] = lo[0]  # a degenerate (point) box
        with torch.no_grad():
            spec, A, (hl, hu) = bb.spec_bounds(torch.from_numpy(lo), torch.from_numpy(hi))
        for i in range(lo.shape[0]):
            b = crown_bounds(net, lo[i], hi[i]) if method == "crown" else interval_bounds(net, lo[i], hi[i])
            ref = spec_lower_bounds(net, b, lo[i], hi[i], C) if method == "crown" else \
                np.maximum(C, 0) @ b.lower[-1] + np.minimum(C, 0) @ b.upper[-1]
            if method == "interval":  # the same arithmetic
                np.testing.assert_allclose(spec[i].numpy(), ref, rtol=1e-7, atol=1e-7)  # ours is widened once more
                np.testing.assert_allclose(hl[i].numpy(), np.concatenate(b.lower[:-1]), rtol=1e-9, atol=1e-9)
                np.testing.assert_allclose(hu[i].numpy(), np.concatenate(b.upper[:-1]), rtol=1e-9, atol=1e-9)
            else:
                # bounds/chain.py back-substitutes the neurons plain interval arithmetic leaves
                # unstable; we start each layer's intervals from the previous layer's CROWN
                # bounds: every neuron it proves stable is stable here too, and on the unstable
                # ones (the only bounds a relaxation uses) ours are at least as tight
                L, U = np.concatenate(b.lower[:-1]), np.concatenate(b.upper[:-1])
                ml, mu = hl[i].numpy(), hu[i].numpy()
                theirs_stable = (L >= 0) | (U <= 0)
                assert np.all(((ml >= 0) | (mu <= 0))[theirs_stable])
                unstable = (ml < 0) & (mu > 0)
                assert np.all(ml[unstable] >= L[unstable] - 1e-7) and np.all(mu[unstable] <= U[unstable] + 1e-7)
                assert np.all(spec[i].numpy() >= ref - 1e-7)
            # sound on samples of the box: pre-activations and spec values inside the bounds
            x = rng.uniform(lo[i], hi[i], size=(300, 3))
            z, pre = x, []
            for k, layer in enumerate(net.affines):
                z = z @ layer.weight.T + layer.bias
                pre.append(z)
                z = np.maximum(z, 0)
            hidden = np.concatenate(pre[:-1], 1)
            assert np.all(hidden >= hl[i].numpy()) and np.all(hidden <= hu[i].numpy())
            assert np.all(pre[-1] @ C.T >= spec[i].numpy())
        if method == "crown":
            assert A.shape == (40, 3, 3)


def test_bisect_halves_cover_the_parent_exactly():
    isp._load_torch()
    rng = np.random.default_rng(2)
    lo = torch.from_numpy(rng.uniform(-1, 0, size=(50, 4)))
    hi = lo + torch.from_numpy(rng.uniform(0, 1, size=(50, 4)))
    z = torch.zeros(50, 3, dtype=torch.float64)
    f = isp._Frontier(lo, hi, torch.zeros(50, dtype=torch.float64), z, z)
    dim = torch.from_numpy(rng.integers(0, 4, size=50))
    left, right = f.bisect(dim)
    for i in range(50):
        d = int(dim[i])
        others = [j for j in range(4) if j != d]
        assert left.lo[i].equal(lo[i]) and right.hi[i].equal(hi[i])
        assert left.hi[i, others].equal(hi[i, others]) and right.lo[i, others].equal(lo[i, others])
        assert left.hi[i, d] == right.lo[i, d] and lo[i, d] < left.hi[i, d] < hi[i, d]


def test_proven_and_open_boxes_cover_the_input_box():
    """Stopped half way, the boxes proven so far and the boxes still open partition the box."""
    rng = np.random.default_rng(4)
    net = random_net(rng, [2, 16, 16, 3])
    prop = Property(np.array([-1.0, -0.5]), np.array([1.0, 0.5]), (Clause(np.array([[1.0, -1.0, 0.0]]), np.array([-2.5])),))
    proven: list = []
    r = isp.split_and_bound(net, prop, 20.0, milp_fallback=False, max_boxes=60, proven_log=proven)
    boxes = proven + r.open_boxes
    assert r.status in ("timeout", "unsat", "sat")
    if r.status == "sat":
        _check_sat(net, prop, r.counterexample)
        pytest.skip("found a counterexample before the box limit")
    assert len(proven) > 0
    if r.status == "timeout":
        assert len(r.open_boxes) > 0
    vol = sum(float(np.prod(h - l)) for l, h in boxes)
    assert vol == pytest.approx(float(np.prod(prop.upper - prop.lower)), rel=1e-12)
    for l, h in boxes:
        assert np.all(l >= prop.lower) and np.all(h <= prop.upper) and np.all(l <= h)
    pts = rng.uniform(prop.lower, prop.upper, size=(2000, 2))
    L = np.array([b[0] for b in boxes])
    U = np.array([b[1] for b in boxes])
    inside = np.all((pts[:, None, :] >= L[None]) & (pts[:, None, :] <= U[None]), axis=2)
    assert inside.any(1).all()
    # the proven boxes really are safe: no sample in them reaches the clause
    for l, h in proven:
        x = rng.uniform(l, h, size=(50, 2))
        assert not any(prop.is_violated_by(y) for y in net.forward(x))


def test_milp_fallback_decides_what_is_left():
    """With the hand-off forced (every round past the budget fraction), the MILP on the
    remaining sub-boxes still gives the brute-force verdict."""
    rng = np.random.default_rng(8)
    seen = set()
    for _ in range(6):
        net = random_net(rng, [2, 10, 6, 4])
        lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
        clause = Clause(rng.normal(size=(2, 4)), rng.normal(size=2) - 1.0)
        prop = Property(lo, hi, (clause,))
        truth = _brute_clause_slack(net, lo, hi, clause)
        if abs(truth) < 1e-6:
            continue
        old = isp.MILP_HANDOFF_FRACTION, isp.MILP_FALLBACK_MAX_BOXES
        try:
            isp.MILP_HANDOFF_FRACTION, isp.MILP_FALLBACK_MAX_BOXES = 0.0, 4
            r = isp.split_and_bound(net, prop, 20.0)
        finally:
            isp.MILP_HANDOFF_FRACTION, isp.MILP_FALLBACK_MAX_BOXES = old
        assert r.status == ("sat" if truth > 0 else "unsat"), (truth, r)
        if r.status == "sat":
            _check_sat(net, prop, r.counterexample)
        seen.add((r.status, r.milp_solves > 0))
    assert any(m for _, m in seen), seen


def test_no_time_gives_timeout_never_a_verdict():
    rng = np.random.default_rng(9)
    net = random_net(rng, [2, 12, 12, 3])
    prop = robustness_property(np.array([0.5, 0.5]), int(np.argmax(net.forward(np.array([0.5, 0.5])))), 0.5, 3)
    r = isp.split_and_bound(net, prop, 20.0, max_boxes=0)
    assert r.status in ("timeout", "sat")  # the root attack may still find a counterexample
    if r.status == "sat":
        _check_sat(net, prop, r.counterexample)


def test_acasxu_instances_decided_by_input_split(shared_dir):
    """ACAS Xu instances the plain MILP timed out on at 5 s: now answered, never wrongly."""
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.decide.instance import check_instance

    folder = shared_dir / "data" / "vnncomp" / "acasxu"
    cases = [("onnx/ACASXU_run2a_1_2_batch_2000.onnx", "vnnlib/prop_1.vnnlib", "unsat"),
             ("onnx/ACASXU_run2a_1_6_batch_2000.onnx", "vnnlib/prop_2.vnnlib", "sat"),
             ("onnx/ACASXU_run2a_2_2_batch_2000.onnx", "vnnlib/prop_3.vnnlib", "unsat")]
    if not (folder / cases[0][0]).is_file():
        pytest.skip("acasxu not in shared data")
    for onnx, vnnlib, expected in cases:
        r = check_instance(folder / onnx, folder / vnnlib, 30.0)
        assert r.status.value in (expected, "timeout"), (onnx, vnnlib, r.status, r.message)
        assert r.status.value == expected, f"{onnx} {vnnlib}: {r.message}"


def test_check_property_splits_only_few_inputs():
    rng = np.random.default_rng(12)
    small = random_net(rng, [isp.INPUT_SPLIT_MAX_INPUTS, 8, 3])
    big = random_net(rng, [isp.INPUT_SPLIT_MAX_INPUTS + 1, 8, 3])
    for net, splits in ((small, True), (big, False)):
        n = net.num_inputs
        x = np.full(n, 0.5)
        label = int(np.argmax(net.forward(x)))
        r = check_property(net, robustness_property(x, label, 0.2, 3), timeout=20, samples=0, bounds="crown")
        assert r.status in (PropertyStatus.SAT, PropertyStatus.UNSAT)
        if r.message.startswith("proven by"):
            continue  # decided by the whole-box bounds before either path
        assert r.bound_method.endswith("+input-split") is splits, (n, r.bound_method, r.message)
