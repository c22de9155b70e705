"""VNN-LIB reader against hostile files: hard limits, linear time, deadlines, located errors.

The parser is iterative and streams the file in chunks; these tests pin the limits it
promises (module doc of ``robustbench_mr.verifiers.spec.vnnlib``) and that every refusal is one
line ``FILE:LINE:COL: ...`` (never a RecursionError, a traceback or silence).
"""

from __future__ import annotations

import gzip
import os
import re
import time

import numpy as np
import pytest

from robustbench_mr.deadline import Deadline, DeadlineExceeded
from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.spec import vnnlib
from robustbench_mr.verifiers.spec.vnnlib import parse_vnnlib_text, read_vnnlib

from .test_vnnlib_parser import CASES


def _decls(n_in: int = 1, n_out: int = 2) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"


def _one_line_error(text: str, source: str = "p.vnnlib", **kw) -> str:
    with pytest.raises(UserError) as err:
        parse_vnnlib_text(text, source, **kw)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        p.name == q.name and np.array_equal(p.lower, q.lower) and np.array_equal(p.upper, q.upper)
        and len(p.clauses) == len(q.clauses)
        and all(np.array_equal(c.C, e.C) and np.array_equal(c.d, e.d) for c, e in zip(p.clauses, q.clauses))
        for p, q in zip(a, b)
    )


# ---- nesting: no recursion anywhere


def test_and_nested_100000_deep_parses():
    depth = 100_000
    text = _decls() + "(assert " + "(and " * depth + "(>= X_0 -1) (<= X_0 1) (<= Y_0 Y_1)" + ")" * depth + ")\n"
    (prop,) = parse_vnnlib_text(text, "deep.vnnlib")
    assert prop.lower.tolist() == [-1.0] and prop.upper.tolist() == [1.0]
    assert [c.C.tolist() for c in prop.clauses] == [[[1.0, -1.0]]]


def test_or_nested_100000_deep_parses():
    depth = 100_000
    text = _decls() + BOX + "(assert " + "(or " * depth + "(<= Y_0 Y_1) (<= Y_1 Y_0)" + ")" * depth + ")\n"
    (prop,) = parse_vnnlib_text(text, "deep.vnnlib")
    assert [c.C.tolist() for c in prop.clauses] == [[[1.0, -1.0]], [[-1.0, 1.0]]]


@pytest.mark.parametrize("opening", ["(and (or ", "(- ", "(assert "])
def test_other_nesting_100000_deep_is_one_line_error(opening):
    depth = 100_000
    if opening == "(- ":
        text = _decls() + BOX + "(assert (<= " + opening * depth + "Y_0" + ")" * depth + " 1))\n"
    elif opening == "(assert ":
        text = _decls() + opening * depth + ")" * depth  # the second (assert is already wrong
    else:
        text = _decls() + BOX + "(assert " + opening * depth + "(<= Y_0 1)" + "))" * depth + ")\n"
    msg = _one_line_error(text)
    assert re.match(r"p\.vnnlib:\d+:\d+: ", msg), msg
    assert "MAX_NESTING" in msg or "inside the form opened at" in msg


def test_right_nested_sums_stay_exact():
    n = 800  # deep, within MAX_NESTING: (+ Y_0 (+ Y_1 (+ ... (+ Y_799 0.5))))
    term = "".join(f"(+ Y_{j} " for j in range(n)) + "0.5" + ")" * n
    (prop,) = parse_vnnlib_text(_decls(1, n) + BOX + f"(assert (<= {term} 2))\n", "p")
    (clause,) = prop.clauses
    assert clause.C.tolist() == [[1.0] * n] and clause.d.tolist() == [1.5]


# ---- linear time, bounded memory


