"""Seeded generators for the soundness suite (tests/verifiers/test_soundness.py) and its longer
fuzz (bench/soundness.py): small nets and properties with a ground truth from an independent
oracle, and metamorphic changes that must not change a verdict.

Ground truth: ``truth_slack`` = max over the box of the best clause's slack, by exact
linear-region enumeration (``test_exactness.brute_force_max``: scipy linprog per region, no
code shared with the verifier). > 0: sat, < 0: unsat; within ``TIE`` of 0 (relative to the
output scale) the case is dropped as a tie.

Metamorphic changes (each preserves the function up to float round-off):
* ``rescale(net, k, s)``: hidden layer k's weights and bias times s, layer k+1's weights / s
  (ReLU is positively homogeneous);
* ``permute(net, k, perm)``: hidden neurons of layer k reordered;
* ``split_neuron(net, k, j)``: neuron j of layer k replaced by two halves, relu(z/2) + relu(z/2);
* ONNX graphs of the same net with dead nodes, unused side branches, identity Gemms and
  Identity nodes (``write_onnx(..., extras=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU
from robustbench_mr.verifiers.spec.property import Clause, Property
from tests.verifiers.decide.test_exactness import brute_force_max, random_net

TIE = 1e-6  # relative to the output scale: closer to 0 than this, either verdict is defensible
ONNX_EXTRAS = ("dead_relu", "dead_after_output", "side_branch", "identity_gemm", "identity_nodes")


@dataclass(frozen=True, eq=False)
class Case:
    name: str
    net: Network
    prop: Property
    truth: float  # max clause slack over the box (> 0 sat); nan if a tie

    @property
    def expected(self) -> str | None:
        return None if np.isnan(self.truth) else ("sat" if self.truth > 0 else "unsat")


def _hidden_affines(net: Network) -> list[Affine]:
    return net.affines


def _rebuild(net: Network, affines: list[Affine]) -> Network:
    layers: list = []
    for a in affines:
        layers += [a, ReLU()]
    return Network(net.input_shape, tuple(layers[:-1]), net.source)


def rescale(net: Network, k: int, s: float) -> Network:
    """Hidden layer k times s, the next layer's weights times 1/s (the same function)."""
    aff = list(net.affines)
    if not 0 <= k < len(aff) - 1:
        raise ValueError(f"layer {k} is not a hidden layer")
    aff[k] = Affine(aff[k].weight * s, aff[k].bias * s)
    aff[k + 1] = Affine(aff[k + 1].weight / s, aff[k + 1].bias)
    return _rebuild(net, aff)


def permute(net: Network, k: int, perm: np.ndarray) -> Network:
    aff = list(net.affines)
    aff[k] = Affine(aff[k].weight[perm], aff[k].bias[perm])
    aff[k + 1] = Affine(aff[k + 1].weight[:, perm], aff[k + 1].bias)
    return _rebuild(net, aff)


def split_neuron(net: Network, k: int, j: int) -> Network:
    """Neuron j of hidden layer k becomes two neurons with half its weights and bias each."""
    aff = list(net.affines)
    W, b = aff[k].weight.copy(), aff[k].bias.copy()
    W[j] /= 2.0
    b[j] /= 2.0
    aff[k] = Affine(np.vstack([W, W[j:j + 1]]), np.append(b, b[j]))
    V = aff[k + 1].weight
    aff[k + 1] = Affine(np.hstack([V, V[:, j:j + 1]]), aff[k + 1].bias)
    return _rebuild(net, aff)


def truth_slack(net: Network, prop: Property) -> float:
    """max over clauses of max_x min_r (d_r - C_r y(x)); single-row clauses only (the brute
    force maximizes one linear objective per region)."""
    best = -np.inf
    for c in prop.clauses:
        if c.C.shape[0] != 1:
            raise ValueError("truth_slack handles single-row clauses")
        best = max(best, float(brute_force_max(net, prop.lower, prop.upper, -c.C)) + float(c.d[0]))
    return best


