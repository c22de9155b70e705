"""The paper's published numbers (``results/published.csv``: Jin & Rinard 2020, Tables 1-2)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from robustbench_mr.errors import UserError

DEFAULT_PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "published.csv"
FIELDS = ("table", "mechanism", "defense", "threat", "eps", "verified_pct", "robust_pct", "clean_pct", "attack", "note", "source")


@dataclass(frozen=True)
class PublishedRow:
    """One line of the published tables; percentages kept as the paper prints them (``<5.0``)."""

    table: int
    mechanism: str
    defense: str
    threat: str
    eps: str
    verified_pct: str
    robust_pct: str
    clean_pct: str
    attack: str
    note: str
    source: str


def load_published(path: str | Path | None = None) -> list[PublishedRow]:
    p = Path(path) if path is not None else DEFAULT_PUBLISHED
    if not p.is_file():
        raise UserError(f"{p}: published numbers not found; pass --published PATH (a copy of the paper's published.csv)")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{p}: missing columns {missing}; expected {', '.join(FIELDS)}")
        out = []
        for line, rec in enumerate(reader, start=2):
            try:
                table = int(rec["table"])
            except ValueError:
                raise UserError(f"{p}:{line}: table {rec['table']!r} is not 1 or 2") from None
            out.append(PublishedRow(table, *(rec[f].strip() for f in FIELDS[1:])))
    return out
