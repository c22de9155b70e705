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
Property is sat.

We parse ourselves: the PyPI ``vnnlib`` package (1.0.x) implements VNN-LIB 2.0 and rejects
the 1.0 files VNN-COMP publishes (``syntax error at line 3`` on ``declare-const``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.network import Network
from robustbench_mr.verifiers.property import Clause, Property
from robustbench_mr.verifiers.status import PropertyStatus

MAX_DNF_TERMS = 100_000  # a product of disjunctions larger than this is refused, not enumerated

_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s()]+))")
_VAR = re.compile(r"^([XY])_(\d+)$")


@dataclass(frozen=True)
class _Sexp:
    items: tuple  # of _Sexp | _Atom
    line: int


@dataclass(frozen=True)
class _Atom:
    text: str
    line: int


class _ParseError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _tokens(text: str):
    pos, line = 0, 1
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:  # only whitespace left
            break
        start_line = line + text.count("\n", pos, m.start(m.lastindex)) if m.lastindex else line
        line += text.count("\n", pos, m.end())
        pos = m.end()
        if m.group(1) is not None:
            continue
        if m.group(2):
            yield "(", start_line
        elif m.group(3):
            yield ")", start_line
        elif m.group(4):
            yield m.group(4), start_line


def _parse_sexps(text: str) -> list[_Sexp]:
    stack: list[tuple[list, int]] = []
    top: list[_Sexp] = []
    for tok, line in _tokens(text):
        if tok == "(":
            stack.append(([], line))
        elif tok == ")":
            if not stack:
                raise _ParseError(line, "unbalanced ')'")
            items, start = stack.pop()
            sexp = _Sexp(tuple(items), start)
            if stack:
                stack[-1][0].append(sexp)
            else:
                top.append(sexp)
        else:
            if not stack:
                raise _ParseError(line, f"{tok!r} outside parentheses")
            stack[-1][0].append(_Atom(tok, line))
    if stack:
        raise _ParseError(stack[-1][1], "'(' is never closed")
    return top


# A linear term: (coefficients by variable name, constant)
_Lin = tuple[dict[str, float], float]


def _number(tok: _Atom) -> float | None:
    try:
        return float(tok.text)
    except ValueError:
        return None


