"""VNN-LIB (the VNN-COMP 1.0 subset) -> a list of :class:`Property`.

The file is a conjunction of ``assert``s over declared reals ``X_i`` (inputs, flat in the
ONNX input's row-major order) and ``Y_j`` (outputs). Every assert is an atom, ``and`` or
``or`` of such; atoms are ``<=``, ``>=``, ``<``, ``>`` (strict read as non-strict, as VNN-COMP
does: this can only enlarge the unsafe set, so ``unsat`` stays sound) and ``=``, between
linear terms (variables, numbers, ``+``, ``-``, ``*`` by a constant). The whole formula is
put in disjunctive normal form; each term must bound the inputs by a box (atoms over one
``X`` and a constant) and may constrain the outputs linearly (atoms over ``Y`` only). Terms
with the same box become one :class:`Property` whose clauses are the terms' output
conjunctions; so the VNN-COMP form with several input boxes inside the disjunction (the
ACAS Xu property 6 and test/ files) gives several Properties. The file is *sat* iff some
Property is sat. A variable must be declared before it is used (as in SMT-LIB).

We parse ourselves: the PyPI ``vnnlib`` package (1.0.x) implements VNN-LIB 2.0 and rejects
the 1.0 files VNN-COMP publishes (``syntax error at line 3`` on ``declare-const``).

Hostile files. The reader streams the file in chunks of ``_CHUNK_CHARS`` characters through
one regular expression (no token list, no whole-file string) and keeps an explicit stack
of open parentheses (no recursion, so any nesting depth parses or fails with one line). The
common one-atom asserts ``(assert (<= X_0 0.5))`` are matched as one token and their bounds
intersected on the spot, so a file of a million repeated bounds costs one bound, not a
million (repeated output rows likewise keep one row with the smallest right-hand side).
Time is linear in the file plus the work of multiplying out disjunctions, and that work is
capped; memory is the declared variables, the distinct rows and the DNF, not the file.
Measured on a loaded 2-core machine: ~10 MB/s for bound lines (a 50 MB file of one repeated
line, with the size limit lifted: 4.5 s, 29 MB peak resident), ~2.5 MB/s for disjunctions
of boxes, ~1 MB/s for nested arithmetic read token by token. The hard limits, each refused with a one-line
:class:`UserError` naming the limit:

- ``MAX_VNNLIB_BYTES``: the file's size, checked before reading (for ``.gz`` files also the
  decompressed text while it is read). The largest VNN-COMP files (ImageNet-sized input
  boxes) are around 10 MB; 32 MiB keeps any accepted file to seconds, not minutes.
- ``MAX_DNF_TERMS``: terms of any disjunctive normal form (of one ``and`` or ``or`` or of
  the whole file).
- ``MAX_DNF_ROWS``: rows (and term references) copied while multiplying out, in total.
- ``MAX_PROPERTY_FLOATS``: numbers in the resulting boxes and clause matrices.
- ``MAX_NESTING``: forms open inside each other. ``(and (and ...))`` and ``(or (or ...))``
  are flattened as they are read, so such chains of any depth parse; VNN-COMP files nest
  less than ten deep.

An optional :class:`~robustbench_mr.deadline.Deadline` is checked at every chunk (and in
long DNF products); :class:`~robustbench_mr.deadline.DeadlineExceeded` propagates as is.
Errors read ``FILE:LINE:COL: what is wrong, expected what``; line and column are found by
reading the file again up to the error, so the fast path never counts lines.
"""

from __future__ import annotations

import gzip
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO

import numpy as np

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.spec.property import Clause, Property

if TYPE_CHECKING:
    from robustbench_mr.deadline import Deadline

MAX_VNNLIB_BYTES = 32 * 1024 * 1024  # larger files are refused before reading (see the module doc)
MAX_DNF_TERMS = 100_000  # a product of disjunctions larger than this is refused, not enumerated
MAX_DNF_ROWS = 20_000_000  # rows copied while multiplying out, in total (bounds that time and memory)
MAX_PROPERTY_FLOATS = 50_000_000  # numbers in all boxes and clause matrices (400 MB of float64)
MAX_NESTING = 1000  # open forms inside each other (a flattened (and (and ...)) chain counts once)

_CHUNK_CHARS = 1 << 18  # characters read per step (the deadline is checked once per chunk, < 0.3 s apart)
_MAX_TOKEN_CHARS = 1 << 16  # a longer token (no space or parenthesis in it) is refused
_PARSING = "parsing the VNN-LIB file"

