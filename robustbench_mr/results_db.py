"""The SQLite results database shared by verification, attacks and VNN-COMP runs.

One row per (kind, checkpoint, dataset, split, index, norm, eps, method), written as soon as
an input is decided, so a killed run loses nothing and a rerun skips decided rows. WAL mode
and a busy timeout make several writers safe; writes happen in the parent process (workers
return results), which keeps one writer at a time per run anyway.

Every row records how it was made: eps, seed, timeout, solver and its version, the package
version, and the time it was written. ``split`` is the provenance of the inputs: ``test`` /
``train`` for the standard splits, or a slice such as ``test[5000:]`` (the held-out half of
``mr-train --train-from-test 5000``; ``robustbench_mr.utils.splits``), whose ``idx`` counts from
the slice's start; a row of a sliced split can never be read as a standard-split figure. Kind-specific extras (unstable ReLUs, binaries,
solver gap, counterexample path...) go into the ``details`` JSON column.

Resume is keyed on what was computed, not only on where it came from: ``input_sha`` is a digest
of the evaluated input itself (``input_digest``: its float32 pixels and its label) and
``config_sha`` one of the options that change a verdict but are not in the primary key
(``options_digest``; e.g. an attack's steps and restarts). A runner keeps a stored row only when
both match the current run (``ResultsDB.reusable_rows``); any other row is recomputed and
replaced (same primary key). Databases written before these columns existed still open: the
columns are added (``ALTER TABLE``) and their empty digests mean "unknown", so those rows are
recomputed.

``model`` names what was evaluated (``model_label`` of the checkpoint metadata: architecture, its
arguments and the training method, e.g. ``small / mr``), for the leaderboards' model column. A
verify or attack row written without one gets it from the checkpoint file it names, when that file
still has the row's sha256 (``checkpoint_model``, read once per file and database handle); rows of
older databases have NULL there and reports look the file up the same way, or show it as unknown.

Every way a ``--db`` can be unusable (a directory, a read-only file or folder, a file that is not
SQLite, a foreign table named ``results``) is one ``UserError`` line naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_mr import __version__
from robustbench_mr.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    kind TEXT NOT NULL,            -- verify | attack | vnncomp | clean
    ckpt_sha TEXT NOT NULL,        -- sha256 of the checkpoint / onnx file
    ckpt_path TEXT NOT NULL,
    dataset TEXT NOT NULL,         -- dataset name, or VNN-COMP benchmark name
    split TEXT NOT NULL,           -- test | train | a slice such as test[5000:] (utils/splits.py: not a standard split) | the vnnlib file for vnncomp
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
    input_sha TEXT,                -- input_digest() of the evaluated input; NULL: unknown (recompute)
    config_sha TEXT,               -- options_digest() of verdict-changing options outside the key
    model TEXT,                    -- model_label() of the checkpoint's metadata (architecture, training method); NULL: unknown
    PRIMARY KEY (kind, ckpt_sha, dataset, split, idx, norm, eps, method)
);
"""

# The columns of the first schema: a table named ``results`` without all of them is not ours.
BASE_COLUMNS = (
    "kind", "ckpt_sha", "ckpt_path", "dataset", "split", "idx", "norm", "eps", "method", "status",
    "label", "prediction", "seconds", "seed", "timeout", "solver", "solver_version",
    "package_version", "details", "created",
)
# Columns added since, with their SQL types: added to older databases when they are opened.
ADDED_COLUMNS: dict[str, str] = {"input_sha": "TEXT", "config_sha": "TEXT", "model": "TEXT"}
COLUMNS = BASE_COLUMNS + tuple(ADDED_COLUMNS)
DIGEST_HEX = 16  # hex digits kept of a sha256 (64 bits: collisions are not a practical concern)


def input_digest(x: Any, label: int) -> str:
    """Short sha256 of one evaluated input: its shape, its pixels as little-endian float32 in
    C order, and its label as int64. ``x`` is anything numpy can read (an array, a CPU tensor)."""
    a = np.ascontiguousarray(np.asarray(x, dtype="<f4"))
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.tobytes())
    h.update(np.asarray(int(label), dtype="<i8").tobytes())
    return h.hexdigest()[:DIGEST_HEX]


