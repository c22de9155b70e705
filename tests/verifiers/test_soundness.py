"""The standing soundness suite: verdicts against an independent oracle, and metamorphic changes
that must never flip a verdict (``unknown`` / ``timeout`` allowed, the opposite answer never).

Cases and changes are in ``soundness_cases.py``; ``bench/soundness.py`` runs the same generators
over hundreds of seeds. The three input classes on which the first version answered a wrong
``unsat`` each have a pinned test here: ONNX graphs with dead or side nodes, function-preserving
rescaling (down to 1e-12), and MatMul with a 3-D constant.
"""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_mr.verifiers.bounds.methods import BOUND_METHODS
from robustbench_mr.verifiers.milp.solvers import SOLVERS
from robustbench_mr.verifiers.milp.pulp_solver import _available_class
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from tests.verifiers.soundness_cases import ONNX_EXTRAS, Case, abs_case, permute, random_case, rescale, split_neuron, write_onnx, write_vnnlib

AVAILABLE_SOLVERS = [s for s in SOLVERS if s == "highs" or _available_class(s) is not None]
SCALES = (1e6, 1e-6, 1e-9, 1e-12)
OPPOSITE = {"sat": PropertyStatus.UNSAT, "unsat": PropertyStatus.SAT}

_CASES: dict[tuple, Case] = {}


def cases(inputs: int, free: int, seeds: range) -> list[Case]:
    out = []
    for seed in seeds:
        key = (seed, inputs, free)
        if key not in _CASES:  # the truth (region enumeration) is computed once per case
            _CASES[key] = random_case(seed, inputs=inputs, free=free)
        if _CASES[key].expected is not None:
            out.append(_CASES[key])
    return out


def _check(case: Case, net, status: PropertyStatus, what: str) -> None:
    assert status is not OPPOSITE[case.expected], f"{case.name} {what}: answered {status.value}, truth {case.expected} (slack {case.truth:.3g})"


def _decide(net, prop, **kw):
    r = check_property(net, prop, timeout=20, samples=0, **kw)
    if r.status is PropertyStatus.SAT:  # every sat carries a counterexample that the float64 forward pass confirms
        assert prop.contains_input(r.counterexample) and prop.is_violated_by(net.forward(r.counterexample))
    return r


# ------------------------------------------------------------------------------------------
# class 2: function-preserving rescaling


@pytest.mark.parametrize("solver", AVAILABLE_SOLVERS)
@pytest.mark.parametrize("s", [1.0, *SCALES])
def test_minimal_abs_case_is_sat_at_every_scale(s: float, solver: str) -> None:
    """|x0| through relu(s x0) + relu(-s x0) scaled back by 1/s: sat at x0 = +-1 (CBC said unsat at 1e-9)."""
    case = abs_case(s)
    for bounds in BOUND_METHODS:
        r = _decide(case.net, case.prop, bounds=bounds, solver=solver)
        assert r.status is PropertyStatus.SAT, (s, bounds, solver, r)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("inputs, free", [(20, 20), (20, 4), (3, 3)])
def test_rescaling_never_flips_a_verdict(inputs: int, free: int, s: float, layer: int) -> None:
    """Every bound method with HiGHS, and CBC with two of them, on the rescaled net; the MILP path
    (20 inputs) and the input-split path (3 inputs)."""
    decided = total = 0
    for case in cases(inputs, free, range(4)):
        net = rescale(case.net, layer, s)
        settings = [(b, "highs") for b in BOUND_METHODS] + [(b, "cbc") for b in ("interval", "lp") if "cbc" in AVAILABLE_SOLVERS]
        for bounds, solver in settings:
            r = _decide(net, case.prop, bounds=bounds, solver=solver)
            _check(case, net, r.status, f"rescaled layer {layer} by {s:g}, {bounds}/{solver}")
            total += 1
            decided += r.status.value == case.expected
    assert total and decided >= total // 2, (decided, total)  # mostly decided, not only "unknown"


# ------------------------------------------------------------------------------------------
# permutations and neuron splits


