"""VNN-LIB parsing: Properties must describe exactly the set the formula describes.

The cross-check evaluates each formula directly (a small independent S-expression evaluator
written here) at many random points (x, y) and compares with "some Property contains x and
is violated by y".
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.spec.vnnlib import parse_vnnlib_text, read_vnnlib


def _sexps(text: str):
    text = re.sub(r";[^\n]*", "", text)
    toks = text.replace("(", " ( ").replace(")", " ) ").split()
    pos = 0

    def read():
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t == "(":
            out = []
            while toks[pos] != ")":
                out.append(read())
            pos += 1
            return out
        return t

    out = []
    while pos < len(toks):
        out.append(read())
    return out


def _holds(text: str, x: np.ndarray, y: np.ndarray) -> bool:
    """Direct semantics: all asserts true under X_i = x[i], Y_j = y[j]."""

    def val(e):
        if isinstance(e, list):
            op, args = e[0], [val(a) for a in e[1:]]
            if op == "+":
                return sum(args)
            if op == "-":
                return -args[0] if len(args) == 1 else args[0] - sum(args[1:])
            if op == "*":
                return args[0] * args[1]
            raise AssertionError(op)
        if e.startswith("X_"):
            return x[int(e[2:])]
        if e.startswith("Y_"):
            return y[int(e[2:])]
        return float(e)

    def truth(e):
        op = e[0]
        if op == "and":
            return all(truth(a) for a in e[1:])
        if op == "or":
            return any(truth(a) for a in e[1:])
        a, b = val(e[1]), val(e[2])
        return {"<=": a <= b, ">=": a >= b, "<": a <= b, ">": a >= b, "=": a == b}[op]

    return all(truth(s[1]) for s in _sexps(text) if s[0] == "assert")


def _in_unsafe_set(props, x, y) -> bool:
    return any(p.contains_input(x, tol=0.0) and p.is_violated_by(y) for p in props)


DECLS = "".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))

CASES = {
    "top_level_conjunction": DECLS + """
(assert (>= X_0 -1)) (assert (<= X_0 1))
(assert (>= X_1 0)) (assert (<= X_1 0.5))
(assert (>= X_2 -0.25)) (assert (<= X_2 0.75))
(assert (<= Y_0 Y_1))
(assert (>= Y_2 0.1))
""",
    "or_of_ands_outputs": DECLS + """
; comment line
(assert (<= X_0 1)) (assert (>= X_0 -1))
(assert (<= X_1 1)) (assert (>= X_1 -1))
(assert (<= X_2 1)) (assert (>= X_2 -1))
(assert (or
    (and (<= Y_0 Y_1) (<= Y_0 Y_2))
    (and (>= Y_1 0.3))
    (and (< (- Y_2 Y_1) (* 2 Y_0)))
))
""",
    "boxes_inside_the_disjunction": DECLS + """
(assert (or
    (and (>= X_0 -1) (<= X_0 0) (>= X_1 -1) (<= X_1 1) (>= X_2 0) (<= X_2 1) (>= Y_0 0.2))
    (and (>= X_0 0) (<= X_0 1) (>= X_1 -1) (<= X_1 1) (>= X_2 0) (<= X_2 1) (<= Y_1 Y_2))
    (and (>= X_0 -1) (<= X_0 0) (>= X_1 -1) (<= X_1 1) (>= X_2 0) (<= X_2 1) (<= (+ Y_0 Y_1) -0.5))
))
""",
    "two_disjunctions_multiply_out": DECLS + """
