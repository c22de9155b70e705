"""Leaderboards as data, RobustBench style: one board per setting (dataset, split, threat
model, eps), built from the results database and the paper's published rows.

A board lists every checkpoint with verify or attack rows at its setting, and the paper's rows
only where the setting matches theirs (CIFAR-10 test set, the table's threat model and eps);
rows are ranked within the board only (verified, then robust under all attacks, then clean).
Every verify / attack row of the database lands on exactly one board; rows of other kinds
(VNN-COMP instances...) are summarized under "other stored results", so nothing stored is
dropped silently. Rendering is in ``render.py`` (pure functions of these objects).

Every figure carries the number of test inputs behind it (``n``). Definitions, per board:
verified = inputs with a ``verified`` verify row (any bound method) / inputs with a verify row
(a timeout or unknown counts as not verified; the note counts them); an attack column = inputs
left ``robust`` by that attack / inputs it was run on; robust (all attacks) = inputs that no
attack broke / inputs any attack was run on; clean = label == clean prediction over all inputs
behind the row.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from robustbench_mr.errors import UserError
from robustbench_mr.reports.published import PAPER_DATASET, PAPER_SPLIT, PublishedRow
from robustbench_mr.results_db import ResultRow, ResultsDB, checkpoint_model

THREAT_ORDER = ("linf", "l2", "wasserstein")
THREAT_NAMES = {"linf": "L-inf", "l2": "L2", "wasserstein": "Wasserstein"}
BOARD_KINDS = ("verify", "attack")
UNDECIDED = ("timeout", "unknown", "error")  # verify statuses that decide nothing

VERIFIED = "Verified"
ROBUST = "Robust (all attacks)"
CLEAN = "Clean"
# attack method (results DB) -> column; a method not listed here gets a column of its own name
ATTACK_COLUMNS = {"pgd": "PGD", "autoattack": "AutoAttack", "autoattack-plus": "AutoAttack+", "wasserstein": "Wasserstein"}
COLUMN_ORDER = (VERIFIED, "PGD", "AutoAttack", "AutoAttack+", "Wasserstein")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _shortest(value: float) -> str:
    """The shortest decimal (up to 10 significant digits) that reads back as ``value``."""
    for digits in range(1, 11):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            return text
    return f"{value:.10g}"


def eps_text(value: float) -> str:
    """A radius as people write it: ``8/255`` for a multiple of 1/255, a decimal otherwise.

    Multiples of 1/255 that are round decimals (k/255 with k a multiple of 51: 0.2, 0.4, ..., 1)
    stay decimals, since that is how they are typed; ``0`` is ``0``."""
    if value == 0:
        return "0"
    k = round(value * 255)
    if k > 0 and abs(value * 255 - k) <= 1e-9 * max(1.0, k):
        if Fraction(k, 255).denominator in (1, 5):
            return _shortest(float(Fraction(k, 255)))
        return f"{k}/255"
    return _shortest(value)


def canonical_eps(value: float) -> float:
    """One float per radius, so that 8/255 computed two ways lands on one board."""
    return float(f"{value:.12g}")


@dataclass(frozen=True, order=True)
class Setting:
    """What a board is about: a dataset split, a threat model (norm) and a radius."""

    dataset: str
    split: str
    threat: str
    eps: float

    def sort_key(self) -> tuple:
        t = THREAT_ORDER.index(self.threat) if self.threat in THREAT_ORDER else len(THREAT_ORDER)
        return (self.dataset, self.split != "test", self.split, t, self.threat, self.eps)

    @property
    def threat_name(self) -> str:
        return THREAT_NAMES.get(self.threat, self.threat)

    @property
    def title(self) -> str:
        split = "" if self.split == "test" else f" ({self.split} split)"
        return f"{self.dataset}{split} · {self.threat_name} eps {eps_text(self.eps)}"

    def matches(self, dataset: str | None = None, threat: str | None = None, eps: float | None = None) -> bool:
        return ((dataset is None or dataset == self.dataset) and (threat is None or threat == self.threat)
                and (eps is None or _close(self.eps, eps)))


@dataclass(frozen=True)
class Figure:
    """One table cell: the percentage as printed and the number of inputs behind it."""

    text: str = ""  # "" = no data
    n: int | None = None

    @staticmethod
    def from_counts(correct: int, n: int) -> "Figure":
        return Figure(f"{100.0 * correct / n:.2f}", n) if n else Figure()

    @property
    def value(self) -> float | None:
        """The percentage as a number, or None (no data, or a bound such as ``<5.0``)."""
        try:
            v = float(self.text)
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    @property
    def sort_value(self) -> float | None:
        """For ranking only: the value, with a bound such as ``<5.0`` read as 5.0."""
        v = self.value
        if v is None and self.text[:1] in "<>≤≥" and self.text[1:]:
            try:
                v = float(self.text[1:])
            except ValueError:
                return None
        return v


@dataclass(frozen=True)
class CheckpointRows:
    """All verify / attack rows of one checkpoint on one dataset split."""

    ckpt_sha: str
    ckpt_path: str
    dataset: str
    split: str
    rows: tuple[ResultRow, ...]
    model: str | None = None  # model_label of the checkpoint (rows' model column, else its file)

    @property
    def name(self) -> str:
        return f"{Path(self.ckpt_path).name} ({self.ckpt_sha[:8]})"

    def select(self, kind: str, norm: str, eps: float, methods: tuple[str, ...] | None = None) -> list[ResultRow]:
        return [
            r for r in self.rows
            if r.kind == kind and r.norm == norm and _close(r.eps, eps) and (methods is None or r.method in methods)
        ]

    def settings(self) -> list[Setting]:
        """The settings (norm, eps) this checkpoint has rows at."""
        return sorted({Setting(self.dataset, self.split, r.norm, canonical_eps(r.eps)) for r in self.rows}, key=Setting.sort_key)


def group_by_checkpoint(db: ResultsDB) -> list[CheckpointRows]:
    """Verify and attack rows grouped by (checkpoint sha, dataset, split), with the model label:
    the ``model`` most of its rows carry, else the checkpoint file's (when it still has that sha)."""
    groups: dict[tuple[str, str, str], list[ResultRow]] = defaultdict(list)
    for kind in BOARD_KINDS:
        for r in db.rows(kind=kind):
            groups[(r.ckpt_sha, r.dataset, r.split)].append(r)
    out = []
    for (sha, ds, split), rows in sorted(groups.items()):
        latest = max(rows, key=lambda r: r.created)
        labels = Counter(r.model for r in rows if r.model)
        model = min(labels, key=lambda m: (-labels[m], m)) if labels else checkpoint_model(latest.ckpt_path, sha)
        out.append(CheckpointRows(sha, latest.ckpt_path, ds, split, tuple(rows), model))
    return out


