"""The results database: input / option digests, migration of old databases, and every unusable
``--db`` as one UserError line naming the file and the fix."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_mr import results_db
from robustbench_mr.errors import UserError
from robustbench_mr.results_db import BASE_COLUMNS, COLUMNS, ResultRow, ResultsDB, input_digest, options_digest

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes through chmod, so real permission tests need another user


def _row(idx: int, status: str = "verified", input_sha: str | None = None, config_sha: str | None = None) -> ResultRow:
    return ResultRow("verify", "sha", "ckpt.pt", "digits", "test", idx, "linf", 0.1, "milp-lp", status,
                     input_sha=input_sha, config_sha=config_sha)


def _legacy_db(path: Path) -> None:
    """A database as written before the digest columns existed, holding one decided row."""
    schema = "\n".join(line for line in results_db.SCHEMA.splitlines() if not line.strip().startswith(("input_sha", "config_sha")))
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    conn.execute(f"INSERT INTO results ({','.join(BASE_COLUMNS)}) VALUES ({','.join('?' * len(BASE_COLUMNS))})", _row(0).as_tuple()[:len(BASE_COLUMNS)])
    conn.commit()
    conn.close()


def _one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_input_digest_reads_pixels_and_label() -> None:
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    d = input_digest(x, 3)
    assert len(d) == results_db.DIGEST_HEX and d == input_digest(torch.from_numpy(x), 3) == input_digest(x.astype(np.float64), 3)
    y = x.copy()
    y[0, 4, 4] += 1e-3
    assert input_digest(y, 3) != d and input_digest(x, 4) != d
    assert options_digest({"a": 1, "b": 2}) == options_digest({"b": 2, "a": 1}) != options_digest({"a": 1, "b": 3})


def test_reusable_rows_keeps_only_matching_digests(tmp_path: Path) -> None:
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.put_many([_row(0, input_sha="aa", config_sha="c"), _row(1, input_sha="bb", config_sha="c"), _row(2, input_sha="cc", config_sha="old"),
                     _row(3, input_sha=None), _row(4, "timeout", input_sha="ee", config_sha="c")])
        kept, stale = db.reusable_rows(["verified"], {0: "aa", 1: "changed", 2: "cc", 3: "dd", 4: "ee"}, "c", kind="verify")
    assert set(kept) == {0} and stale == {1, 2, 3}  # 4 is not decided: recomputed anyway, not "stale"


def test_old_database_gains_the_digest_columns_and_its_rows_count_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _legacy_db(path)
    with ResultsDB(path) as db:
        cols = {r["name"] for r in db.conn.execute("PRAGMA table_info(results)")}
        assert set(COLUMNS) <= cols
        (row,) = db.rows(kind="verify")
        assert row.idx == 0 and row.input_sha is None
        kept, stale = db.reusable_rows(["verified"], {0: input_digest(np.zeros(3), 1)}, kind="verify")
        assert kept == {} and stale == {0}
        db.put(_row(0, input_sha="new"))  # the recomputed row replaces the old one (same key)
        assert [r.input_sha for r in db.rows(kind="verify")] == ["new"]
    with ResultsDB(path) as db:  # reopening a migrated database changes nothing
        assert len(db.rows()) == 1


def test_db_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        ResultsDB(tmp_path)
    msg = _one_line(exc)
    assert f"{tmp_path} is a directory" in msg and "results.sqlite" in msg


def test_db_inside_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError) as exc:
        ResultsDB(tmp_path / "f" / "r.sqlite")
    assert "is a file, not a folder" in _one_line(exc)


def test_db_with_a_foreign_results_table(tmp_path: Path) -> None:
    path = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (name TEXT, score REAL)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError) as exc:
        ResultsDB(path)
    msg = _one_line(exc)
    assert str(path) in msg and "not a robustbench_mr results table" in msg and "--db" in msg


def test_db_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(UserError) as exc:
        ResultsDB(path)
    msg = _one_line(exc)
    assert str(path) in msg and "not an SQLite database" in msg and "--db" in msg


def _read_only_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open every database read-only, as SQLite does by itself for a file its user cannot write."""
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))


def test_read_only_db_stops_before_work_and_stays_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.sqlite"
    with ResultsDB(path) as db:
        db.put(_row(0, input_sha="aa"))
    _read_only_connect(monkeypatch)
    with ResultsDB(path) as db:
        assert len(db.rows()) == 1  # reports still read it
        with pytest.raises(UserError) as exc:
            db.require_writable()
        msg = _one_line(exc)
        assert str(path) in msg and "read-only" in msg and "chmod u+w" in msg
        with pytest.raises(UserError):
            db.put(_row(1))  # and a write that slips through is one line too, not an internal error


def test_read_only_folder_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.sqlite"
    ResultsDB(path).close()
    _read_only_connect(monkeypatch)
    monkeypatch.setattr(results_db, "_writable", lambda p: Path(p) != tmp_path)  # the folder, not the file, is read-only
    with ResultsDB(path) as db, pytest.raises(UserError) as exc:
        db.require_writable()
    msg = _one_line(exc)
    assert f"its folder {tmp_path} is not writable" in msg and "pass a --db in a writable folder" in msg


@pytest.mark.skipif(ROOT or not hasattr(os, "geteuid"), reason="root ignores file permissions")
def test_chmod_444_file_and_555_folder(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultsDB(path).close()
    path.chmod(0o444)
    try:
        with ResultsDB(path) as db, pytest.raises(UserError) as exc:
            db.require_writable()
        assert "read-only" in _one_line(exc)
    finally:
        path.chmod(0o644)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError) as exc:
            with ResultsDB(folder / "new.sqlite") as db:
                db.require_writable()
        assert "is not writable" in _one_line(exc)
    finally:
        folder.chmod(0o755)