def _output_scale(net: Network, prop: Property, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    pts = rng.uniform(prop.lower, prop.upper, size=(512, prop.lower.size))
    ys = net.forward(pts)
    return ys, float(np.abs(ys).max() + 1e-30)


def random_case(seed: int, inputs: int = 20, free: int | None = None, widths: tuple[int, ...] = (5, 4), outputs: int = 2) -> Case:
    """A seeded net and a property ``Y_j >= q`` (or ``<= q``) on a box where ``free`` inputs
    range over [-1, 1] and the others are fixed; q near the sampled extreme so that both
    answers occur and the MILP (not sampling) must find them."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [inputs, *widths, outputs])
    free = inputs if free is None else free
    x0 = rng.uniform(-0.5, 0.5, size=inputs)
    lo, hi = x0.copy(), x0.copy()
    idx = rng.choice(inputs, size=free, replace=False)
    lo[idx], hi[idx] = -1.0, 1.0
    j = int(rng.integers(outputs))
    sign = float(rng.choice([-1.0, 1.0]))  # unsafe: sign * Y_j >= q  <=>  -sign * Y_j <= -q
    probe = Property(lo, hi, (Clause(np.zeros((1, outputs)), np.zeros(1)),))
    ys, scale = _output_scale(net, probe, rng)
    extreme = float(np.max(sign * ys[:, j]))
    q = extreme + float(rng.uniform(-0.05, 0.25)) * scale
    C = np.zeros((1, outputs))
    C[0, j] = -sign
    prop = Property(lo, hi, (Clause(C, np.array([-q])),), name=f"seed{seed}")
    truth = truth_slack(net, prop)
    if abs(truth) < TIE * scale:
        truth = float("nan")
    return Case(f"seed{seed}-in{inputs}", net, prop, truth)


def abs_case(s: float, inputs: int = 17, threshold: float = 0.99999) -> Case:
    """The issue's minimal case: y = (1/s)(relu(s x0) + relu(-s x0)) = |x0| with only x0 free in
    [-1, 1]; unsafe ``Y_0 >= threshold``: sat (at x0 = +-1) for threshold < 1."""
    W1 = np.zeros((2, inputs))
    W1[0, 0], W1[1, 0] = s, -s
    net = Network((inputs,), (Affine(W1, np.zeros(2)), ReLU(), Affine(np.array([[1.0 / s, 1.0 / s]]), np.zeros(1))))
    lo, hi = np.zeros(inputs), np.zeros(inputs)
    lo[0], hi[0] = -1.0, 1.0
    prop = Property(lo, hi, (Clause(np.array([[-1.0]]), np.array([-threshold])),))
    return Case(f"abs-s{s:g}", net, prop, 1.0 - threshold)


# --------------------------------------------------------------------------------------
# ONNX and VNN-LIB files of a Network (with optional dead and redundant nodes)


def write_onnx(net: Network, path: Path, extras: tuple[str, ...] = (), dtype: type = np.float32) -> Path:
    """``net`` as Gemm/Relu nodes; ``extras`` adds nodes that must not change the function:
    dead_relu (a Relu on a hidden pre-activation that nothing reads), dead_after_output (a Relu
    on the output, placed after it), side_branch (Relu(Gemm(x)) that nothing reads, built
    between the layers), identity_gemm (an identity Gemm after the first hidden layer),
    identity_nodes (Identity nodes along the chain)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    cur = "x"
    aff = net.affines
    for k, a in enumerate(aff):
        if "identity_nodes" in extras:
            nodes.append(helper.make_node("Identity", [cur], [f"id{k}"]))
            cur = f"id{k}"
        w, b = init(f"W{k}", a.weight), init(f"b{k}", a.bias)
        out = "y" if k == len(aff) - 1 else f"z{k}"
        nodes.append(helper.make_node("Gemm", [cur, w, b], [out], transB=1))
        if k == len(aff) - 1:
            break
        if "dead_relu" in extras and k == 0:
            nodes.append(helper.make_node("Relu", [out], ["dead0"]))
        nodes.append(helper.make_node("Relu", [out], [f"a{k}"]))
        cur = f"a{k}"
        if "side_branch" in extras and k == 0:
            ws = init("Wside", np.ones((3, net.num_inputs)))
            nodes.append(helper.make_node("Gemm", ["x", ws], ["side_z"], transB=1))
            nodes.append(helper.make_node("Relu", ["side_z"], ["side_a"]))
        if "identity_gemm" in extras and k == 0:
            n = a.out_features
            nodes.append(helper.make_node("Gemm", [cur, init("Ieye", np.eye(n)), init("Izero", np.zeros(n))], ["a0_id"], transB=1))
            cur = "a0_id"
    if "dead_after_output" in extras:
        nodes.append(helper.make_node("Relu", ["y"], ["dead_out"]))
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", elem, [1, net.num_inputs])],
                          [helper.make_tensor_value_info("y", elem, [1, net.num_outputs])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_vnnlib(prop: Property, num_outputs: int, path: Path) -> Path:
    """The property as VNN-LIB 1.0 (an input box, one disjunction of output conjunctions)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(prop.lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_outputs)]
    for i, (a, b) in enumerate(zip(prop.lower, prop.upper)):
        lines += [f"(assert (>= X_{i} {float(a)!r}))", f"(assert (<= X_{i} {float(b)!r}))"]

    def row(c: np.ndarray, d: float) -> str:
        terms = " ".join(f"(* {float(v)!r} Y_{j})" for j, v in enumerate(c) if v != 0)
        return f"(<= (+ {terms} 0.0) {float(d)!r})"

    terms = ["(and " + " ".join(row(c, d) for c, d in zip(cl.C, cl.d)) + ")" for cl in prop.clauses]
    lines.append("(assert (or " + " ".join(terms) + "))")
    path.write_text("\n".join(lines) + "\n")
    return path