@pytest.mark.parametrize("inputs, free", [(20, 20), (3, 3)])
def test_permutation_and_neuron_split_keep_the_verdict(inputs: int, free: int) -> None:
    rng = np.random.default_rng(5)
    for case in cases(inputs, free, range(4)):
        base = _decide(case.net, case.prop).status
        _check(case, case.net, base, "original")
        for k in range(len(case.net.affines) - 1):
            width = case.net.affines[k].out_features
            variants = {"permuted": permute(case.net, k, rng.permutation(width)), "split": split_neuron(case.net, k, int(rng.integers(width)))}
            for what, net in variants.items():
                np.testing.assert_allclose(net.forward(case.prop.lower), case.net.forward(case.prop.lower), rtol=1e-9, atol=1e-12)
                r = _decide(net, case.prop)
                _check(case, net, r.status, f"{what} layer {k}")
                if base.value == case.expected:
                    assert r.status is base, (case.name, what, k, r)


# ------------------------------------------------------------------------------------------
# cross-solver / cross-bounds: where two settings both decide, they agree (and with the truth)


@pytest.mark.parametrize("inputs, free", [(20, 20), (20, 4)])
def test_settings_agree_where_they_decide(inputs: int, free: int) -> None:
    for case in cases(inputs, free, range(6)):
        answers = {}
        for bounds in BOUND_METHODS:
            for solver in AVAILABLE_SOLVERS:
                r = _decide(case.net, case.prop, bounds=bounds, solver=solver, input_split=False)
                if r.status in (PropertyStatus.SAT, PropertyStatus.UNSAT):
                    answers[bounds, solver] = r.status.value
        assert set(answers.values()) <= {case.expected}, (case.name, case.expected, answers)
        assert answers, case.name


# ------------------------------------------------------------------------------------------
# class 1: ONNX graphs with dead nodes, side branches, identity ops


