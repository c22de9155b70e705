"""Cross-checks between exact verification and attacks on the same inputs.

A *contradiction* is an input that the verifier proved robust in an eps-ball (``verified``)
while an attack found a misclassified point in a ball of the same norm with the same or a
smaller radius (``broken``). One of the two is wrong: either the verifier is unsound (the
serious case) or the attack stored a point outside its ball. Either way the numbers cannot
be published; ``mr-eval report --strict`` exits 1.

Aggregates are also checked on the inputs both evaluated: verified <= robust <= clean (and
robust <= clean for every attack, verified or not), and on the paper's rows of every board
(verified <= each attack <= clean, as printed). ``flags`` maps each inconsistent (checkpoint,
threat, eps) to the note its board row carries, so the boards point at the banner.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from collections.abc import Iterable

from robustbench_mr.reports.tables import CLEAN, ROBUST, VERIFIED, Board, CheckpointRows, _close, canonical_eps, eps_text

format_eps = eps_text


@dataclass(frozen=True)
class Contradiction:
    ckpt_sha: str
    ckpt_path: str
    dataset: str
    split: str
    idx: int
    norm: str
    verified_eps: float
    verify_method: str
    broken_eps: float
    attack_method: str

    def describe(self) -> str:
        return (
            f"{self.ckpt_path} ({self.ckpt_sha[:12]}) {self.dataset}/{self.split} input {self.idx}: "
            f"verified robust at {self.norm} {format_eps(self.verified_eps)} by {self.verify_method}, "
            f"but broken at {format_eps(self.broken_eps)} by {self.attack_method}"
        )


@dataclass(frozen=True)
class OrderingViolation:
    ckpt_sha: str
    ckpt_path: str
    norm: str
    eps: float
    n: int
    verified: int | None  # None: no verify rows at this setting (robust <= clean checked alone)
    robust: int
    clean: int
    attack_method: str

    def describe(self) -> str:
        where = f"{self.ckpt_path} ({self.ckpt_sha[:12]}) {self.norm} {format_eps(self.eps)} on {self.n} common inputs"
        if self.verified is None:
            return f"{where}: robust ({self.attack_method}) {self.robust} <= clean {self.clean} does not hold"
        return f"{where}: verified {self.verified} <= robust ({self.attack_method}) {self.robust} <= clean {self.clean} does not hold"


@dataclass(frozen=True)
class LabelMismatch:
    """Rows of the same input that disagree on the label or the clean prediction (a different
    model file would have a different sha; this means non-determinism or a bug)."""

    ckpt_sha: str
    ckpt_path: str
    idx: int
    labels: tuple[int, ...]
    predictions: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.ckpt_path} ({self.ckpt_sha[:12]}) input {self.idx}: labels {self.labels}, clean predictions {self.predictions} disagree"


@dataclass(frozen=True)
class ConsistencyReport:
    contradictions: tuple[Contradiction, ...]
    ordering: tuple[OrderingViolation, ...]
    mismatches: tuple[LabelMismatch, ...]
    published: tuple[str, ...] = ()  # paper rows whose printed figures break verified <= attack <= clean

    @property
    def ok(self) -> bool:
        return not (self.contradictions or self.ordering or self.mismatches or self.published)

    def banner(self) -> str:
        """The loud multi-line message for stderr ('' when everything is consistent)."""
        if self.ok:
            return ""
        bar = "!" * 78
        lines = [bar]
        if self.contradictions:
            lines.append(f"!!! CONTRADICTION: {len(self.contradictions)} input(s) both VERIFIED and BROKEN (same norm, broken ball <= verified ball)")
            lines.append("!!! the verifier or the attack is wrong; do not publish these numbers")
            lines += [f"!!!   {c.describe()}" for c in self.contradictions[:50]]
            if len(self.contradictions) > 50:
                lines.append(f"!!!   ... and {len(self.contradictions) - 50} more")
        for o in self.ordering:
            lines.append(f"!!! ORDERING: {o.describe()}")
        for m in self.mismatches[:20]:
            lines.append(f"!!! MISMATCH: {m.describe()}")
        for text in self.published:
            lines.append(f"!!! PUBLISHED ROW: {text}")
        lines.append(bar)
        return "\n".join(lines)


def check_group(ck: CheckpointRows) -> ConsistencyReport:
    verified: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    broken: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    seen: dict[int, set[tuple[int | None, int | None]]] = defaultdict(set)
    for r in ck.rows:
        seen[r.idx].add((r.label, r.prediction))
        if r.kind == "verify" and r.status == "verified":
            verified[(r.norm, r.idx)].append((r.eps, r.method))
        elif r.kind == "attack" and r.status == "broken":
            broken[(r.norm, r.idx)].append((r.eps, r.method))
    contradictions = []
    for (norm, idx), vs in sorted(verified.items()):
        for be, bm in sorted(broken.get((norm, idx), [])):
            for ve, vm in sorted(vs):
                if be <= ve or _close(be, ve):
                    contradictions.append(Contradiction(ck.ckpt_sha, ck.ckpt_path, ck.dataset, ck.split, idx, norm, ve, vm, be, bm))
    mismatches = [
        LabelMismatch(ck.ckpt_sha, ck.ckpt_path, idx, tuple(sorted({lbl for lbl, _ in s if lbl is not None})), tuple(sorted({p for _, p in s if p is not None})))
        for idx, s in sorted(seen.items())
        if len({lbl for lbl, _ in s if lbl is not None}) > 1 or len({p for _, p in s if p is not None}) > 1
    ]
    ordering = []
    for s in ck.settings():
        norm, eps = s.threat, s.eps
        ver = ck.select("verify", norm, eps)
        for method in sorted({r.method for r in ck.rows if r.kind == "attack" and r.norm == norm and _close(r.eps, eps)}):
            att = ck.select("attack", norm, eps, (method,))
            common = ({r.idx for r in ver} & {r.idx for r in att}) if ver else {r.idx for r in att}
            if not common:
                continue
            v = len({r.idx for r in ver if r.idx in common and r.status == "verified"}) if ver else None
            a = len({r.idx for r in att if r.idx in common and r.status == "robust"})
            c = len({r.idx for r in att if r.idx in common and r.label == r.prediction})
            if not ((v is None or v <= a) and a <= c):
                ordering.append(OrderingViolation(ck.ckpt_sha, ck.ckpt_path, norm, eps, len(common), v, a, c, method))
    return ConsistencyReport(tuple(contradictions), tuple(ordering), tuple(mismatches))


def check_published(boards: Iterable[Board]) -> tuple[str, ...]:
    """The paper's rows whose printed figures break verified <= each attack <= clean."""
    out = []
    for b in boards:
        for r in b.rows:
            if r.source != "paper":
                continue
            ver, clean = r.cell(VERIFIED).value, r.cell(CLEAN).value
            for col, f in r.cells:
                a = f.value
                if col in (VERIFIED, CLEAN, ROBUST) or a is None:
                    continue
                if (ver is not None and ver > a) or (clean is not None and a > clean):
                    out.append(f"{r.defense} ({r.note.split(';')[0]}) at {b.setting.title}: verified {ver} <= {col} {a} <= clean {clean} does not hold")
    return tuple(out)