def _hostile_body(size: int) -> str:
    """Mostly bound lines (the hot path), some repeated, plus output rows and general forms."""
    block = "".join(f"(assert (<= X_{i % 50} {1 + i % 7}.0))\n(assert (>= X_{i % 50} -{1 + i % 5}.5))\n" for i in range(200))
    block += "(assert (and (<= Y_0 Y_1) (>= X_3 -2)))\n(assert (<= (+ Y_0 (* 2 Y_1)) 3))\n(assert (<= Y_1 4.0))\n"
    return block * max(1, size // len(block))


def test_time_is_linear_in_the_file_size(tmp_path):
    sizes = [1, 2, 4, 8]  # MB
    seconds = {}
    for mb in sizes:
        p = tmp_path / f"h{mb}.vnnlib"
        p.write_text(_decls(50) + _hostile_body(mb * 1_000_000))
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            (prop,) = read_vnnlib(p)
            best = min(best, time.perf_counter() - t)
        seconds[mb] = best
        assert prop.upper[0] == 1.0 and prop.lower[0] == -1.5
        assert len(prop.clauses) == 1 and prop.clauses[0].C.shape == (3, 2)  # repeated rows kept once
    # each doubling at most 2.2x, with slack for a shared machine, over the whole range
    assert seconds[8] <= seconds[1] * 2.2**3 * 1.3, seconds


def test_repeated_bounds_keep_one_bound_and_one_row():
    text = _decls() + "(assert (<= X_0 1.0))\n(assert (>= X_0 0.0))\n(assert (<= Y_0 3.0))\n" * 50_000
    (prop,) = parse_vnnlib_text(text, "r")
    assert prop.lower.tolist() == [0.0] and prop.upper.tolist() == [1.0]
    assert prop.clauses[0].C.tolist() == [[1.0, 0.0]] and prop.clauses[0].d.tolist() == [3.0]


def test_huge_disjunction_products_are_refused_early():
    alternatives = "(assert (or (and (<= Y_0 0)) (and (<= Y_1 0)) (and (<= Y_0 Y_1))))\n"
    msg = _one_line_error(_decls() + BOX + alternatives * 20)  # 3**20 terms
    assert "MAX_DNF_TERMS" in msg and "more than 100000 terms" in msg


def test_big_single_disjunction_is_refused_by_the_term_limit(monkeypatch):
    monkeypatch.setattr(vnnlib, "MAX_DNF_TERMS", 1000)
    msg = _one_line_error(_decls() + BOX + "(assert (or " + "(and (<= Y_0 Y_1))\n" * 1500 + "))\n")
    assert msg.startswith("p.vnnlib:1006:1: ") and "MAX_DNF_TERMS" in msg, msg


# ---- the size limit (refused before reading)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path):
    p = tmp_path / "huge.vnnlib"
    with open(p, "wb") as f:  # sparse: no disk used, and reading it would take long
        f.truncate(vnnlib.MAX_VNNLIB_BYTES + 1)
    t = time.perf_counter()
    with pytest.raises(UserError) as err:
        read_vnnlib(p)
    assert time.perf_counter() - t < 1.0
    msg = str(err.value)
    assert "\n" not in msg and "MAX_VNNLIB_BYTES" in msg and "raise the limit" in msg


def test_size_limit_holds_for_text_and_decompressed_gz(tmp_path, monkeypatch):
    text = _decls() + BOX * 100
    monkeypatch.setattr(vnnlib, "MAX_VNNLIB_BYTES", len(text) - 1)
    assert "MAX_VNNLIB_BYTES" in _one_line_error(text)
    p = tmp_path / "p.vnnlib.gz"
    p.write_bytes(gzip.compress(text.encode()))
    assert os.path.getsize(p) < len(text)  # small on disk, too big once decompressed
    with pytest.raises(UserError, match="MAX_VNNLIB_BYTES"):
        read_vnnlib(p)


def test_gz_files_stream_like_plain_ones(tmp_path):
    text = CASES["boxes_inside_the_disjunction"]
    plain, packed = tmp_path / "p.vnnlib", tmp_path / "p.vnnlib.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = read_vnnlib(plain), read_vnnlib(packed)
    assert [p.name.replace(".gz", "") for p in b] == [p.name for p in a]
    assert all(np.array_equal(p.lower, q.lower) and len(p.clauses) == len(q.clauses) for p, q in zip(a, b))


# ---- chunk boundaries change nothing


@pytest.mark.parametrize("chunk", [1, 2, 5, 13])
def test_any_chunk_size_gives_the_same_properties(monkeypatch, chunk):
    texts = dict(CASES)
    texts["comments_and_newlines"] = _decls(1, 3) + "; (a comment with ( parens\n(assert (<= X_0 ; inside\n 1.5))\r\n(assert\n(>= X_0 -0.5)) ;; end\n(assert (or (and (<= Y_0 Y_1)) (and (= Y_2 0.25))))"
    expected = {name: parse_vnnlib_text(t, name) for name, t in texts.items()}
    monkeypatch.setattr(vnnlib, "_CHUNK_CHARS", chunk)
    for name, t in texts.items():
        assert _same(parse_vnnlib_text(t, name), expected[name]), name


@pytest.mark.parametrize("chunk", [1, 3, 1 << 18])
def test_error_positions_do_not_depend_on_chunks(monkeypatch, chunk):
    monkeypatch.setattr(vnnlib, "_CHUNK_CHARS", chunk)
    text = _decls() + BOX + "; a comment\n(assert (or (and (<= Y_0 Y_1)) (and (<= Y_0 Y_7))))\n"
    assert _one_line_error(text).startswith("p.vnnlib:7:45: 'Y_7' is not a declared variable")


def test_overlong_tokens_are_refused(monkeypatch):
    monkeypatch.setattr(vnnlib, "_CHUNK_CHARS", 64)
    monkeypatch.setattr(vnnlib, "_MAX_TOKEN_CHARS", 100)
    msg = _one_line_error(_decls() + "(assert (<= X_0 1" + "0" * 500 + "))\n")
    assert msg.startswith("p.vnnlib:4:17: a token of more than 100 characters"), msg


# ---- bad numbers and empty boxes


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("(assert (<= X_3 nan))", "X_3 has a NaN bound"),
        ("(assert (>= X_3 NaN))", "X_3 has a NaN bound"),
        ("(assert (or (and (<= X_3 nan) (<= Y_0 0))))", "X_3 has a NaN bound"),
        ("(assert (<= X_3 inf))", "X_3 has an infinite bound"),
        ("(assert (<= (* 2 X_3) -1e999))", "X_3 has an infinite bound"),
        ("(assert (<= Y_0 nan))", "Y_0 has a NaN bound"),
        ("(assert (<= (+ Y_0 Y_1) nan))", "the constraint has a NaN number"),
    ],
)
def test_nan_and_infinite_bounds_are_named(body, fragment):
    text = _decls(4) + "".join(f"(assert (>= X_{i} 0)) (assert (<= X_{i} 1))\n" for i in range(4)) + body + "\n"
    msg = _one_line_error(text)
    assert fragment in msg and msg.startswith("p.vnnlib:11:"), msg