def verified_figure(rows: Iterable[ResultRow]) -> Figure:
    by_idx: dict[int, bool] = {}
    for r in rows:
        by_idx[r.idx] = by_idx.get(r.idx, False) or r.status == "verified"
    return Figure.from_counts(sum(by_idx.values()), len(by_idx))


def undecided_counts(rows: Iterable[ResultRow]) -> Counter:
    """status -> inputs that no verify method decided (timeout / unknown / error)."""
    by_idx: dict[int, list[str]] = defaultdict(list)
    for r in rows:
        by_idx[r.idx].append(r.status)
    return Counter(next(s for s in ss if s in UNDECIDED) for ss in by_idx.values() if all(s in UNDECIDED for s in ss))


def attack_figure(rows: Iterable[ResultRow]) -> Figure:
    """Robust accuracy from attack rows; with several attacks on the same input, the input is
    robust only if no attack broke it (the strongest combined attack)."""
    by_idx: dict[int, bool] = {}
    for r in rows:
        by_idx[r.idx] = by_idx.get(r.idx, True) and r.status == "robust"
    return Figure.from_counts(sum(by_idx.values()), len(by_idx))


def clean_figure(rows: Iterable[ResultRow]) -> Figure:
    by_idx: dict[int, bool] = {}
    for r in rows:
        if r.label is not None and r.prediction is not None:
            by_idx.setdefault(r.idx, r.label == r.prediction)
    return Figure.from_counts(sum(by_idx.values()), len(by_idx))


def attack_column(method: str) -> str:
    return ATTACK_COLUMNS.get(method, method)


def published_column(attack: str) -> str:
    """The board column of a published row's attack ("AutoAttack+ (full AA+)" -> AutoAttack+)."""
    a = attack.strip()
    for prefix, col in (("AutoAttack+", "AutoAttack+"), ("AutoAttack", "AutoAttack"), ("PGD", "PGD"), ("Wasserstein", "Wasserstein")):
        if a.startswith(prefix):
            return col
    return a or "Robust"


