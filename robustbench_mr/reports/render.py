"""Pure renderers: boards (``tables.Report``) -> markdown / CSV text, and the report CSV back to
boards, so a report can be re-rendered from a saved CSV. No I/O, no database access here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from robustbench_mr.reports.tables import Board, BoardRow, Figure, OtherRows, Report, Setting, board_columns, eps_text, slug

CSV_FIELDS = ("section", "dataset", "split", "threat", "eps", "eps_text", "rank", "source", "model", "defense", "ckpt_sha", "note",
              "column", "value", "n")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_figure(f: Figure) -> str:
    if not f.text:
        return "–"
    return f"{f.text} (n={f.n})" if f.n is not None else f.text


def render_board_markdown(board: Board) -> str:
    """One board: a heading naming its setting, then its rows in rank order, each figure with its n."""
    head = ["#", "Source", "Model", "Defense", *board.columns, "Note"]
    lines = [f"### {board.setting.title}", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in board.rows:
        cells = [str(r.rank), r.source, _md_escape(r.model) or "–", _md_escape(r.defense),
                 *(_md_figure(r.cell(c)) for c in board.columns), _md_escape(r.note) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_other_markdown(other: Sequence[OtherRows]) -> str:
    """The rows on no board (other kinds of results), one line per group."""
    if not other:
        return ""
    head = ["Kind", "Dataset / benchmark", "Norm", "Eps", "Method", "Rows", "Statuses"]
    lines = ["### Other stored results (on no board)", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for o in other:
        lines.append("| " + " | ".join(_md_escape(c) for c in (o.kind, o.dataset, o.norm, eps_text(o.eps), o.method, str(o.n), o.statuses)) + " |")
    return "\n".join(lines) + "\n"


def render_hidden(hidden: Sequence[Setting]) -> str:
    """One line naming the boards a filter left out ('' when none)."""
    if not hidden:
        return ""
    return f"{len(hidden)} more board(s) not shown (filtered out): " + "; ".join(s.title for s in hidden)


def render_markdown(report: Report) -> str:
    """Every board, then the other stored results."""
    parts = [render_board_markdown(b) for b in report.boards]
    other = render_other_markdown(report.other)
    if other:
        parts.append(other)
    return "\n".join(parts)


def render_csv(report: Report) -> str:
    """Long-format CSV: one line per figure of every board row, then one per other-results group."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for b in report.boards:
        s = b.setting
        for r in b.rows:
            for col in b.columns:
                f = r.cell(col)
                if f.text:
                    w.writerow(["board", s.dataset, s.split, s.threat, repr(s.eps), eps_text(s.eps), r.rank, r.source, r.model, r.defense,
                                r.ckpt_sha, r.note, col, f.text, "" if f.n is None else f.n])
    for o in report.other:
        w.writerow(["other", o.dataset, "", o.norm, repr(o.eps), eps_text(o.eps), "", o.kind, "", o.method, "", "", "statuses", o.statuses, o.n])
    return buf.getvalue()


def parse_csv(text: str) -> Report:
    """Inverse of :func:`render_csv` (up to ``hidden``, which the CSV does not carry)."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_FIELDS:
        raise ValueError(f"not a report CSV: expected columns {', '.join(CSV_FIELDS)}")
    boards: dict[Setting, dict] = {}
    other = []
    for rec in reader:
        if rec["section"] == "other":
            other.append(OtherRows(rec["source"], rec["dataset"], rec["threat"], float(rec["eps"]), rec["defense"], int(rec["n"]), rec["value"]))
            continue
        s = Setting(rec["dataset"], rec["split"], rec["threat"], float(rec["eps"]))
        b = boards.setdefault(s, {"rows": {}})
        row = b["rows"].setdefault(int(rec["rank"]), {"meta": rec, "cells": []})
        row["cells"].append((rec["column"], Figure(rec["value"], int(rec["n"]) if rec["n"] else None)))
    out = []
    for s, b in boards.items():
        rows = tuple(
            BoardRow(m["source"], m["model"], m["defense"], m["ckpt_sha"], tuple(r["cells"]), m["note"], rank)
            for rank, r in sorted(b["rows"].items()) for m in [r["meta"]]
        )
        out.append(Board(s, board_columns(rows), rows))
    return Report(tuple(out), tuple(other))


def leaderboard_columns(report: Report) -> tuple[str, ...]:
    """The wide CSV's figure columns: those of any board, in the boards' order (verified, attacks,
    robust (all attacks), clean)."""
    return board_columns([r for b in report.boards for r in b.rows])


def render_leaderboard_csv(report: Report) -> str:
    """Wide CSV, one line per board row: the setting, rank, source, model, defense, then each
    figure column and its n (``verified``, ``verified_n``, ``pgd``, ...), note and sha."""
    cols = leaderboard_columns(report)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "split", "threat", "eps", "rank", "source", "model", "defense",
                *(x for c in cols for x in (slug(c), f"{slug(c)}_n")), "note", "ckpt_sha"])
    for b in report.boards:
        s = b.setting
        for r in b.rows:
            figs = [r.cell(c) for c in cols]
            w.writerow([s.dataset, s.split, s.threat, eps_text(s.eps), r.rank, r.source, r.model, r.defense,
                        *(x for f in figs for x in (f.text, "" if f.n is None else f.n)), r.note, r.ckpt_sha])
    return buf.getvalue()


def render_leaderboard_markdown(report: Report) -> str:
    """The leaderboards page: one ranked board per setting, then the other stored results."""
    intro = ("# Leaderboards\n\nOne board per (dataset, threat model, eps); rows ranked within a board by verified, "
             "then robust (all attacks), then clean accuracy. Each figure is a percentage of the n inputs behind it; "
             "the paper's rows (Jin & Rinard 2020, CIFAR-10 test set) appear only on the board of their setting.\n")
    return intro + "\n" + render_markdown(report)