# One token per match. Groups 2, 6 and 10 are whole common forms (a one-atom assert, an atom
# between two leaves, a declaration) so that the bulk of a file costs one match per line;
# anything else falls through to single parentheses and symbols (group 13-15), which the
# stack machine in _Parser handles. A compound form cut by a chunk boundary or written with
# a comment inside simply fails to match and is read token by token: same result.
_LEAF = r"([^\s();]+)"
_OP = r"(<=|>=|<|>|=)"
_TOKEN = re.compile(
    r"\s*(?:"
    r"(;[^\n]*)"  # 1 comment
    rf"|(\(\s*assert\s*\(\s*{_OP}\s+{_LEAF}\s+{_LEAF}\s*\)\s*\))"  # 2 (assert (OP a b)): 3, 4, 5
    rf"|(\(\s*{_OP}\s+{_LEAF}\s+{_LEAF}\s*\))"  # 6 (OP a b): 7, 8, 9
    rf"|(\(\s*declare-const\s+{_LEAF}\s+{_LEAF}\s*\))"  # 10 (declare-const NAME SORT): 11, 12
    r"|(\()|(\))|([^\s();]+)"  # 13 '(', 14 ')', 15 a symbol or number
    r")"
)
_COMMENT, _ASSERT_ATOM, _ATOM, _DECLARE, _OPEN, _CLOSE, _SYMBOL = 1, 2, 6, 10, 13, 14, 15
_VAR = re.compile(r"([XY])_(\d{1,9})")  # (fullmatch) at most 9 digits: int() stays cheap
_COMPARISONS = frozenset(("<=", ">=", "<", ">", "="))
# each comparison as sides s: a OP b is s * (a - b) <= 0 for every s (strict read as non-strict)
_SIDES = {"<=": (1.0,), "<": (1.0,), ">=": (-1.0,), ">": (-1.0,), "=": (1.0, -1.0)}

_EXPECT_FORMULA = "expected a formula such as (<= X_0 0.5), (and ...) or (or ...)"
_EXPECT_TERM = "expected a term such as X_0, 0.5 or (- Y_0 Y_1)"
_EXPECT_TOP = "expected (declare-const X_i Real) or (assert ...)"


@dataclass(frozen=True)
class _Pos:
    """A character offset in the file, shown as LINE:COL inside an error message."""

    offset: int


class _ParseError(Exception):
    """What is wrong at character ``offset``; ``parts`` are text and :class:`_Pos` (shown LINE:COL)."""

    def __init__(self, offset: int, *parts: str | _Pos) -> None:
        super().__init__("".join(p if isinstance(p, str) else f"@{p.offset}" for p in parts))
        self.offset = offset
        self.parts = parts


@dataclass(frozen=True)
class _Var:
    name: str
    is_input: bool
    index: int
    at: int  # offset of its declaration (where "has no bound" errors point)


# Rows of a DNF term. NamedTuples (immutable, like the frozen dataclasses elsewhere) because
# one is made per atom on the slow path and tuples are the cheapest immutable record.
class _Bound(NamedTuple):
    """X_var <= value (upper) or X_var >= value, from the atom at ``at``."""

    at: int
    var: int
    value: float
    upper: bool


class _Row(NamedTuple):
    """sum(c * Y_j for j, c in coeffs) <= rhs; ``(at, sub)`` orders the rows as in the file."""

    at: int
    sub: int
    coeffs: tuple[tuple[int, float], ...]
    rhs: float


_Term = tuple[_Bound | _Row, ...]  # a conjunction
_Dnf = list[_Term]  # a disjunction of conjunctions ([] is false, [()] is true)
_Lin = tuple[dict[str, float], float]  # a linear term: (coefficients by variable name, constant)

# frame kinds (one per open parenthesis whose ')' has not come yet)
_K_DECLARE, _K_ASSERT, _K_AND, _K_OR, _K_CMP, _K_PLUS, _K_MINUS, _K_TIMES = range(8)
_FORMULA_KINDS = frozenset((_K_ASSERT, _K_AND, _K_OR))  # their children are formulas
_TERM_OPS = {"+": _K_PLUS, "-": _K_MINUS, "*": _K_TIMES}


class _Frame:
    """One open '(' (mutable parse state, hence a plain slotted class, not a frozen dataclass).

    An ``and`` directly inside an ``and`` (or ``or`` in ``or``) gets no frame of its own: its
    parent counts it in ``flat`` and takes its children, so a chain of them of any depth
    costs nothing per level and gives the same DNF, in the same order.
    """

    __slots__ = ("kind", "at", "op", "op_at", "n", "flat", "common", "terms", "coeffs", "const", "args")

    def __init__(self, kind: int, at: int, op: str, op_at: int) -> None:
        self.kind = kind
        self.at = at  # offset of the '('
        self.op = op
        self.op_at = op_at
        self.n = 0  # children so far
        self.flat = 0  # flattened same-operator forms open inside this one
        self.terms: _Dnf | None = None  # and: product of the multi-term children (None: [()]); or: the terms; assert: its formula
        self.common: list[_Bound | _Row] = []  # and: rows that every term has
        self.coeffs: dict[str, float] = {}  # + and -: the sum so far
        self.const = 0.0
        self.args: list = []  # comparison and *: the terms; declare-const: (text, offset) pairs