@dataclass(frozen=True)
class BoardRow:
    source: str  # "ours" or "paper"
    model: str  # architecture / training label ("" = unknown)
    defense: str  # our checkpoint file (short sha), or the paper's defense
    ckpt_sha: str
    cells: tuple[tuple[str, Figure], ...]  # (column, figure) for the columns this row has
    note: str = ""
    rank: int = 0

    def cell(self, column: str) -> Figure:
        return dict(self.cells).get(column, Figure())


@dataclass(frozen=True)
class Board:
    setting: Setting
    columns: tuple[str, ...]
    rows: tuple[BoardRow, ...]


@dataclass(frozen=True)
class OtherRows:
    """Stored rows that are on no board (other kinds, e.g. VNN-COMP instances), summarized."""

    kind: str
    dataset: str
    norm: str
    eps: float
    method: str
    n: int  # rows
    statuses: str  # e.g. "sat 3, unsat 5"


@dataclass(frozen=True)
class Report:
    boards: tuple[Board, ...]
    other: tuple[OtherRows, ...] = ()
    hidden: tuple[Setting, ...] = field(default=(), compare=False)  # boards left out by a filter


def _rank_key(r: BoardRow) -> tuple:
    def neg(f: Figure) -> float:
        v = f.sort_value
        return -(v if v is not None else -1.0)

    robust = r.cell(ROBUST)
    if not robust.text:  # rows with one attack column: that column
        attacks = [f for c, f in r.cells if c not in (VERIFIED, CLEAN, ROBUST) and f.sort_value is not None]
        robust = min(attacks, key=lambda f: f.sort_value) if attacks else Figure()
    return (neg(r.cell(VERIFIED)), neg(robust), neg(r.cell(CLEAN)), r.source != "ours", r.defense, r.ckpt_sha)


def board_columns(rows: Iterable[BoardRow]) -> tuple[str, ...]:
    """A board's columns: those its rows have, verified first, the attacks, robust (all attacks), clean."""
    present = {c for r in rows for c, _ in r.cells}
    known = [c for c in COLUMN_ORDER if c in present]
    extra = sorted(present - set(COLUMN_ORDER) - {ROBUST, CLEAN})
    return tuple(known + extra + ([ROBUST] if ROBUST in present else []) + ([CLEAN] if CLEAN in present else []))


def our_row(ck: CheckpointRows, s: Setting, flagged: Mapping[tuple[str, str, float], str] | None = None) -> BoardRow | None:
    """The board row of one checkpoint at setting ``s`` (None when it has no rows there)."""
    ver = ck.select("verify", s.threat, s.eps)
    att = ck.select("attack", s.threat, s.eps)
    if not ver and not att:
        return None
    cells: list[tuple[str, Figure]] = []
    notes: list[str] = []
    if ver:
        cells.append((VERIFIED, verified_figure(ver)))
        undecided = undecided_counts(ver)
        if undecided:
            notes.append("not decided: " + ", ".join(f"{k} {v}" for k, v in sorted(undecided.items())))
        methods = sorted({r.method for r in ver})
        notes.append("verify: " + "+".join(methods))
    by_method: dict[str, list[ResultRow]] = defaultdict(list)
    for r in att:
        by_method[attack_column(r.method)].append(r)
    for col in sorted(by_method):
        cells.append((col, attack_figure(by_method[col])))
    if len(by_method) > 1:
        cells.append((ROBUST, attack_figure(att)))
    cells.append((CLEAN, clean_figure(ver + att)))
    flag = (flagged or {}).get((ck.ckpt_sha, s.threat, s.eps))
    if flag:
        notes.insert(0, flag)
    return BoardRow("ours", ck.model or "", ck.name, ck.ckpt_sha, tuple(cells), "; ".join(notes))


def _published_setting(p: PublishedRow) -> Setting:
    from robustbench_mr.utils.eps import parse_eps

    try:
        eps = parse_eps(p.eps, max_value=None)
    except UserError as exc:
        raise UserError(f"published numbers: {p.defense!r} (table {p.table}): {exc}") from None
    return Setting(PAPER_DATASET, PAPER_SPLIT, p.threat, canonical_eps(eps))