def options_digest(options: Mapping[str, Any]) -> str:
    """Short sha256 of verdict-changing options (a JSON-able mapping; key order does not matter)."""
    text = json.dumps(dict(options), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]


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
    input_sha: str | None = None
    config_sha: str | None = None
    model: str | None = None

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


def model_label(meta: Mapping[str, Any]) -> str | None:
    """A short name for the model a checkpoint's metadata describes: the architecture, its
    non-default arguments and the training method, e.g. ``small / mr`` or ``mlp(hidden=[40, 40]) / plain``."""
    arch = meta.get("arch")
    if not isinstance(arch, str) or not arch:
        return None
    kwargs = meta.get("arch_kwargs") or {}
    name = arch + (f"({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})" if isinstance(kwargs, Mapping) and kwargs else "")
    train = meta.get("train_config") or {}
    method = train.get("method") if isinstance(train, Mapping) else None
    return f"{name} / {method}" if isinstance(method, str) and method else name


def checkpoint_model(path: str | Path, sha: str) -> str | None:
    """``model_label`` of the checkpoint at ``path`` if that file exists and its sha256 is ``sha``
    (the file the row was made from), else None. Never raises: an unreadable file is unknown."""
    try:
        p = Path(path)
        if p.suffix != ".pt" or not p.is_file():
            return None
        from robustbench_mr.checkpoint import file_sha256, read_checkpoint_payload  # torch: only when a label is needed

        if file_sha256(p) != sha:
            return None
        meta = read_checkpoint_payload(p).get("metadata")
        return model_label(meta) if isinstance(meta, Mapping) else None
    except Exception:  # noqa: BLE001 - a label is optional; the row is written without one
        return None


