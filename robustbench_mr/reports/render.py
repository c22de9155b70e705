"""Pure renderers: table data -> markdown / CSV text (and CSV text -> table data, so a report
can be re-rendered from a saved CSV). No I/O, no database access here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from robustbench_mr.reports.tables import Figure, LeaderboardEntry, Table, TableRow

CSV_FIELDS = ("table", "title", "row", "source", "defense", "dataset", "ckpt_sha", "note", "column", "value", "n")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_figure(f: Figure) -> str:
    if not f.text:
        return "–"
    return f"{f.text} (n={f.n})" if f.n is not None else f.text


def render_markdown(table: Table) -> str:
    """A GitHub markdown table; our rows first, then the paper's, each figure with its n."""
    head = ["Source", "Defense", "Dataset", *table.columns, "Note"]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in table.rows:
        cells = [r.source, _md_escape(r.defense), r.dataset, *(_md_figure(f) for f in r.figures), _md_escape(r.note)]
        lines.append("| " + " | ".join(cells) + " |")
    if not table.rows:
        lines.append("| (no rows) |" + " |" * (len(head) - 1))
    return "\n".join(lines) + "\n"


def render_csv(tables: Sequence[Table]) -> str:
    """Long-format CSV: one line per figure (table, row, column, value as printed, n)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for t in tables:
        for i, r in enumerate(t.rows):
            for col, f in zip(t.columns, r.figures):
                w.writerow([t.number, t.title, i, r.source, r.defense, r.dataset, r.ckpt_sha, r.note, col, f.text, "" if f.n is None else f.n])
    return buf.getvalue()


def parse_csv(text: str) -> tuple[Table, ...]:
    """Inverse of :func:`render_csv` (tables with no rows are not represented in the CSV)."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_FIELDS:
        raise ValueError(f"not a report CSV: expected columns {', '.join(CSV_FIELDS)}")
    tables: dict[int, dict] = {}
    for rec in reader:
        t = tables.setdefault(int(rec["table"]), {"title": rec["title"], "columns": [], "rows": {}})
        if rec["column"] not in t["columns"]:
            t["columns"].append(rec["column"])
        row = t["rows"].setdefault(int(rec["row"]), {"meta": rec, "figures": []})
        row["figures"].append(Figure(rec["value"], int(rec["n"]) if rec["n"] else None))
    out = []
    for number in sorted(tables):
        t = tables[number]
        rows = tuple(
            TableRow(m["source"], m["defense"], m["dataset"], m["ckpt_sha"], tuple(r["figures"]), m["note"])
            for _, r in sorted(t["rows"].items()) for m in [r["meta"]]
        )
        out.append(Table(number, t["title"], tuple(t["columns"]), rows))
    return tuple(out)


LEADERBOARD_COLUMNS = ("rank", "source", "defense", "dataset", "verified", "robust_pgd", "linf_aa", "l2_aa", "wasserstein", "clean", "n", "ckpt_sha")


def _leader_cells(rank: int, e: LeaderboardEntry) -> list[str]:
    n = e.verified.n if e.verified.n is not None else e.robust_pgd.n if e.robust_pgd.n is not None else e.clean.n
    return [str(rank), e.source, e.defense, e.dataset, e.verified.text, e.robust_pgd.text, e.linf_aa.text, e.l2_aa.text,
            e.wasserstein.text, e.clean.text, "" if n is None else str(n), e.ckpt_sha]


def render_leaderboard_csv(entries: Sequence[LeaderboardEntry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LEADERBOARD_COLUMNS)
    for i, e in enumerate(entries, start=1):
        w.writerow(_leader_cells(i, e))
    return buf.getvalue()


def render_leaderboard_markdown(entries: Sequence[LeaderboardEntry]) -> str:
    head = ["#", "Source", "Defense", "Dataset", "Verified", "Robust (PGD)", "Linf AA", "L2 AA", "Wasserstein", "Clean", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, e in enumerate(entries, start=1):
        cells = _leader_cells(i, e)[:-1]
        lines.append("| " + " | ".join(_md_escape(c) if c else "–" for c in cells) + " |")
    return "\n".join(lines) + "\n"