@pytest.mark.parametrize("extra", ONNX_EXTRAS)
def test_dead_and_redundant_onnx_nodes_keep_the_function_and_verdict(tmp_path, extra: str) -> None:
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx, onnxruntime_forward
    from robustbench_mr.verifiers.decide.instance import check_instance

    rng = np.random.default_rng(3)
    for case in cases(20, 20, range(4)) + cases(3, 3, range(2)):
        plain = load_onnx(write_onnx(case.net, tmp_path / f"{case.name}.onnx"))
        path = write_onnx(case.net, tmp_path / f"{case.name}-{extra}.onnx", extras=(extra,))
        net = load_onnx(path)
        x = rng.uniform(case.prop.lower, case.prop.upper, size=(16, case.prop.lower.size))
        np.testing.assert_allclose(net.forward(x), onnxruntime_forward(path, x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(net.forward(x), plain.forward(x), rtol=1e-9, atol=1e-9)
        vnnlib = write_vnnlib(case.prop, case.net.num_outputs, tmp_path / f"{case.name}.vnnlib")
        r = check_instance(path, vnnlib, timeout=20, falsify_samples=0)
        assert r.status.value != OPPOSITE[case.expected].value, (case.name, extra, r)
        if r.status.value == "sat":  # confirmed by onnxruntime on the file itself
            assert case.prop.is_violated_by(onnxruntime_forward(path, r.counterexample))


@pytest.mark.parametrize("solver", AVAILABLE_SOLVERS)
def test_rescaled_float32_onnx_never_flips_a_verdict(tmp_path, solver: str) -> None:
    """The rescaled net (1e-12 on the first hidden layer) as a float32 ONNX file, decided through
    VNN-LIB (import, bounds, MILP, onnxruntime confirmation); cases far from a tie only, since
    float32 rounding of the weights moves the truth a little."""
    pytest.importorskip("onnxruntime")
    from robustbench_mr.verifiers.decide.instance import check_instance

    run = 0
    for case in cases(20, 20, range(4)):
        if abs(case.truth) < 1e-3:
            continue
        run += 1
        path = write_onnx(rescale(case.net, 0, 1e-12), tmp_path / f"{case.name}-f32.onnx")
        vnnlib = write_vnnlib(case.prop, case.net.num_outputs, tmp_path / f"{case.name}.vnnlib")
        r = check_instance(path, vnnlib, timeout=20, falsify_samples=0, solver=solver)
        assert r.status.value != OPPOSITE[case.expected].value, (case.name, solver, r)
    assert run >= 2


def _graph(tmp_path, nodes, inits, n_in: int, n_out: int, name: str):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
                          initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("where", ["between", "after_output"])
def test_identity_net_with_a_dead_relu_is_sat(tmp_path, where: str) -> None:
    """Gemm(x, I) -> h; Relu(h) -> unused; Gemm(h, I) -> y is y = x: Y_0 <= -0.5 is sat at x = (-1, -1)
    (the first version imported relu(x) and answered unsat)."""
    pytest.importorskip("onnx")
    from onnx import helper

    from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx
    from robustbench_mr.verifiers.spec.property import Clause, Property

    nodes = [helper.make_node("Gemm", ["x", "I"], ["h"]), helper.make_node("Gemm", ["h", "I"], ["y"])]
    dead = helper.make_node("Relu", ["h"], ["unused"])
    nodes.insert(1 if where == "between" else 2, dead)
    net = load_onnx(_graph(tmp_path, nodes, {"I": np.eye(2)}, 2, 2, f"dead-{where}"))
    np.testing.assert_allclose(net.forward(np.array([-1.0, -0.3])), [-1.0, -0.3], rtol=1e-6)
    prop = Property(-np.ones(2), np.ones(2), (Clause(np.array([[1.0, 0.0]]), np.array([-0.5])),))
    assert check_property(net, prop, 10, samples=0).status is PropertyStatus.SAT


def test_a_branch_that_reaches_the_output_is_refused_naming_the_node(tmp_path) -> None:
    """Relu(Gemm(x)) and Gemm(x) both feed the output: a skip connection, refused (never imported
    as a chain)."""
    pytest.importorskip("onnx")
    from onnx import helper

    from robustbench_mr.errors import UnsupportedLayerError
    from robustbench_mr.verifiers.form.chain_from_onnx import load_onnx

    nodes = [helper.make_node("Gemm", ["x", "I"], ["h"]), helper.make_node("Relu", ["h"], ["r"], name="the_relu"),
             helper.make_node("Gemm", ["h", "I"], ["g"], name="late_gemm"), helper.make_node("Gemm", ["r", "I"], ["g2"]),
             helper.make_node("Add", ["g", "g2"], ["y"], name="merge")]
    with pytest.raises(UnsupportedLayerError, match="late_gemm|merge"):
        load_onnx(_graph(tmp_path, nodes, {"I": np.eye(2)}, 2, 2, "branch"))
    # two Relu branches of one layer whose outputs are concatenated by a Sum-like Add
    nodes = [helper.make_node("Gemm", ["x", "I"], ["h"]), helper.make_node("Relu", ["h"], ["r1"]), helper.make_node("Neg", ["h"], ["nh"], name="neg_after_relu"),
             helper.make_node("Relu", ["nh"], ["r2"]), helper.make_node("Add", ["r1", "r2"], ["y"])]
    with pytest.raises(UnsupportedLayerError, match="neg_after_relu"):
        load_onnx(_graph(tmp_path, nodes, {"I": np.eye(2)}, 2, 2, "two-relus"))


# ------------------------------------------------------------------------------------------
# the two completeness defects found on the way


def test_interval_bounds_read_a_presolve_solved_milp() -> None:
    """With --bounds interval, HiGHS can solve the MILP in presolve and leave its dual bound at
    0.0; the verdict must come from the model status (unsat), not a 'gap straddling 0'."""
    case = abs_case(1.0, threshold=1.5)  # max |x0| = 1 < 1.5: unsat, but interval bounds allow 2
    r = check_property(case.net, case.prop, 10, bounds="interval", samples=0)
    assert r.status is PropertyStatus.UNSAT, r


def test_input_split_hands_many_stuck_boxes_to_one_milp() -> None:
    """One isolated unsafe point inside a 2-D box: boxes around it can never be proven and end
    too small to split; the search must hand one MILP the whole box, not one MILP per box."""
    from robustbench_mr.verifiers.decide.input_split import MILP_FALLBACK_MAX_BOXES, split_and_bound
    from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
    from robustbench_mr.verifiers.spec.property import Clause, Property

    p = np.array([0.3137, -0.2071])
    # y = -(|x0 - p0| + |x1 - p1|) >= 0 only at x = p
    W1 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    b1 = np.array([-p[0], p[0], -p[1], p[1]])
    net = Network((2,), (Affine(W1, b1), ReLU(), Affine(-np.ones((1, 4)), np.zeros(1))))
    prop = Property(-np.ones(2), np.ones(2), (Clause(np.array([[-1.0]]), np.array([0.0])),))
    s = split_and_bound(net, prop, 20.0)
    assert s.status in ("sat", "timeout", "unknown"), s  # the only unsafe point is a tie in float64
    if s.status == "sat":
        assert prop.is_violated_by(net.forward(s.counterexample))
    if "left to the MILP" in s.message:  # the first version handed ~600k boxes to the MILP here
        assert len(s.open_boxes) <= MILP_FALLBACK_MAX_BOXES, s.message