def check_consistency(groups: list[CheckpointRows], boards: Iterable[Board] = ()) -> ConsistencyReport:
    parts = [check_group(g) for g in groups]
    return ConsistencyReport(
        tuple(c for p in parts for c in p.contradictions),
        tuple(o for p in parts for o in p.ordering),
        tuple(m for p in parts for m in p.mismatches),
        check_published(boards),
    )


def flags(report: ConsistencyReport) -> dict[tuple[str, str, float], str]:
    """(checkpoint sha, threat, eps) -> the short note its board row carries, for every inconsistency."""
    verified_here: dict[tuple[str, str, float], set[int]] = defaultdict(set)
    broken_here: dict[tuple[str, str, float], set[int]] = defaultdict(set)
    ordering: dict[tuple[str, str, float], list[str]] = defaultdict(list)
    for c in report.contradictions:
        verified_here[(c.ckpt_sha, c.norm, canonical_eps(c.verified_eps))].add(c.idx)
        broken_here[(c.ckpt_sha, c.norm, canonical_eps(c.broken_eps))].add(c.idx)
    for o in report.ordering:
        ordering[(o.ckpt_sha, o.norm, canonical_eps(o.eps))].append(o.attack_method)
    out = {}
    for key in set(verified_here) | set(broken_here) | set(ordering):
        parts = []
        if verified_here.get(key):
            parts.append(f"{len(verified_here[key])} input(s) verified here but broken at <= this eps")
        if broken_here.get(key):
            parts.append(f"{len(broken_here[key])} input(s) broken here but verified at >= this eps")
        if ordering.get(key):
            parts.append("verified <= robust <= clean fails for " + ", ".join(sorted(set(ordering[key]))))
        out[key] = "INCONSISTENT: " + "; ".join(parts) + " (see the banner)"
    return out