def test_an_empty_input_box_names_the_variable_and_both_values():
    text = _decls(2) + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0.75))\n(assert (<= X_1 0.25))\n(assert (<= Y_0 0))\n"
    msg = _one_line_error(text)
    assert msg.startswith("p.vnnlib:8:10: the input box is empty: X_1 with lower bound 0.75 (at 7:10) above its upper bound 0.25 (at 8:10)"), msg


def test_every_disjunct_empty_is_an_error_but_one_empty_disjunct_is_dropped():
    both = "(assert (or (and (>= X_0 1) (<= X_0 0)) (and (>= X_0 3) (<= X_0 2))))\n"
    msg = _one_line_error(_decls() + both)
    assert "every disjunct's input box is empty" in msg and "X_0 with lower bound 1.0" in msg and "0.0" in msg
    one = "(assert (or (and (>= X_0 1) (<= X_0 0)) (and (>= X_0 2) (<= X_0 3))))\n"
    (prop,) = parse_vnnlib_text(_decls() + one, "p")
    assert prop.lower.tolist() == [2.0] and prop.upper.tolist() == [3.0]


def test_no_bound_is_still_an_error_at_the_declaration():
    msg = _one_line_error(_decls(2) + BOX + "(assert (>= X_1 0))\n")
    assert msg.startswith("p.vnnlib:2:1: input X_1 has no upper bound"), msg


# ---- FILE:LINE:COL: what, expected what


@pytest.mark.parametrize(
    "body, where, fragment",
    [
        ("(assert (<= X_0 ))", "4:17", "unexpected ')', expected a term"),
        ("(assert (<= X_0 1)))", "4:20", "unexpected ')' (unbalanced)"),
        ("\n(assert (and (<= X_0 1)\n", "5:9", "unclosed '(' opened at 5:9 is never closed, expected ')' before the end of the file at 6:1"),
        ("(assert (>= X_0 0)\n(assert (<= X_0 1))", "5:1", "unexpected (assert ...) inside the form opened at 4:1"),
        ("(assert (<= X_0 1) (<= X_0 2))", "4:20", "unexpected second formula"),
        ("(assert (  foo Y_0 1))", "4:12", "unsupported operator 'foo', expected and, or"),
        ("(assert ((<= Y_0 1)))", "4:10", "unexpected '(' after the '(' at 4:9, expected an operator"),
        ("(assert (<= (* Y_0 Y_1) 1))", "4:14", "product of two variables is not linear"),
        ("\t(declare-const X_1 Int)", "4:21", "variable X_1 has sort 'Int', expected Real"),
        ("(check-sat)", "4:1", "unexpected top-level form 'check-sat'"),
        ("X_0", "4:1", "unexpected 'X_0' outside parentheses"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, body, where, fragment):
    p = tmp_path / "prop.vnnlib"
    p.write_text(_decls() + body)
    with pytest.raises(UserError) as err:
        read_vnnlib(p)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}:{where}: "), msg
    assert fragment in msg, msg


# ---- the deadline


class _CountingDeadline(Deadline):
    """Expires at its ``limit``-th check (a real clock would make the test slow or flaky)."""

    def __init__(self, limit: int) -> None:
        super().__init__(3600.0)
        self.limit, self.checks = limit, 0

    def check(self, what: str = "") -> None:
        self.checks += 1
        if self.checks >= self.limit:
            raise DeadlineExceeded(f"time limit reached while {what}")


def test_the_deadline_is_checked_while_parsing_and_propagates(tmp_path):
    p = tmp_path / "big.vnnlib"
    p.write_text(_decls(50) + _hostile_body(3_000_000))  # more than ten chunks
    deadline = _CountingDeadline(limit=5)
    with pytest.raises(DeadlineExceeded, match="parsing the VNN-LIB file"):
        read_vnnlib(p, deadline=deadline)
    assert deadline.checks == 5  # stopped after a few chunks, not at the end


def test_an_expired_deadline_stops_before_any_work():
    expired = Deadline(0.0)
    with pytest.raises(DeadlineExceeded):
        parse_vnnlib_text(_decls() + BOX, "p", deadline=expired)
    (prop,) = parse_vnnlib_text(_decls() + BOX, "p", deadline=Deadline(60.0))  # a live one changes nothing
    assert prop.upper.tolist() == [1.0]