class _Parser:
    """The stack machine: ``feed`` it the text chunk by chunk, then ``finish``."""

    def __init__(self, num_inputs: int | None, num_outputs: int | None, deadline: Deadline | None) -> None:
        self.num_inputs = num_inputs
        self.num_outputs = num_outputs
        self.deadline = deadline
        self.declared: dict[str, _Var] = {}
        self.inputs: dict[int, _Var] = {}
        self.input_index: dict[str, int] = {}  # X_i -> i (the hot path's one lookup)
        self.outputs: dict[int, _Var] = {}
        # the bounds every term shares (one-term asserts), intersected as they come: (value, at)
        self.lo: dict[int, tuple[float, int]] = {}
        self.hi: dict[int, tuple[float, int]] = {}
        # output rows every term shares: coefficients -> rhs (a repeated row keeps the smallest
        # rhs, so a file repeating one output bound keeps one row; first-seen order)
        self.shared_rows: dict[tuple[tuple[int, float], ...], float] = {}
        self.terms: _Dnf | None = None  # product of the multi-term asserts (None: [()])
        self.stack: list[_Frame] = []
        self.pending: int | None = None  # offset of a '(' whose operator has not come yet
        self.work = 0  # rows copied multiplying out (MAX_DNF_ROWS)

    # ---- tokens

    def feed(self, buf: str, base: int, end: int, final: bool) -> tuple[int, bool]:
        """Consume the tokens of ``buf[:end]`` (``base``: offset of ``buf[0]`` in the file).

        Returns (where an unfinished token starts, or ``end``; whether that token is a
        comment). A symbol or comment touching ``end`` may go on in the next chunk, so unless
        ``final`` it is left for the next call (a symbol only up to ``_MAX_TOKEN_CHARS``).
        """
        stack = self.stack
        input_index, lo, hi = self.input_index, self.lo, self.hi
        inf = math.inf
        for m in _TOKEN.finditer(buf, 0, end):
            kind = m.lastindex
            if kind == _ASSERT_ATOM:
                if stack or self.pending is not None:
                    raise self._nested(base + m.start(kind), "assert")
                # the hot path, inlined: (assert (<= X_i c)) or (>= ...) with a finite number c
                op, a, b = m.group(3, 4, 5)
                i = input_index.get(a)
                if i is not None:
                    try:
                        value = float(b)
                    except ValueError:
                        value = inf  # a variable or not a number: _assert_atom takes it
                    if -inf < value < inf and op != "=":
                        if op[0] == "<":
                            cur = hi.get(i)
                            if cur is None or value < cur[0]:
                                self._shared_bound(i, value, True, base + m.start(3))
                        else:
                            cur = lo.get(i)
                            if cur is None or value > cur[0]:
                                self._shared_bound(i, value, False, base + m.start(3))
                        continue
                self._assert_atom(m, base)
            elif kind == _OPEN:
                if self.pending is not None:
                    raise self._no_operator(base + m.start(kind), "'('")
                self.pending = base + m.start(kind)
            elif kind == _CLOSE:
                self._close(base + m.start(kind))
            elif kind == _SYMBOL:
                if m.end() == end and not final:  # may go on in the next chunk
                    if end - m.start(kind) > _MAX_TOKEN_CHARS:
                        raise _ParseError(base + m.start(kind), f"a token of more than {_MAX_TOKEN_CHARS} characters, expected symbols and numbers separated by spaces or parentheses")
                    return m.start(kind), False
                self._symbol(m.group(kind), base + m.start(kind))
            elif kind == _ATOM:
                self._atom(m, base)
            elif kind == _DECLARE:
                if stack or self.pending is not None:
                    raise self._nested(base + m.start(kind), "declare-const")
                self._declare(m.group(11), m.group(12), base + m.start(kind), base + m.start(11), base + m.start(12))
            elif m.end() == end and not final:  # a comment that may go on
                return m.start(), True
        return end, False

    def _assert_atom(self, m: re.Match[str], base: int) -> None:
        """``(assert (OP a b))`` off the hot path (an equality, an output row, an error)."""
        op, a, b = m.group(3, 4, 5)
        op_at = base + m.start(3)
        term = self._simple(op, a, b, op_at)
        if term is not None:
            self._assert_done([term], op_at)
        else:
            self._assert_done(self._compare(op, self._leaf(a, base + m.start(4)), self._leaf(b, base + m.start(5)), op_at), op_at)

    def _atom(self, m: re.Match[str], base: int) -> None:
        """``(OP a b)`` as one token: a formula (an error anywhere else)."""
        at = base + m.start(_ATOM)
        if self.pending is not None:
            raise self._no_operator(at, "'('")
        if not self.stack:
            raise _ParseError(base + m.start(7), f"unexpected top-level form {_show(m.group(7))}, {_EXPECT_TOP}")
        target = self.stack[-1]
        if target.kind not in _FORMULA_KINDS:
            raise self._wrong_child(target, at, f"({m.group(7)} ...)")
        op, a, b = m.group(7, 8, 9)
        op_at = base + m.start(7)
        term = self._simple(op, a, b, op_at)
        if term is None:
            self._give_formula(self._compare(op, self._leaf(a, base + m.start(8)), self._leaf(b, base + m.start(9)), op_at), at)
        elif target.kind == _K_AND:  # the bulk of a disjunction of boxes: straight into the and
            target.common.extend(term)
            target.n += 1
        else:
            self._give_formula([term], at)

    def _simple(self, op: str, a: str, b: str, at: int) -> _Term | None:
        """``(op a b)`` for the common leaf pairs (X_i and a finite number, Y_j and a finite
        number, two different Y's) without building linear terms: the rows ``_compare``
        would make, bit for bit. None for anything else (``_compare`` handles or refuses it)."""
        va = self.declared.get(a)
        if va is None:
            return None
        sides = _SIDES[op]
        vb = self.declared.get(b)
        if vb is None:
            try:
                k = float(b)
            except ValueError:
                return None
            if not -math.inf < k < math.inf:
                return None
            if va.is_input:  # s * x <= s * k: an upper bound iff s > 0
                if op != "=":  # one side (no generator: this is most of a disjunction of boxes)
                    return (_Bound(at, va.index, k, op[0] == "<"),)
                return (_Bound(at, va.index, k, True), _Bound(at, va.index, k, False))
            return tuple(_Row(at, n, ((va.index, s),), s * k) for n, s in enumerate(sides))
        if va.is_input or vb.is_input or va is vb:
            return None
        i, j = va.index, vb.index  # s * (Y_i - Y_j) <= s * 0
        return tuple(_Row(at, n, ((i, s), (j, -s)) if i < j else ((j, -s), (i, s)), s * 0.0) for n, s in enumerate(sides))

    def _symbol(self, text: str, at: int) -> None:
        if self.pending is not None:  # the operator of the '(' just before
            self._open(text, self.pending, at)
            self.pending = None
            return
        if not self.stack:
            raise _ParseError(at, f"unexpected {_show(text)} outside parentheses, {_EXPECT_TOP}")
        target = self.stack[-1]
        if target.kind == _K_DECLARE:
            if target.n == 2:
                raise _ParseError(at, f"unexpected {_show(text)}, expected ')' closing (declare-const NAME Real)")
            target.args.append((text, at))
            target.n += 1
        elif target.kind in _FORMULA_KINDS:
            raise _ParseError(at, f"unexpected {_show(text)}, {_EXPECT_FORMULA}")
        else:
            self._give_term(target, self._leaf(text, at), at)

    def _open(self, head: str, at: int, head_at: int) -> None:
        """``(head``: push the frame for it, if ``head`` may stand here."""
        parent = self.stack[-1] if self.stack else None
        if parent is None:
            if head == "assert":
                kind = _K_ASSERT
            elif head == "declare-const":
                kind = _K_DECLARE
            else:
                raise _ParseError(at, f"unexpected top-level form {_show(head)}, {_EXPECT_TOP}")
        elif parent.kind in _FORMULA_KINDS:
            if head in ("and", "or"):
                kind = _K_AND if head == "and" else _K_OR
                if parent.kind == kind:  # (and (and ...)): flatten into the parent
                    parent.flat += 1
                    return
            elif head in _COMPARISONS:
                kind = _K_CMP
            elif head in ("assert", "declare-const"):
                raise self._nested(at, head)
            else:
                raise _ParseError(head_at, f"unsupported operator {_show(head)}, expected and, or, <=, >=, <, >, =")
        elif parent.kind == _K_DECLARE:
            raise _ParseError(at, "unexpected '(', expected a variable name and its sort as in (declare-const X_0 Real)")
        elif head in _TERM_OPS:
            kind = _TERM_OPS[head]
        else:
            raise _ParseError(head_at, f"unsupported term operator {_show(head)}, expected +, - or * (or a variable or a number)")
        if len(self.stack) >= MAX_NESTING:
            raise _ParseError(at, f"forms are nested more than {MAX_NESTING} deep (MAX_NESTING), expected shallower nesting")
        self.stack.append(_Frame(kind, at, head, head_at))

    def _close(self, at: int) -> None:
        """``)``: finish the innermost frame and hand its value to its parent."""
        if self.pending is not None:
            raise self._no_operator(at, "')'")
        if not self.stack:
            raise _ParseError(at, "unexpected ')' (unbalanced), expected '(' or the end of the file")
        if self.stack[-1].flat:  # the end of a flattened (and ...) or (or ...)
            self.stack[-1].flat -= 1
            return
        f = self.stack.pop()
        kind = f.kind
        if kind == _K_DECLARE:
            if f.n < 2:
                raise _ParseError(at, f"unexpected ')', expected {'a variable name' if f.n == 0 else 'its sort'} as in (declare-const X_0 Real)")
            (name, name_at), (sort, sort_at) = f.args
            self._declare(name, sort, f.at, name_at, sort_at)
        elif kind == _K_ASSERT:
            if f.terms is None:
                raise _ParseError(at, f"unexpected ')', {_EXPECT_FORMULA}")
            self._assert_done(f.terms, f.at)
        elif kind == _K_AND:
            if f.terms is None:
                dnf = [tuple(f.common)]
            elif f.common and f.terms:
                common = tuple(f.common)
                self._charge(len(f.terms) * (len(common) + 1) + sum(map(len, f.terms)), f.at)
                dnf = [common + t for t in f.terms]
            else:
                dnf = f.terms
            self._give_formula(dnf, f.at)
        elif kind == _K_OR:
            self._give_formula(f.terms if f.terms is not None else [], f.at)
        elif kind == _K_CMP:
            if f.n < 2:
                raise _ParseError(at, f"unexpected ')', {_EXPECT_TERM} (({f.op} ...) compares two terms)")
            self._give_formula(self._compare(f.op, f.args[0], f.args[1], f.op_at), f.at)
        else:
            self._give_term(self.stack[-1], self._term_value(f, at), f.at)

    def _term_value(self, f: _Frame, at: int) -> _Lin:
        if f.n == 0 or (f.kind == _K_TIMES and f.n == 1):
            what = "two terms" if f.kind == _K_TIMES else "at least one term"
            raise _ParseError(at, f"unexpected ')', {_EXPECT_TERM} (({f.op} ...) takes {what})")
        if f.kind == _K_TIMES:
            (ca, ka), (cb, kb) = f.args
            if ca and cb:
                raise _ParseError(f.op_at, "product of two variables is not linear, expected a constant factor")
            coef, (vars_, k) = (ka, f.args[1]) if not ca else (kb, f.args[0])
            return {v: c * coef for v, c in vars_.items()}, k * coef
        if f.kind == _K_MINUS and f.n == 1:
            return {v: -c for v, c in f.coeffs.items()}, -f.const
        return f.coeffs, f.const

    # ---- values handed to the enclosing frame

    def _give_term(self, target: _Frame, lin: _Lin, at: int) -> None:
        kind = target.kind
        if kind in (_K_CMP, _K_TIMES):
            if target.n == 2:
                raise _ParseError(at, f"unexpected third term, expected ')' (({target.op} ...) takes two terms)")
            target.args.append(lin)
        elif target.n == 0:  # + or -: the first term is taken over (every term value is a fresh dict)
            target.coeffs, target.const = lin
        else:
            coeffs, add = target.coeffs, lin[0]
            if kind == _K_PLUS and len(add) > len(coeffs):
                # add the smaller sum into the larger, so (+ X_0 (+ X_1 (+ ...))) stays linear;
                # a + b == b + a exactly, so the coefficients are the same either way
                coeffs, add = add, coeffs
                target.coeffs = coeffs
            sign = 1.0 if kind == _K_PLUS else -1.0
            for v, c in add.items():
                coeffs[v] = coeffs.get(v, 0.0) + sign * c
            target.const += sign * lin[1]
            if len(add) > 4096 and self.deadline is not None:
                self.deadline.check(_PARSING)  # a long sum of sums: keep the limit honest
        target.n += 1

    def _give_formula(self, dnf: _Dnf, at: int) -> None:
        target = self.stack[-1]
        kind = target.kind
        if kind == _K_ASSERT:
            if target.terms is not None:
                raise _ParseError(at, "unexpected second formula, expected ')' closing (assert ...) (combine formulas with (and ...))")
            target.terms = dnf
        elif kind == _K_AND:
            if len(dnf) == 1:
                if len(dnf[0]) > 2:  # more than one atom's rows: a copy worth counting
                    self._charge(len(dnf[0]), at)
                target.common.extend(dnf[0])
            elif target.terms is None:
                target.terms = dnf
            else:
                target.terms = self._product(target.terms, dnf, at)
        elif kind == _K_OR:
            if target.terms is None:
                target.terms = dnf
            else:
                if len(target.terms) + len(dnf) > MAX_DNF_TERMS:
                    raise self._too_many_terms(at)
                self._charge(len(dnf), at)
                target.terms.extend(dnf)
        else:
            raise self._wrong_child(target, at, "a formula")
        target.n += 1

    def _assert_done(self, dnf: _Dnf, at: int) -> None:
        """A whole assert: one term joins the shared box and rows; more multiply the terms."""
        if len(dnf) != 1:
            self.terms = dnf if self.terms is None else self._product(self.terms, dnf, at)
            return
        for row in dnf[0]:
            if type(row) is _Bound:
                self._shared_bound(row.var, row.value, row.upper, row.at)
            else:
                rows = self.shared_rows
                old = rows.get(row.coeffs)
                if old is None or row.rhs < old:
                    rows[row.coeffs] = row.rhs

    def _shared_bound(self, var: int, value: float, upper: bool, at: int) -> None:
        """Intersect the shared box with one bound; an empty box is a mistake in the file."""
        mine, other = (self.hi, self.lo) if upper else (self.lo, self.hi)
        cur = mine.get(var)
        if cur is None or (value < cur[0] if upper else value > cur[0]):
            mine[var] = (value, at)
            o = other.get(var)
            if o is not None and (o[0] > value if upper else o[0] < value):
                lo, hi = (o, (value, at)) if upper else ((value, at), o)
                raise _ParseError(at, *_empty_box(var, lo, hi))

    # ---- atoms and terms

    def _leaf(self, text: str, at: int) -> _Lin:
        if text in self.declared:
            return {text: 1.0}, 0.0
        try:
            return {}, float(text)
        except ValueError:
            hint = " (declare it with (declare-const ...) before its first use)" if _VAR.fullmatch(text) else ""
            raise _ParseError(at, f"{_show(text)} is not a declared variable or a number{hint}") from None

    def _compare(self, op: str, a: _Lin, b: _Lin, at: int) -> _Dnf:
        """``(op a b)`` as a DNF: one term of rows, ``[()]`` if always true, ``[]`` if never."""
        (ca, ka), (cb, kb) = a, b
        # a - b <= 0  (for <=, <), b - a <= 0 (for >=, >)
        diff = dict(ca)
        for v, c in cb.items():
            diff[v] = diff.get(v, 0.0) - c
        rhs = kb - ka
        coeffs = {v: c for v, c in diff.items() if c != 0.0}
        if not (math.isfinite(rhs) and all(math.isfinite(c) for c in coeffs.values())):
            bad = next((x for x in (rhs, *coeffs.values()) if not math.isfinite(x)), rhs)
            who = f"{next(iter(coeffs))} has" if len(coeffs) == 1 else "the constraint has"
            raise _ParseError(at, f"{who} {_nonfinite(bad)} {'bound' if len(coeffs) == 1 else 'number'}, expected a finite number")
        sides = _SIDES[op]
        if not coeffs:  # a constant atom: 0 <= s * rhs for each side
            return [()] if all(0.0 <= s * rhs for s in sides) else []
        vars_ = [self.declared[v] for v in coeffs]
        inputs = sum(v.is_input for v in vars_)
        if inputs and inputs < len(vars_):
            raise _ParseError(at, "a constraint mixes inputs X_i and outputs Y_j; only input boxes and output constraints are supported")
        if inputs > 1:
            raise _ParseError(at, "a constraint over several inputs X_i is not a box; only bounds of single inputs are supported")
        if inputs:
            ((_, c),) = coeffs.items()
            # s * c * x <= s * rhs: an upper bound iff s * c > 0, at rhs / c either way
            return [tuple(_Bound(at, vars_[0].index, rhs / c, s * c > 0) for s in sides)]
        return [tuple(_Row(at, k, tuple(sorted((v.index, s * c) for v, c in zip(vars_, coeffs.values()))), s * rhs) for k, s in enumerate(sides))]

    def _declare(self, name: str, sort: str, at: int, name_at: int, sort_at: int) -> None:
        m = _VAR.fullmatch(name)
        if m is None:
            raise _ParseError(name_at, f"variable {_show(name)} is neither X_i nor Y_j, expected X_0, X_1, ... (inputs) or Y_0, Y_1, ... (outputs)")
        if sort != "Real":
            raise _ParseError(sort_at, f"variable {name} has sort {_show(sort)}, expected Real (the only sort supported)")
        is_input = m.group(1) == "X"
        table = self.inputs if is_input else self.outputs
        index = int(m.group(2))
        first = self.declared.get(name) or table.get(index)
        if first is not None:
            raise _ParseError(name_at, f"variable {name} is declared twice (first as {first.name} at ", _Pos(first.at), ")")
        var = _Var(name, is_input, index, at)
        self.declared[name] = var
        table[index] = var
        if is_input:
            self.input_index[name] = index

    # ---- multiplying out

    def _product(self, left: _Dnf, right: _Dnf, at: int) -> _Dnf:
        if len(left) * len(right) > MAX_DNF_TERMS:
            raise self._too_many_terms(at)
        self._charge(len(right) * sum(map(len, left)) + len(left) * sum(map(len, right)) + len(left) * len(right), at)
        return [t + s for t in left for s in right]

    def _charge(self, rows: int, at: int) -> None:
        self.work += rows
        if self.work > MAX_DNF_ROWS:
            raise _ParseError(at, f"multiplying out the disjunctions copies more than {MAX_DNF_ROWS} rows (MAX_DNF_ROWS), expected a smaller disjunctive normal form")
        if rows > 65536 and self.deadline is not None:
            self.deadline.check(_PARSING)

    # ---- errors

    def _too_many_terms(self, at: int) -> _ParseError:
        return _ParseError(at, f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms (MAX_DNF_TERMS), expected fewer disjunctions")

    def _nested(self, at: int, head: str) -> _ParseError:
        opened = self.pending if self.pending is not None else self.stack[-1].at
        return _ParseError(at, f"unexpected ({head} ...) inside the form opened at ", _Pos(opened), ", expected ')' closing that form first (a ')' is missing)")

    def _no_operator(self, at: int, got: str) -> _ParseError:
        assert self.pending is not None
        parent = self.stack[-1] if self.stack else None
        if parent is None:
            expected = "declare-const or assert"
        elif parent.kind in _FORMULA_KINDS:
            expected = "an operator: and, or, <=, >=, <, >, ="
        elif parent.kind == _K_DECLARE:
            expected = "a variable name"
        else:
            expected = "a term operator: +, - or *"
        return _ParseError(at, f"unexpected {got} after the '(' at ", _Pos(self.pending), f", expected {expected}")

    def _wrong_child(self, target: _Frame, at: int, got: str) -> _ParseError:
        if target.kind == _K_DECLARE:
            return _ParseError(at, f"unexpected {got}, expected a variable name and its sort as in (declare-const X_0 Real)")
        return _ParseError(at, f"unexpected {got}, {_EXPECT_TERM}")

    # ---- the end of the file

    def finish(self, eof: int, name: str) -> list[Property]:
        if self.pending is not None or self.stack:
            at = self.pending if self.pending is not None else self.stack[-1].at
            raise _ParseError(at, "unclosed '(' opened at ", _Pos(at), " is never closed, expected ')' before the end of the file at ", _Pos(eof))
        for kind, table in (("X", self.inputs), ("Y", self.outputs)):
            if table and max(table) != len(table) - 1:
                missing = next(i for i in range(len(table)) if i not in table)
                raise _ParseError(0, f"{kind} variables are not numbered 0..{len(table) - 1} (missing {kind}_{missing})")
        n_in, n_out = len(self.inputs), len(self.outputs)
        if n_in == 0 or n_out == 0:
            raise _ParseError(0, "the file declares no X (input) or no Y (output) variables")
        if self.num_inputs is not None and n_in != self.num_inputs:
            raise _ParseError(0, f"declares {n_in} inputs X_i but the network has {self.num_inputs}")
        if self.num_outputs is not None and n_out != self.num_outputs:
            raise _ParseError(0, f"declares {n_out} outputs Y_j but the network has {self.num_outputs}")
        return self._properties(n_in, n_out, name)

    def _properties(self, n_in: int, n_out: int, name: str) -> list[Property]:
        lo = np.full(n_in, -np.inf)
        hi = np.full(n_in, np.inf)
        for i, (v, _) in self.lo.items():
            lo[i] = v
        for i, (v, _) in self.hi.items():
            hi[i] = v
        unbounded = np.flatnonzero(~np.isfinite(lo) | ~np.isfinite(hi)).tolist()
        if len(self.shared_rows) * n_out > MAX_PROPERTY_FLOATS:
            raise self._too_many_floats()
        shared_C = np.zeros((len(self.shared_rows), n_out))
        for r, coeffs in enumerate(self.shared_rows):
            for j, c in coeffs:
                shared_C[r, j] = c
        shared_d = np.array(list(self.shared_rows.values()), dtype=np.float64)

        # box (as its differences from the shared box) -> the clauses of the terms with that box
        boxes: dict[tuple[tuple[int, float, float], ...], list[Clause]] = {}
        floats = 0
        first_empty: tuple[int, tuple[float, int], tuple[float, int]] | None = None
        for term in [()] if self.terms is None else self.terms:
            tlo: dict[int, tuple[float, int]] = {}
            thi: dict[int, tuple[float, int]] = {}
            rows: list[_Row] = []
            for r in term:
                if type(r) is _Bound:
                    mine = thi if r.upper else tlo
                    cur = mine.get(r.var)
                    if cur is None or (r.value < cur[0] if r.upper else r.value > cur[0]):
                        mine[r.var] = (r.value, r.at)
                else:
                    rows.append(r)
            key: list[tuple[int, float, float]] = []  # (input, lower, upper) where the term narrows the shared box
            for i in sorted(tlo.keys() | thi.keys()):
                l, h = self.lo.get(i, (-math.inf, 0)), self.hi.get(i, (math.inf, 0))
                if i in tlo and tlo[i][0] > l[0]:
                    l = tlo[i]
                if i in thi and thi[i][0] < h[0]:
                    h = thi[i]
                if l[0] > h[0]:  # an empty term can never be satisfied: dropped
                    first_empty = first_empty or (i, l, h)
                    break
                if l[0] != lo[i] or h[0] != hi[i]:
                    key.append((i, l[0], h[0]))
            else:
                floats += self._check_bounded(unbounded, key, lo, hi, n_in) if tuple(key) not in boxes else 0
                floats += (len(shared_d) + len(rows)) * n_out
                if floats > MAX_PROPERTY_FLOATS:
                    raise self._too_many_floats()
                rows.sort()  # file order, as the rows were written
                C = np.zeros((len(shared_d) + len(rows), n_out))
                C[: len(shared_d)] = shared_C
                for r, row in enumerate(rows, start=len(shared_d)):
                    for j, c in row.coeffs:
                        C[r, j] = c
                d = np.concatenate([shared_d, np.array([row.rhs for row in rows], dtype=np.float64)])
                boxes.setdefault(tuple(key), []).append(Clause(C, d))
        if not boxes and first_empty is not None:
            i, l, h = first_empty
            raise _ParseError(max(l[1], h[1]), *_empty_box(i, l, h, every=True))
        out = []
        for k, (key, clauses) in enumerate(boxes.items()):
            blo, bhi = lo.copy(), hi.copy()
            for i, l, h in key:
                blo[i], bhi[i] = l, h
            out.append(Property(blo, bhi, tuple(clauses), f"{name}#{k}" if len(boxes) > 1 else name))
        return out

    def _check_bounded(self, unbounded: list[int], key: list[tuple[int, float, float]], lo: np.ndarray, hi: np.ndarray, n_in: int) -> int:
        """Every input of a new box needs finite bounds; returns the box's size in floats."""
        over = {i: (l, h) for i, l, h in key}
        for i in unbounded:  # few unless the terms bound them, and then at most the term's size
            l, h = over.get(i, (lo[i], hi[i]))
            if not (math.isfinite(l) and math.isfinite(h)):
                side = "lower" if not math.isfinite(l) else "upper"
                raise _ParseError(
                    self.inputs[i].at,
                    f"input X_{i} has no {side} bound; every input needs a finite box, expected (assert (>= X_{i} ...)) and (assert (<= X_{i} ...))",
                )
        return 2 * n_in

    def _too_many_floats(self) -> _ParseError:
        return _ParseError(0, f"the properties would hold more than {MAX_PROPERTY_FLOATS} numbers (MAX_PROPERTY_FLOATS), expected fewer input boxes or output rows")


def _nonfinite(x: float) -> str:
    return "a NaN" if math.isnan(x) else "an infinite"


def _show(text: str) -> str:
    """A token from the file, quoted and cut short (a message stays one short line)."""
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _empty_box(var: int, lo: tuple[float, int], hi: tuple[float, int], every: bool = False) -> tuple[str | _Pos, ...]:
    """Message parts: X_var's lower bound is above its upper bound (with where each was set)."""
    which = "every disjunct's input box is empty; the first has" if every else "the input box is empty:"
    return (
        f"{which} X_{var} with lower bound {lo[0]!r} (at ", _Pos(lo[1]), f") above its upper bound {hi[0]!r} (at ", _Pos(hi[1]),
        "), expected lower <= upper (are the bounds swapped?)",
    )


# --------------------------------------------------------------------------------------
# reading: chunks in, Properties out, errors located


def _run(open_text: Callable[[], TextIO], source: str, num_inputs: int | None, num_outputs: int | None, deadline: Deadline | None) -> list[Property]:
    """Stream the text from ``open_text()`` through a :class:`_Parser`."""
    parser = _Parser(num_inputs, num_outputs, deadline)
    try:
        with open_text() as stream:
            eof = _stream(stream, parser, source, deadline)
        return parser.finish(eof, Path(source).name)
    except _ParseError as exc:
        raise UserError(_located(exc, source, open_text)) from None


def _stream(stream: TextIO, parser: _Parser, source: str, deadline: Deadline | None) -> int:
    """Feed the parser chunk by chunk; return the offset of the end of the file."""
    base = 0  # file offset of buf[0]
    buf = ""  # the unfinished token carried over from the chunk before (short)
    in_comment = False  # the last chunk ended inside a comment: skip to the next newline
    total = 0
    while True:
        if deadline is not None:
            deadline.check(_PARSING)
        try:
            chunk = stream.read(_CHUNK_CHARS)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise UserError(f"{source}: cannot read as text ({type(exc).__name__}: {exc})") from None
        total += len(chunk)
        if total > MAX_VNNLIB_BYTES:
            raise UserError(_too_big(source, "holds more characters than that once decompressed"))
        if in_comment and chunk:
            nl = chunk.find("\n")
            if nl < 0:
                base += len(chunk)
                continue
            base += nl
            chunk = chunk[nl:]
            in_comment = False
        final = not chunk
        buf = buf + chunk if buf else chunk
        # tokens never span a newline, so up to the last one every token is complete
        end = len(buf) if final else (buf.rfind("\n") + 1 or len(buf))
        stop, in_comment = parser.feed(buf, base, end, final)
        if in_comment:
            base += len(buf)
            buf = ""
        else:  # keep the unfinished token or line (short: see feed)
            base += stop
            buf = buf[stop:]
        if final:
            return base + len(buf)


def _located(exc: _ParseError, source: str, open_text: Callable[[], TextIO]) -> str:
    """``SOURCE:LINE:COL: message``, finding lines and columns by reading the text again."""
    offsets = [exc.offset] + [p.offset for p in exc.parts if isinstance(p, _Pos)]
    try:
        with open_text() as stream:
            where = _line_cols(stream, offsets)
    except (OSError, EOFError, UnicodeDecodeError):
        where = {}

    def show(offset: int) -> str:
        return "%d:%d" % where[offset] if offset in where else f"char {offset}"

    text = "".join(p if isinstance(p, str) else show(p.offset) for p in exc.parts)
    return f"{source}:{show(exc.offset)}: {text}"


def _line_cols(stream: TextIO, offsets: list[int]) -> dict[int, tuple[int, int]]:
    """(line, column), both from 1, of each character offset (one pass over the text)."""
    want = sorted(set(offsets))
    out: dict[int, tuple[int, int]] = {}
    line, line_start, base, k = 1, 0, 0, 0
    while k < len(want):
        chunk = stream.read(_CHUNK_CHARS)
        if not chunk:
            break
        pos = 0
        while k < len(want) and want[k] < base + len(chunk):
            o = want[k] - base
            line += chunk.count("\n", pos, o)
            nl = chunk.rfind("\n", pos, o)
            if nl >= 0:
                line_start = base + nl + 1
            out[want[k]] = (line, want[k] - line_start + 1)
            pos, k = o, k + 1
        line += chunk.count("\n", pos)
        nl = chunk.rfind("\n", pos)
        if nl >= 0:
            line_start = base + nl + 1
        base += len(chunk)
    for o in want[k:]:  # at or past the end of the text
        out[o] = (line, o - line_start + 1)
    return out


def _too_big(source: str, what: str) -> str:
    return (
        f"{source}: the VNN-LIB file {what}, over the limit of {MAX_VNNLIB_BYTES:,} bytes (MAX_VNNLIB_BYTES in "
        f"robustbench_mr/verifiers/spec/vnnlib.py); VNN-COMP files are a few MB: check that this is the right file, or raise the limit"
    )


def parse_vnnlib_text(text: str, source: str = "<string>", num_inputs: int | None = None, num_outputs: int | None = None, deadline: Deadline | None = None) -> list[Property]:
    """Parse VNN-LIB text into Properties (one per distinct input box); see the module doc.

    ``num_inputs`` / ``num_outputs``, when given (from the network), must match the declared
    X and Y counts. Raises :class:`UserError` ``"SOURCE:LINE:COL: what is wrong"``, and
    ``DeadlineExceeded`` once ``deadline`` has passed.
    """
    if len(text) > MAX_VNNLIB_BYTES:
        raise UserError(_too_big(source, f"holds {len(text):,} characters"))
    return _run(lambda: io.StringIO(text), source, num_inputs, num_outputs, deadline)


def read_vnnlib(path: str | Path, num_inputs: int | None = None, num_outputs: int | None = None, deadline: Deadline | None = None) -> list[Property]:
    """Read a VNN-LIB file (UTF-8 text; ``.gz`` is decompressed as it is read) into Properties.

    A file over ``MAX_VNNLIB_BYTES`` is refused before it is read. ``deadline`` (a
    :class:`~robustbench_mr.deadline.Deadline`) is checked at every chunk.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such VNN-LIB file")
    size = p.stat().st_size
    if size > MAX_VNNLIB_BYTES:
        raise UserError(_too_big(str(p), f"is {size:,} bytes"))

    def open_text() -> TextIO:
        # utf-8-sig: a byte-order mark is not a token; newline=None reads \r\n and \r as \n
        if p.suffix == ".gz":
            return gzip.open(p, "rt", encoding="utf-8-sig")
        return open(p, encoding="utf-8-sig")

    try:
        return _run(open_text, str(p), num_inputs, num_outputs, deadline)
    except OSError as exc:  # opening failed (a read failure is already a UserError)
        raise UserError(f"{p}: cannot read as text ({type(exc).__name__}: {exc})") from None