def _row_from_sqlite(r: sqlite3.Row) -> ResultRow:
    d = {k: v for k, v in dict(r).items() if k in COLUMNS}  # columns a newer version added are ignored
    d["details"] = json.loads(d.get("details") or "{}")
    return ResultRow(**d)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def db_error(path: Path, exc: sqlite3.Error) -> UserError:
    """The one-line ``UserError`` for an SQLite failure on the database file ``path``: what is
    wrong with it and how to fix it (classified by SQLite's error name, then by permissions)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    folder = path.parent
    if name == "SQLITE_READONLY_DIRECTORY" or (name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) and not _writable(folder)):
        return UserError(f"{path}: its folder {folder} is not writable (SQLite writes its -wal and -shm files beside the database); "
                         f"make the folder writable (chmod u+w {folder}) or pass a --db in a writable folder")
    if name.startswith("SQLITE_READONLY"):
        return UserError(f"{path}: the results database is read-only ({exc}); make it writable (chmod u+w {path}) or pass another --db")
    if name == "SQLITE_NOTADB":
        return UserError(f"{path}: not an SQLite database ({exc}); pass another --db (a new file is created there) or move this file away")
    if name.startswith("SQLITE_CORRUPT"):
        return UserError(f"{path}: the results database is corrupt ({exc}); restore it from a backup or pass another --db")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return UserError(f"{path}: the results database stayed locked by another process ({exc}); wait for it to finish or pass another --db")
    if name.startswith("SQLITE_CANTOPEN"):
        return UserError(f"{path}: cannot open the results database ({exc}); check the path and its permissions or pass another --db")
    return UserError(f"{path}: not a usable results database ({exc}); pass another --db")


class ResultsDB:
    """A thin wrapper around one SQLite file. Use as a context manager or call close().

    Opening only needs read access (reports read read-only databases); a run that writes calls
    ``require_writable`` first, so a read-only file or folder stops it before any work. Every
    SQLite failure reaches the caller as one ``UserError`` line (``db_error``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, not a results database; pass a file path to --db, e.g. {self.path / 'results.sqlite'}")
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{self.path}: {folder} is a file, not a folder; pass a --db in a folder, e.g. {folder.parent / self.path.name}")
        if not folder.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{self.path}: cannot create its folder {folder} ({exc.strerror or exc}); pass a --db in a writable folder") from None
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0)
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None
        self.conn.row_factory = sqlite3.Row
        self._models: dict[tuple[str, str], str | None] = {}  # (ckpt_path, ckpt_sha) -> checkpoint_model
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self.conn.close()
            raise db_error(self.path, exc) from None
        except UserError:
            self.conn.close()
            raise

    def _columns(self) -> set[str]:
        return {r["name"] for r in self.conn.execute("PRAGMA table_info(results)")}

    def _prepare(self) -> None:
        """WAL mode, the table (created, checked to be ours, or migrated), tolerating a read-only
        file as long as nothing needs writing: WAL is already on, the table and columns exist."""
        readonly: sqlite3.Error | None = None
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if not (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_READONLY"):
                raise
            readonly = exc  # a read-only non-WAL file: readable, and require_writable will say why not writable
        self.conn.execute("PRAGMA busy_timeout=60000")
        columns = self._columns()
        if not columns:
            if readonly is not None:
                raise readonly
            self.conn.executescript(SCHEMA)
            return
        foreign = [c for c in BASE_COLUMNS if c not in columns]
        if foreign:
            raise UserError(f"{self.path}: holds a table 'results' that is not a robustbench_mr results table "
                            f"(no column {', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); pass another --db")
        for name, sql_type in ADDED_COLUMNS.items():
            if name in columns:
                continue
            try:
                with self.conn:
                    self.conn.execute(f"ALTER TABLE results ADD COLUMN {name} {sql_type}")
            except sqlite3.OperationalError as exc:
                if name in self._columns():
                    continue  # another process added it at the same time
                if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_READONLY"):
                    continue  # read-only: rows read without it have no digest (unknown)
                raise

    def require_writable(self) -> None:
        """Raise the one-line ``UserError`` now if rows cannot be written (a read-only file or
        folder), so a run stops before computing anything it could not keep. The probe opens a
        write transaction that changes nothing and rolls it back."""
        try:
            self.conn.execute("DELETE FROM results WHERE 0")
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None
        finally:
            self.conn.rollback()

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def put(self, row: ResultRow) -> None:
        """Insert or replace one row and commit at once (nothing decided is ever lost)."""
        self.put_many([row])

    def put_many(self, rows: Iterable[ResultRow]) -> None:
        """Insert or replace rows in one transaction (a row with the same key is replaced)."""
        placeholders = ",".join("?" * len(COLUMNS))
        values = [self.with_model(r).as_tuple() for r in rows]
        try:
            with self.conn:
                self.conn.executemany(f"INSERT OR REPLACE INTO results ({','.join(COLUMNS)}) VALUES ({placeholders})", values)
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None

    def with_model(self, row: ResultRow) -> ResultRow:
        """``row`` with its ``model`` filled in from its checkpoint file when it has none
        (verify and attack rows only; None stays None when the file is gone or changed)."""
        if row.model is not None or row.kind not in ("verify", "attack"):
            return row
        key = (row.ckpt_path, row.ckpt_sha)
        if key not in self._models:
            self._models[key] = checkpoint_model(*key)
        return row if self._models[key] is None else dataclasses.replace(row, model=self._models[key])

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
        try:
            return [_row_from_sqlite(r) for r in self.conn.execute(sql, params)]
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None

    def decided_indices(self, statuses: Iterable[str], **where: Any) -> set[int]:
        """Indices already written with one of ``statuses`` (whatever their digests)."""
        wanted = set(statuses)
        return {r.idx for r in self.rows(**where) if r.status in wanted}

    def reusable_rows(self, statuses: Iterable[str], input_shas: Mapping[int, str], config_sha: str | None = None,
                      **where: Any) -> tuple[dict[int, ResultRow], set[int]]:
        """For resuming: ``(kept, stale)``. ``kept`` maps each index of ``input_shas`` whose stored
        row (matching ``where``) has one of ``statuses``, the same input digest and the same
        ``config_sha``, to that row. ``stale`` holds the indices whose decided row was made from
        another input or other options, or before digests were stored (NULL: unknown): the
        caller recomputes them, and its new row replaces the old one."""
        wanted = set(statuses)
        kept: dict[int, ResultRow] = {}
        stale: set[int] = set()
        for r in self.rows(**where):
            if r.idx not in input_shas or r.status not in wanted:
                continue
            if r.input_sha is not None and r.input_sha == input_shas[r.idx] and r.config_sha == config_sha:
                kept[r.idx] = r
            else:
                stale.add(r.idx)
        return kept, stale


@contextmanager
def open_db(path: str | Path) -> Iterator[ResultsDB]:
    db = ResultsDB(path)
    try:
        yield db
    finally:
        db.close()