class _Reader:
    def __init__(self) -> None:
        self.declared: dict[str, int] = {}

    def linear(self, e: _Sexp | _Atom) -> _Lin:
        if isinstance(e, _Atom):
            v = _number(e)
            if v is not None:
                return {}, v
            if e.text not in self.declared:
                raise _ParseError(e.line, f"{e.text!r} is not a declared variable or a number")
            return {e.text: 1.0}, 0.0
        if not e.items or not isinstance(e.items[0], _Atom):
            raise _ParseError(e.line, "expected a term such as X_0, 0.5 or (- Y_0 Y_1)")
        op, args = e.items[0].text, [self.linear(a) for a in e.items[1:]]
        if op == "+" and args:
            return _lin_sum(args, [1.0] * len(args))
        if op == "-" and len(args) == 1:
            return _lin_sum(args, [-1.0])
        if op == "-" and len(args) >= 2:
            return _lin_sum(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*" and len(args) == 2:
            (ca, ka), (cb, kb) = args
            if ca and cb:
                raise _ParseError(e.line, "product of two variables is not linear")
            coef, (vars_, k) = (ka, args[1]) if not ca else (kb, args[0])
            return {v: c * coef for v, c in vars_.items()}, k * coef
        raise _ParseError(e.line, f"unsupported term operator {op!r} with {len(args)} arguments")

    def formula(self, e: _Sexp | _Atom) -> list[list[tuple[dict[str, float], float, int]]]:
        """DNF: a list of conjunctions, each a list of rows (coeffs, rhs, line) meaning
        sum(coeffs * vars) <= rhs."""
        if isinstance(e, _Atom) or not e.items or not isinstance(e.items[0], _Atom):
            raise _ParseError(e.line, "expected a formula such as (<= X_0 0.5), (and ...) or (or ...)")
        op, args = e.items[0].text, e.items[1:]
        if op == "and":
            terms: list[list] = [[]]
            for a in args:
                sub = self.formula(a)
                if len(terms) * len(sub) > MAX_DNF_TERMS:
                    raise _ParseError(e.line, f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms")
                terms = [t + s for t in terms for s in sub]
            return terms
        if op == "or":
            out = []
            for a in args:
                out.extend(self.formula(a))
            return out
        if op in ("<=", ">=", "<", ">", "="):
            if len(args) != 2:
                raise _ParseError(e.line, f"({op} ...) needs two arguments, got {len(args)}")
            (ca, ka), (cb, kb) = self.linear(args[0]), self.linear(args[1])
            # a - b <= 0  (for <=, <), b - a <= 0 (for >=, >)
            diff = dict(ca)
            for v, c in cb.items():
                diff[v] = diff.get(v, 0.0) - c
            rhs = kb - ka
            le = ({v: c for v, c in diff.items() if c != 0.0}, rhs, e.line)
            ge = ({v: -c for v, c in diff.items() if c != 0.0}, -rhs, e.line)
            if op in ("<=", "<"):
                return [[le]]
            if op in (">=", ">"):
                return [[ge]]
            return [[le, ge]]
        raise _ParseError(e.line, f"unsupported operator {op!r} (expected and, or, <=, >=, <, >, =)")


def _lin_sum(args: list[_Lin], signs: list[float]) -> _Lin:
    coeffs: dict[str, float] = {}
    const = 0.0
    for (c, k), s in zip(args, signs):
        for v, a in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + s * a
        const += s * k
    return coeffs, const


def parse_vnnlib_text(text: str, source: str = "<string>", num_inputs: int | None = None, num_outputs: int | None = None) -> list[Property]:
    """Parse VNN-LIB text into Properties (one per distinct input box); see the module doc.

    ``num_inputs`` / ``num_outputs``, when given (from the network), must match the declared
    X and Y counts. Raises :class:`UserError` ``"SOURCE:LINE: what is wrong"``.
    """
    try:
        return _parse(text, source, num_inputs, num_outputs)
    except _ParseError as exc:
        raise UserError(f"{source}:{exc.line}: {exc}") from None


def _parse(text: str, source: str, num_inputs: int | None, num_outputs: int | None) -> list[Property]:
    reader = _Reader()
    asserts: list[_Sexp] = []
    xs: list[int] = []
    ys: list[int] = []
    for s in _parse_sexps(text):
        head = s.items[0].text if s.items and isinstance(s.items[0], _Atom) else None
        if head == "declare-const":
            if len(s.items) != 3 or not isinstance(s.items[1], _Atom) or not isinstance(s.items[2], _Atom):
                raise _ParseError(s.line, "expected (declare-const X_i Real)")
            name, sort = s.items[1].text, s.items[2].text
            m = _VAR.match(name)
            if m is None:
                raise _ParseError(s.line, f"variable {name!r} is neither X_i nor Y_j")
            if sort != "Real":
                raise _ParseError(s.line, f"variable {name} has sort {sort!r}; only Real is supported")
            if name in reader.declared:
                raise _ParseError(s.line, f"variable {name} is declared twice")
            reader.declared[name] = s.line
            (xs if m.group(1) == "X" else ys).append(int(m.group(2)))
        elif head == "assert":
            if len(s.items) != 2:
                raise _ParseError(s.line, "expected (assert FORMULA) with one formula")
            asserts.append(s)
        else:
            raise _ParseError(s.line, f"unexpected top-level form {head!r} (expected declare-const or assert)")
    for kind, idx in (("X", xs), ("Y", ys)):
        if sorted(idx) != list(range(len(idx))):
            missing = sorted(set(range(max(idx, default=-1) + 1)) - set(idx))
            raise _ParseError(1, f"{kind} variables are not numbered 0..{len(idx) - 1} (missing {kind}_{missing[0] if missing else '?'})")
    n_in, n_out = len(xs), len(ys)
    if n_in == 0 or n_out == 0:
        raise _ParseError(1, "the file declares no X (input) or no Y (output) variables")
    if num_inputs is not None and n_in != num_inputs:
        raise _ParseError(1, f"declares {n_in} inputs X_i but the network has {num_inputs}")
    if num_outputs is not None and n_out != num_outputs:
        raise _ParseError(1, f"declares {n_out} outputs Y_j but the network has {num_outputs}")

    # asserts with one DNF term (plain bounds: nearly all of them) are shared by every term;
    # only the disjunctions multiply out (avoids copying thousands of bounds per assert)
    shared: list = []
    terms: list[list] = [[]]
    for s in asserts:
        sub = reader.formula(s.items[1])
        if len(sub) == 1:
            shared.extend(sub[0])
            continue
        if len(terms) * len(sub) > MAX_DNF_TERMS:
            raise _ParseError(s.line, f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms")
        terms = [t + u for t in terms for u in sub]
    terms = [shared + t for t in terms]

    boxes: dict[bytes, tuple[np.ndarray, np.ndarray, list[Clause]]] = {}
    for term in terms:
        lo = np.full(n_in, -np.inf)
        hi = np.full(n_in, np.inf)
        out_rows: list[np.ndarray] = []
        out_rhs: list[float] = []
        trivially_false = False
        for coeffs, rhs, line in term:
            names = list(coeffs)
            kinds = {n[0] for n in names}
            if not names:
                if not 0.0 <= rhs:  # constant atom 0 <= rhs is false
                    trivially_false = True
                continue
            if kinds == {"X"}:
                if len(names) != 1:
                    raise _ParseError(line, "a constraint over several inputs X_i is not a box; only bounds of single inputs are supported")
                i = int(names[0][2:])
                a = coeffs[names[0]]
                if a > 0:
                    hi[i] = min(hi[i], rhs / a)
                else:
                    lo[i] = max(lo[i], rhs / a)
            elif kinds == {"Y"}:
                row = np.zeros(n_out)
                for n, c in coeffs.items():
                    row[int(n[2:])] += c
                out_rows.append(row)
                out_rhs.append(rhs)
            else:
                raise _ParseError(line, "a constraint mixes inputs X_i and outputs Y_j; only input boxes and output constraints are supported")
        if trivially_false or np.any(lo > hi):
            continue  # an empty term can never be satisfied
        unbounded = np.flatnonzero(~np.isfinite(lo) | ~np.isfinite(hi))
        if unbounded.size:
            i = int(unbounded[0])
            side = "lower" if not np.isfinite(lo[i]) else "upper"
            raise _ParseError(1, f"input X_{i} has no {side} bound; every input needs a finite box")
        clause = Clause(np.array(out_rows).reshape(len(out_rows), n_out), np.array(out_rhs))
        key = lo.tobytes() + hi.tobytes()
        if key not in boxes:
            boxes[key] = (lo, hi, [])
        boxes[key][2].append(clause)
    name = Path(source).name
    return [Property(lo, hi, tuple(cl), f"{name}#{k}" if len(boxes) > 1 else name) for k, (lo, hi, cl) in enumerate(boxes.values())]


def read_vnnlib(path: str | Path, num_inputs: int | None = None, num_outputs: int | None = None) -> list[Property]:
    """Read a VNN-LIB file (plain text; ``.gz`` is decompressed) into Properties."""
    import gzip

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such VNN-LIB file")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise UserError(f"{p}: cannot read as text ({type(exc).__name__}: {exc})") from None
    return parse_vnnlib_text(text, str(p), num_inputs, num_outputs)


# --------------------------------------------------------------------------------------
# running one instance (network + VNN-LIB file) with the exact verifier


# An instance's answer has the same five values as one property's (status.PropertyStatus);
# here ``sat`` additionally means onnxruntime confirmed the counterexample.
InstanceStatus = PropertyStatus


@dataclass(frozen=True, eq=False)
class InstanceResult:
    status: InstanceStatus
    seconds: float
    counterexample: np.ndarray | None = None  # flat input, exactly the values onnxruntime was run on
    output: np.ndarray | None = None  # onnxruntime's outputs at the counterexample
    message: str = ""
    num_properties: int = 0
    property_statuses: tuple[str, ...] = ()


BOX_TOLERANCE = 1e-6  # a counterexample may leave the box by this much (after the cast to the model dtype)


def confirm_counterexample(onnx_path: str | Path, prop: Property, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Clip ``x`` into the box, cast it to the model's input dtype, run onnxruntime on the
    original file, and return (input, output) if the input is in the box (within
    ``BOX_TOLERANCE``) and the output lies in the unsafe set (no tolerance); else None."""
    from robustbench_mr.verifiers.onnx import onnx_input_dtype, onnxruntime_forward

    x = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), prop.lower, prop.upper)
    x = x.astype(onnx_input_dtype(onnx_path)).astype(np.float64)
    if not prop.contains_input(x, tol=BOX_TOLERANCE):
        return None
    y = onnxruntime_forward(onnx_path, x)
    if not prop.is_violated_by(y):
        return None
    return x, y


def _file_stamp(path: str | Path) -> tuple[int, int]:
    try:
        st = Path(path).stat()
    except OSError:
        return (0, 0)  # load_onnx reports the missing file
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _load_network_cached(path: str, mtime_ns: int, size: int) -> Network:
    """Benchmarks reuse a few networks for many properties: import each once per process
    (keyed by the file's modification time and size, so an edited file is read again)."""
    from robustbench_mr.verifiers.onnx import load_onnx

    return load_onnx(path)


FALSIFY_SAMPLES = 256  # random points tried before the MILP (cheap; a hit is confirmed by onnxruntime)


def _violation_margin(prop: Property, y: np.ndarray) -> np.ndarray:
    """Per row of ``y`` (N, outputs): min over clauses of max over rows of C y - d (<= 0: unsafe)."""
    margins = [np.max(y @ c.C.T - c.d, axis=1) if c.C.shape[0] else np.full(len(y), -np.inf) for c in prop.clauses]
    return np.min(np.stack(margins), axis=0) if margins else np.full(len(y), np.inf)


def _falsify(onnx_path: str | Path, net: Network, prop: Property, seed: int, samples: int) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray]:
    """Try the box centre and random points: (confirmed counterexample or None, the point
    closest to violating, as a warm start for the solver)."""
    rng = np.random.default_rng(seed)
    pts = np.vstack([(prop.lower + prop.upper) / 2, rng.uniform(prop.lower, prop.upper, size=(samples, prop.lower.size))])
    margin = _violation_margin(prop, net.forward(pts))
    order = np.argsort(margin)
    for k in order[:3]:
        if margin[k] <= 0:
            confirmed = confirm_counterexample(onnx_path, prop, pts[k])
            if confirmed is not None:
                return confirmed, pts[k]
    return None, pts[order[0]]


def check_instance(onnx_path: str | Path, vnnlib_path: str | Path, timeout: float, falsify_samples: int = FALSIFY_SAMPLES, **solver_options: object) -> InstanceResult:
    """Decide one VNN-COMP instance with the exact verifier (``verifiers.solve.check_property``).

    sat if some Property has a counterexample that onnxruntime confirms on the original file;
    unsat only if every Property is unsat; a sat the check does not confirm gives unknown
    (never sat). Bad files raise :class:`UserError`; solver failures give ``error``.
    """
    start = time.perf_counter()
    net = _load_network_cached(str(onnx_path), *_file_stamp(onnx_path))
    props = read_vnnlib(vnnlib_path, net.num_inputs, net.num_outputs)
    from robustbench_mr.verifiers.solve import check_property  # after the inputs are known to be good
    statuses: list[str] = []
    messages: list[str] = []
    for k, prop in enumerate(props):
        remaining = timeout - (time.perf_counter() - start)
        if remaining <= 0:
            statuses.append("timeout")
            messages.append(f"property {k}: no time left")
            continue
        warm = None
        if falsify_samples > 0:
            confirmed, warm = _falsify(onnx_path, net, prop, k, falsify_samples)
            if confirmed is not None:
                statuses.append("sat")
                messages.append(f"property {k}: counterexample found by sampling")
                return InstanceResult(InstanceStatus.SAT, time.perf_counter() - start, confirmed[0], confirmed[1], "; ".join(messages), len(props), tuple(statuses))
        try:
            r = check_property(net, prop, timeout=remaining, warm_start=warm, **solver_options)
        except Exception as exc:  # noqa: BLE001 - one instance's failure must not stop a benchmark
            statuses.append("error")
            messages.append(f"property {k}: {type(exc).__name__}: {exc}")
            continue
        status = getattr(r.status, "value", str(r.status))
        if status == "sat":
            if r.counterexample is None:
                statuses.append("unknown")
                messages.append(f"property {k}: sat without a counterexample")
                continue
            confirmed = confirm_counterexample(onnx_path, prop, r.counterexample)
            if confirmed is None:
                statuses.append("unknown")
                messages.append(f"property {k}: counterexample not confirmed by onnxruntime")
                continue
            x, y = confirmed
            statuses.append("sat")
            return InstanceResult(InstanceStatus.SAT, time.perf_counter() - start, x, y, "; ".join(messages), len(props), tuple(statuses))
        statuses.append(status)
        if status != "unsat" and getattr(r, "message", ""):
            messages.append(f"property {k}: {r.message}")
    seconds = time.perf_counter() - start
    if all(s == "unsat" for s in statuses):
        final = InstanceStatus.UNSAT
    elif "unknown" in statuses:
        final = InstanceStatus.UNKNOWN
    elif "error" in statuses:
        final = InstanceStatus.ERROR
    elif "timeout" in statuses:
        final = InstanceStatus.TIMEOUT
    else:
        final = InstanceStatus.UNKNOWN
    return InstanceResult(final, seconds, None, None, "; ".join(messages), len(props), tuple(statuses))
