"""The SQLite results database shared by verification, attacks and VNN-COMP runs.

One row per (kind, checkpoint, dataset, split, index, norm, eps, method), written as soon as
an input is decided, so a killed run loses nothing and a rerun skips decided rows. WAL mode
and a busy timeout make several writers safe; writes happen in the parent process (workers
return results), which keeps one writer at a time per run anyway.

Every row records how it was made: eps, seed, timeout, solver and its version, the package
version, and the time it was written. Kind-specific extras (unstable ReLUs, binaries,
solver gap, counterexample path...) go into the ``details`` JSON column.
"""

from __future__ import annotations

import json
import sqlite3
import datetime as _dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_mr import __version__
from robustbench_mr.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    kind TEXT NOT NULL,            -- verify | attack | vnncomp | clean
    ckpt_sha TEXT NOT NULL,        -- sha256 of the checkpoint / onnx file
    ckpt_path TEXT NOT NULL,
    dataset TEXT NOT NULL,         -- dataset name, or VNN-COMP benchmark name
    split TEXT NOT NULL,           -- test | train | the vnnlib file for vnncomp
    idx INTEGER NOT NULL,          -- input index (0 for vnncomp rows)
    norm TEXT NOT NULL,            -- linf | l2 | wasserstein | vnnlib
    eps REAL NOT NULL,
    method TEXT NOT NULL,          -- verify: bound method; attack: attack name
    status TEXT NOT NULL,          -- verified|falsified|timeout|error|unknown|not_robust; robust|broken; sat|unsat|...
    label INTEGER,
    prediction INTEGER,
    seconds REAL,
    seed INTEGER,
    timeout REAL,
    solver TEXT,
    solver_version TEXT,
    package_version TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    PRIMARY KEY (kind, ckpt_sha, dataset, split, idx, norm, eps, method)
);
"""

COLUMNS = (
    "kind", "ckpt_sha", "ckpt_path", "dataset", "split", "idx", "norm", "eps", "method", "status",
    "label", "prediction", "seconds", "seed", "timeout", "solver", "solver_version",
    "package_version", "details", "created",
)


@dataclass(frozen=True)
class ResultRow:
    kind: str
    ckpt_sha: str
    ckpt_path: str
    dataset: str
    split: str
    idx: int
    norm: str
    eps: float
    method: str
    status: str
    label: int | None = None
    prediction: int | None = None
    seconds: float | None = None
    seed: int | None = None
    timeout: float | None = None
    solver: str | None = None
    solver_version: str | None = None
    package_version: str = __version__
    details: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def as_tuple(self) -> tuple:
        created = self.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        vals = []
        for c in COLUMNS:
            v = getattr(self, c)
            if c == "details":
                v = json.dumps(v, sort_keys=True, default=str)
            elif c == "created":
                v = created
            vals.append(v)
        return tuple(vals)


def _row_from_sqlite(r: sqlite3.Row) -> ResultRow:
    d = dict(r)
    d["details"] = json.loads(d.get("details") or "{}")
    return ResultRow(**d)


class ResultsDB:
    """A thin wrapper around one SQLite file. Use as a context manager or call close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=60000")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a usable results database ({exc}); pass another --db") from None

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def put(self, row: ResultRow) -> None:
        """Insert or replace one row and commit at once (nothing decided is ever lost)."""
        placeholders = ",".join("?" * len(COLUMNS))
        with self.conn:
            self.conn.execute(f"INSERT OR REPLACE INTO results ({','.join(COLUMNS)}) VALUES ({placeholders})", row.as_tuple())

    def put_many(self, rows: Iterable[ResultRow]) -> None:
        placeholders = ",".join("?" * len(COLUMNS))
        with self.conn:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO results ({','.join(COLUMNS)}) VALUES ({placeholders})", [r.as_tuple() for r in rows]
            )

    def rows(self, **where: Any) -> list[ResultRow]:
        """All rows matching the given column values (e.g. kind='verify', ckpt_sha=...)."""
        bad = [k for k in where if k not in COLUMNS]
        if bad:
            raise ValueError(f"unknown columns {bad}")
        sql = "SELECT * FROM results"
        params: list[Any] = []
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
            params = list(where.values())
        sql += " ORDER BY kind, ckpt_sha, dataset, split, norm, eps, method, idx"
        return [_row_from_sqlite(r) for r in self.conn.execute(sql, params)]

    def decided_indices(self, statuses: Iterable[str], **where: Any) -> set[int]:
        """Indices already written with one of ``statuses`` (for resuming)."""
        wanted = set(statuses)
        return {r.idx for r in self.rows(**where) if r.status in wanted}


@contextmanager
def open_db(path: str | Path) -> Iterator[ResultsDB]:
    db = ResultsDB(path)
    try:
        yield db
    finally:
        db.close()
