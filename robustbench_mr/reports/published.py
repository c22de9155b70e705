"""The paper's published numbers (Jin & Rinard 2020, Tables 1-2, CIFAR-10).

The CSV is package data (``robustbench_mr/reports/data/published.csv``, with ``SOURCE.md``
beside it), read through ``importlib.resources`` so that an installed wheel finds it as well as
a checkout. ``--published PATH`` reads another file with the same columns instead.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from robustbench_mr.errors import UserError

PACKAGE = "robustbench_mr.reports"
RESOURCE = ("data", "published.csv")
FIELDS = ("table", "mechanism", "defense", "threat", "eps", "verified_pct", "robust_pct", "clean_pct", "attack", "note", "source")
PAPER_DATASET = "cifar10"  # both tables are CIFAR-10 test-set results (see data/SOURCE.md)
PAPER_SPLIT = "test"


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


def published_resource():  # noqa: ANN201 - an importlib.resources Traversable
    """The packaged CSV as an ``importlib.resources`` Traversable (a file in a checkout or an
    installed wheel, a zip member when imported from a zip)."""
    res = resources.files(PACKAGE)
    for part in RESOURCE:
        res = res.joinpath(part)
    return res


def published_text() -> str:
    """The packaged CSV's text."""
    return published_resource().read_text(encoding="utf-8")


def load_published(path: str | Path | None = None) -> list[PublishedRow]:
    """The published rows: from ``path`` if given, else from the package data."""
    if path is None:
        where = f"{PACKAGE.replace('.', '/')}/{'/'.join(RESOURCE)} (package data)"
        try:
            text = published_text()
        except (FileNotFoundError, OSError) as exc:
            raise UserError(f"{where}: the published numbers are missing from this installation ({exc.__class__.__name__}); "
                            "reinstall robustbench_mr or pass --published PATH") from None
    else:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise UserError(f"{p}: published numbers not found; pass --published PATH (a CSV with columns {', '.join(FIELDS)})")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{p}: cannot read the published numbers ({exc.__class__.__name__}: {exc}); pass another --published") from None
    return parse_published(text, where)


def parse_published(text: str, where: str = "published.csv") -> list[PublishedRow]:
    """Rows of a published-numbers CSV; one-line ``UserError`` naming ``where`` and the line otherwise."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{where}: missing columns {missing}; expected {', '.join(FIELDS)}")
    out = []
    for line, rec in enumerate(reader, start=2):
        try:
            table = int(rec["table"])
        except (TypeError, ValueError):
            raise UserError(f"{where}:{line}: table {rec['table']!r} is not 1 or 2") from None
        if any(rec[f] is None for f in FIELDS):
            raise UserError(f"{where}:{line}: too few fields; expected {len(FIELDS)} ({', '.join(FIELDS)})")
        out.append(PublishedRow(table, *(rec[f].strip() for f in FIELDS[1:])))
    return out
