"""Tables 1 and 2 as data, built from the results database (and the published rows).

Table 1 (L-inf, 8/255 by default): Verified / Robust (PGD) / Clean.
Table 2: L2 0.5 AutoAttack / L-inf 8/255 AutoAttack / Wasserstein 0.1 / Clean.

Every figure carries the number of test inputs behind it (``n``). Definitions:
verified = inputs with a ``verified`` verify row (any bound method) / inputs with a verify row;
robust = ``robust`` attack rows / attack rows; clean = rows whose clean prediction equals the
label, over all inputs behind the table row. A timeout counts as not verified.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robustbench_mr.reports.published import PublishedRow
from robustbench_mr.results_db import ResultRow, ResultsDB
from robustbench_mr.utils.eps import format_eps

TABLE1_COLUMNS = ("Verified", "Robust (PGD)", "Clean")
TABLE2_COLUMNS = ("L2 AA", "Linf AA", "Wasserstein", "Clean")


@dataclass(frozen=True)
class ThreatSettings:
    linf_eps: float = 8 / 255
    l2_eps: float = 0.5
    wasserstein_eps: float = 0.1


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


@dataclass(frozen=True)
class TableRow:
    source: str  # "ours" or "paper"
    defense: str
    dataset: str
    ckpt_sha: str
    figures: tuple[Figure, ...]
    note: str = ""


@dataclass(frozen=True)
class Table:
    number: int
    title: str
    columns: tuple[str, ...]
    rows: tuple[TableRow, ...] = field(default_factory=tuple)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


@dataclass(frozen=True)
class CheckpointRows:
    """All verify / attack rows of one checkpoint on one dataset split."""

    ckpt_sha: str
    ckpt_path: str
    dataset: str
    split: str
    rows: tuple[ResultRow, ...]

    @property
    def name(self) -> str:
        return f"{Path(self.ckpt_path).name} ({self.ckpt_sha[:8]})"

    def select(self, kind: str, norm: str, eps: float, methods: tuple[str, ...] | None = None) -> list[ResultRow]:
        return [
            r for r in self.rows
            if r.kind == kind and r.norm == norm and _close(r.eps, eps) and (methods is None or r.method in methods)
        ]


def group_by_checkpoint(db: ResultsDB) -> list[CheckpointRows]:
    groups: dict[tuple[str, str, str], list[ResultRow]] = defaultdict(list)
    for kind in ("verify", "attack"):
        for r in db.rows(kind=kind):
            groups[(r.ckpt_sha, r.dataset, r.split)].append(r)
    out = []
    for (sha, ds, split), rows in sorted(groups.items()):
        latest = max(rows, key=lambda r: r.created)
        out.append(CheckpointRows(sha, latest.ckpt_path, ds, split, tuple(rows)))
    return out


def verified_figure(rows: list[ResultRow]) -> Figure:
    by_idx: dict[int, bool] = {}
    for r in rows:
        by_idx[r.idx] = by_idx.get(r.idx, False) or r.status == "verified"
    return Figure.from_counts(sum(by_idx.values()), len(by_idx))


def attack_figure(rows: list[ResultRow]) -> tuple[Figure, str]:
    """Robust accuracy from attack rows; with several attacks on the same input, the input is
    robust only if no attack broke it (the strongest combined attack)."""
    by_idx: dict[int, bool] = {}
    for r in rows:
        by_idx[r.idx] = by_idx.get(r.idx, True) and r.status == "robust"
    methods = sorted({r.method for r in rows})
    return Figure.from_counts(sum(by_idx.values()), len(by_idx)), "+".join(methods)


def clean_figure(rows: list[ResultRow]) -> Figure:
    by_idx: dict[int, bool] = {}
    for r in rows:
        if r.label is not None and r.prediction is not None:
            by_idx.setdefault(r.idx, r.label == r.prediction)
    return Figure.from_counts(sum(by_idx.values()), len(by_idx))


def _aa_rows(ck: CheckpointRows, norm: str, eps: float) -> list[ResultRow]:
    # AA+ is what the paper reports; fall back to standard AutoAttack when AA+ was not run
    plus = ck.select("attack", norm, eps, ("autoattack-plus",))
    return plus or ck.select("attack", norm, eps, ("autoattack",))


def table1_ours(groups: list[CheckpointRows], s: ThreatSettings) -> list[TableRow]:
    out = []
    for ck in groups:
        ver = ck.select("verify", "linf", s.linf_eps)
        pgd = ck.select("attack", "linf", s.linf_eps, ("pgd",))
        if not ver and not pgd:
            continue
        pgd_fig, _ = attack_figure(pgd)
        out.append(TableRow("ours", ck.name, ck.dataset, ck.ckpt_sha, (verified_figure(ver), pgd_fig, clean_figure(ver + pgd)), ""))
    return out


def table2_ours(groups: list[CheckpointRows], s: ThreatSettings) -> list[TableRow]:
    out = []
    for ck in groups:
        l2, linf = _aa_rows(ck, "l2", s.l2_eps), _aa_rows(ck, "linf", s.linf_eps)
        wass = ck.select("attack", "wasserstein", s.wasserstein_eps, ("wasserstein",))
        if not (l2 or linf or wass):
            continue
        (f_l2, m_l2), (f_linf, m_linf), (f_w, _) = attack_figure(l2), attack_figure(linf), attack_figure(wass)
        methods = sorted({m for m in (m_l2, m_linf) if m})
        out.append(TableRow("ours", ck.name, ck.dataset, ck.ckpt_sha, (f_l2, f_linf, f_w, clean_figure(l2 + linf + wass)), "AA: " + ", ".join(methods) if methods else ""))
    return out


def table1_published(pub: list[PublishedRow]) -> list[TableRow]:
    return [
        TableRow("paper", p.defense, "cifar10", "", (Figure(p.verified_pct), Figure(p.robust_pct), Figure(p.clean_pct)), p.note)
        for p in pub if p.table == 1
    ]


def table2_published(pub: list[PublishedRow]) -> list[TableRow]:
    cols = {("l2", "0.5"): 0, ("linf", "8/255"): 1, ("wasserstein", "0.1"): 2}
    merged: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = defaultdict(list)
    order: list[str] = []
    for p in pub:
        if p.table != 2:
            continue
        if p.defense not in merged:
            merged[p.defense] = ["", "", "", p.clean_pct]
            order.append(p.defense)
        c = cols.get((p.threat, p.eps))
        if c is not None:
            merged[p.defense][c] = p.robust_pct
        notes[p.defense].append(f"{p.threat} {p.eps}: {p.attack}" + (f" ({p.note})" if p.note else ""))
    return [TableRow("paper", d, "cifar10", "", tuple(Figure(t) for t in merged[d]), "; ".join(notes[d])) for d in order]


def build_tables(db: ResultsDB, published: list[PublishedRow], settings: ThreatSettings = ThreatSettings()) -> tuple[Table, Table]:
    groups = group_by_checkpoint(db)
    e, l2, w = format_eps(settings.linf_eps), format_eps(settings.l2_eps), format_eps(settings.wasserstein_eps)
    t1 = Table(1, f"Table 1: L-inf {e} (verified, PGD-robust and clean accuracy, %)", TABLE1_COLUMNS,
               tuple(table1_ours(groups, settings) + table1_published(published)))
    t2 = Table(2, f"Table 2: AutoAttack L2 {l2}, AutoAttack L-inf {e}, Wasserstein {w}, clean accuracy (%)", TABLE2_COLUMNS,
               tuple(table2_ours(groups, settings) + table2_published(published)))
    return t1, t2


def table_frame(table: Table) -> pd.DataFrame:
    """A wide DataFrame: one line per table row; each column with its ``n``."""
    records = []
    for r in table.rows:
        rec = {"table": table.number, "source": r.source, "defense": r.defense, "dataset": r.dataset, "ckpt_sha": r.ckpt_sha}
        for col, f in zip(table.columns, r.figures):
            rec[col] = f.value
            rec[f"{col} n"] = f.n
        rec["note"] = r.note
        records.append(rec)
    return pd.DataFrame.from_records(records)


@dataclass(frozen=True)
class LeaderboardEntry:
    source: str
    defense: str
    dataset: str
    ckpt_sha: str
    verified: Figure
    robust_pgd: Figure
    clean: Figure
    linf_aa: Figure
    l2_aa: Figure
    wasserstein: Figure


def leaderboard(t1: Table, t2: Table) -> list[LeaderboardEntry]:
    """Every Table 1 row (ours and the paper's), with Table 2 figures where the same defense
    appears there, then the defenses only in Table 2; sorted by verified, then PGD-robust accuracy (missing values last)."""
    t2_by_key = {(r.source, r.defense, r.ckpt_sha): r for r in t2.rows}
    entries = []
    for r in t1.rows:
        other = t2_by_key.get((r.source, r.defense, r.ckpt_sha))
        l2, linf, wass = (other.figures[0], other.figures[1], other.figures[2]) if other else (Figure(), Figure(), Figure())
        entries.append(LeaderboardEntry(r.source, r.defense, r.dataset, r.ckpt_sha, r.figures[0], r.figures[1], r.figures[2], linf, l2, wass))
    t1_keys = {(r.source, r.defense, r.ckpt_sha) for r in t1.rows}
    for r in t2.rows:  # defenses that only appear in Table 2
        if (r.source, r.defense, r.ckpt_sha) not in t1_keys:
            entries.append(LeaderboardEntry(r.source, r.defense, r.dataset, r.ckpt_sha, Figure(), Figure(), r.figures[3], r.figures[1], r.figures[0], r.figures[2]))

    def key(e: LeaderboardEntry) -> tuple[float, float]:
        v, rb = e.verified.value, e.robust_pgd.value
        return (-(v if v is not None else -1.0), -(rb if rb is not None else -1.0))

    return sorted(entries, key=key)