(assert (or
    (and (>= X_0 -1) (<= X_0 0) (>= X_1 -1) (<= X_1 1) (>= X_2 0) (<= X_2 1))
    (and (>= X_0 0.5) (<= X_0 1) (>= X_1 -1) (<= X_1 0) (>= X_2 -1) (<= X_2 1))
))
(assert (or (and (<= Y_1 Y_0)) (and (<= Y_2 Y_0) (>= Y_2 -0.1))))
(assert (<= -1 X_1))
""",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_properties_describe_the_formula(name):
    text = CASES[name]
    props = parse_vnnlib_text(text, f"{name}.vnnlib")
    rng = np.random.default_rng(1)
    agree = 0
    hits = 0
    for _ in range(3000):
        x = rng.choice([-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0], size=3) if rng.random() < 0.5 else rng.uniform(-1.2, 1.2, 3)
        y = rng.uniform(-1, 1, 3)
        direct = _holds(text, x, y)
        hits += direct
        agree += direct == _in_unsafe_set(props, x, y)
    assert agree == 3000
    assert 50 < hits < 2950  # both sides were exercised


def test_several_boxes_give_several_properties_and_same_box_merges():
    props = parse_vnnlib_text(CASES["boxes_inside_the_disjunction"], "b.vnnlib")
    assert len(props) == 2  # terms 1 and 3 share their box
    sizes = sorted(len(p.clauses) for p in props)
    assert sizes == [1, 2]


def test_declared_counts_must_match_the_network():
    with pytest.raises(UserError, match="declares 3 inputs X_i but the network has 4"):
        parse_vnnlib_text(CASES["top_level_conjunction"], "p.vnnlib", num_inputs=4, num_outputs=3)


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        ("(assert (<= X_0 1))\n(assert (>= X_0 0)\n", 4, "never closed"),
        ("(assert (<= X_0 1)))\n", 3, "unbalanced"),
        ("(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= X_7 1))\n", 5, "'X_7' is not a declared variable"),
        ("(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= Y_0 X_0))\n", 5, "mixes inputs"),
        ("(assert (>= X_0 0))\n\n(assert (foo Y_0 1))\n", 5, "unsupported operator 'foo'"),
        ("(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= (* X_0 Y_0) 1))\n", 5, "not linear"),
        ("(assert (>= X_0 0))\n(assert (<= (+ X_0 X_0 X_0) 1))\n(assert (<= (+ X_0 X_0) Y_0))\n", 5, "mixes"),
        ("(assert (>= X_0 0))\n(check-sat)\n", 4, "unexpected top-level form"),
        ("(assert (>= X_0 0))\n(assert (<= Y_0 1))\n", 1, "no upper bound"),
    ],
)
def test_malformed_files_name_the_line_and_column(tmp_path, body, line, fragment):
    text = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n" + body
    p = tmp_path / "bad.vnnlib"
    p.write_text(text)
    with pytest.raises(UserError) as err:
        read_vnnlib(p)
    msg = str(err.value)
    assert "\n" not in msg
    assert re.match(rf"{re.escape(str(p))}:{line}:\d+: ", msg), msg  # FILE:LINE:COL
    assert fragment in msg


def test_box_over_two_inputs_is_refused_with_its_line():
    text = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n\n(assert (<= (+ X_0 X_1) 1))\n"
    with pytest.raises(UserError, match=r"^p:5:\d+: .*not a box"):
        parse_vnnlib_text(text, "p")


def test_empty_box_terms_are_dropped():
    text = DECLS + "(assert (or (and (>= X_0 1) (<= X_0 0)) (and (>= X_0 0) (<= X_0 1))))\n" + "".join(
        f"(assert (>= X_{i} 0)) (assert (<= X_{i} 1))\n" for i in (1, 2)) + "(assert (<= Y_0 0))\n"
    props = parse_vnnlib_text(text, "p")
    assert len(props) == 1 and props[0].lower[0] == 0 and props[0].upper[0] == 1


def test_all_shared_vnnlib_files_parse(shared_dir):
    files = sorted((shared_dir / "data").glob("vnncomp/*/*.vnnlib")) + sorted((shared_dir / "data").glob("vnncomp/acasxu/vnnlib/*.vnnlib"))
    files += sorted((shared_dir / "data").glob("vnncomp/mnist_fc/vnnlib/*.vnnlib"))[:4]
    files += sorted((shared_dir / "data").glob("digits_reference/*.vnnlib"))[:4]
    if not files:
        pytest.skip("no shared vnnlib files")
    by_name = {}
    for f in files:
        props = read_vnnlib(f)
        assert props and all(np.all(p.lower <= p.upper) for p in props)
        by_name[f.name] = props
    if "prop_6.vnnlib" in by_name:  # ACAS Xu property 6: two input boxes, four output clauses each
        assert [len(p.clauses) for p in by_name["prop_6.vnnlib"]] == [4, 4]
    if "prop_2.vnnlib" in by_name:  # one clause of four rows (top-level conjunction)
        assert [c.C.shape for c in by_name["prop_2.vnnlib"][0].clauses] == [(4, 5)]