def published_rows(pub: Iterable[PublishedRow]) -> dict[Setting, list[BoardRow]]:
    """The paper's rows per setting; one row per (table, defense), its attack in its own column."""
    merged: dict[Setting, dict[tuple[int, str], dict]] = defaultdict(dict)
    for p in pub:
        s = _published_setting(p)
        m = merged[s].setdefault((p.table, p.defense), {"cells": {}, "notes": [], "clean": ""})
        if p.verified_pct:
            m["cells"][VERIFIED] = Figure(p.verified_pct)
        if p.robust_pct:
            m["cells"][published_column(p.attack)] = Figure(p.robust_pct)
        if p.clean_pct:
            m["clean"] = p.clean_pct
        m["notes"].append(p.note)
    out: dict[Setting, list[BoardRow]] = {}
    for s, rows in merged.items():
        out[s] = []
        for (table, defense), m in rows.items():
            cells = list(m["cells"].items()) + ([(CLEAN, Figure(m["clean"]))] if m["clean"] else [])
            note = "; ".join([f"Table {table}"] + [n for n in m["notes"] if n])
            out[s].append(BoardRow("paper", "", defense, "", tuple(cells), note))
    return out


def build_boards(groups: list[CheckpointRows], published: Iterable[PublishedRow],
                 flagged: Mapping[tuple[str, str, float], str] | None = None) -> list[Board]:
    """One ranked board per setting that has our rows or the paper's."""
    ours: dict[Setting, list[BoardRow]] = defaultdict(list)
    for ck in groups:
        for s in ck.settings():
            row = our_row(ck, s, flagged)
            if row is not None:
                ours[s].append(row)
    paper = published_rows(published)
    boards = []
    for s in sorted(set(ours) | set(paper), key=Setting.sort_key):
        rows = sorted(ours.get(s, []) + paper.get(s, []), key=_rank_key)
        columns = board_columns(rows)
        ranked = tuple(BoardRow(r.source, r.model, r.defense, r.ckpt_sha, tuple((c, r.cell(c)) for c in columns if c in dict(r.cells)),
                                r.note, i) for i, r in enumerate(rows, start=1))
        boards.append(Board(s, columns, ranked))
    return boards


def other_rows(rows: Iterable[ResultRow]) -> list[OtherRows]:
    """Summaries of the rows that no board shows (kinds other than verify / attack)."""
    by: dict[tuple[str, str, str, float, str], Counter] = defaultdict(Counter)
    for r in rows:
        if r.kind not in BOARD_KINDS:
            by[(r.kind, r.dataset, r.norm, canonical_eps(r.eps), r.method)][r.status] += 1
    return [OtherRows(k, d, nm, e, m, sum(c.values()), ", ".join(f"{s} {n}" for s, n in sorted(c.items())))
            for (k, d, nm, e, m), c in sorted(by.items())]


def build_report(db: ResultsDB, published: Iterable[PublishedRow], *, dataset: str | None = None, threat: str | None = None,
                 eps: float | None = None, flagged: Mapping[tuple[str, str, float], str] | None = None,
                 groups: list[CheckpointRows] | None = None) -> Report:
    """Every board (or those matching ``dataset`` / ``threat`` / ``eps``; the others are listed in
    ``hidden``) and, always, the summary of rows on no board. A filter that matches no board is a UserError
    naming the settings that exist."""
    groups = group_by_checkpoint(db) if groups is None else groups
    boards = build_boards(groups, published, flagged)
    shown = [b for b in boards if b.setting.matches(dataset, threat, eps)]
    hidden = tuple(b.setting for b in boards if b not in shown)
    if not shown:
        wanted = " ".join(x for x in (f"--dataset {dataset}" if dataset else "", f"--threat {threat}" if threat else "",
                                       f"--eps {eps_text(eps)}" if eps is not None else "") if x)
        have = "; ".join(s.title for s in hidden) or "none"
        raise UserError(f"no board matches {wanted or 'the filter'}; boards with results: {have}")
    return Report(tuple(shown), tuple(other_rows(db.rows())), hidden)


def slug(column: str) -> str:
    """A CSV header for a column: ``AutoAttack+`` -> ``autoattack_plus``, ``Robust (all attacks)`` -> ``robust``."""
    if column == ROBUST:
        return "robust"
    return re.sub(r"[^a-z0-9]+", "_", column.lower().replace("+", "_plus")).strip("_")
