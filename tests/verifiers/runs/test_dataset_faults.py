"""``verify`` under faults: resume keyed on the input's digest, a dead loky worker, a read-only
database and a malformed scheduler address. Small: a few inputs of the tiny digits MLP."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_mr.checkpoint import load_checkpoint
from robustbench_mr.data import datasets
from robustbench_mr.errors import UserError
from robustbench_mr.results_db import ResultsDB, input_digest
from robustbench_mr.verifiers.runs import dataset as runner
from robustbench_mr.verifiers.runs.dataset import KILL_WORKER_ENV, VerifyOptions, verify

EPS = 0.05


def _options(ckpt: Path, db: Path, **kw: object) -> VerifyOptions:
    base: dict[str, object] = dict(n=4, jobs=1, timeout=10, db=str(db), progress=False)
    base.update(kw)
    return VerifyOptions(str(ckpt), EPS, **base)  # type: ignore[arg-type]


def _rows(ckpt: Path, db: Path) -> dict[int, object]:
    _, meta = load_checkpoint(ckpt)
    with ResultsDB(db) as d:
        return {r.idx: r for r in d.rows(kind="verify", ckpt_sha=meta.sha256)}


def _spy_verify_one(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record which inputs are computed (the --jobs 1 path calls verify_one in this process)."""
    calls: list[int] = []
    real = runner.verify_one

    def spy(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(int(args[2]))
        return real(*args, **kw)

    monkeypatch.setattr(runner, "verify_one", spy)
    return calls


def test_resume_recomputes_a_row_whose_input_changed(digits_mlp_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    first = verify(_options(digits_mlp_ckpt, db))
    x, y = datasets.load_dataset("digits", "test", None, False)
    assert {i: r.input_sha for i, r in _rows(digits_mlp_ckpt, db).items()} == {i: input_digest(x[i], int(y[i])) for i in range(4)}

    # the data files change: input 1 is now another image (with its label)
    real_load = datasets.load_dataset

    def changed(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        xs, ys = real_load(*args, **kw)
        xs, ys = xs.clone(), ys.clone()
        xs[1], ys[1] = xs[10], ys[10]
        return xs, ys

    monkeypatch.setattr(datasets, "load_dataset", changed)
    calls = _spy_verify_one(monkeypatch)
    second = verify(_options(digits_mlp_ckpt, db))
    assert calls == [1] and second.stale == 1, (calls, second.stale)
    row = _rows(digits_mlp_ckpt, db)[1]
    assert row.input_sha == input_digest(x[10], int(y[10])) and row.label == int(y[10])
    assert all(second.results[i].status is first.results[i].status for i in (0, 2, 3))  # reused as they were


def test_resume_recomputes_rows_written_before_digests(digits_mlp_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    verify(_options(digits_mlp_ckpt, db, n=3))
    with ResultsDB(db) as d, d.conn:
        d.conn.execute("UPDATE results SET input_sha = NULL WHERE idx = 2")  # as an old database has them
    calls = _spy_verify_one(monkeypatch)
    s = verify(_options(digits_mlp_ckpt, db, n=3))
    assert calls == [2] and s.stale == 1 and _rows(digits_mlp_ckpt, db)[2].input_sha is not None


def test_a_worker_that_dies_twice_becomes_an_error_row(digits_mlp_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    monkeypatch.setenv(KILL_WORKER_ENV, "2")  # the worker starting input 2 exits, on every attempt
    s = verify(_options(digits_mlp_ckpt, db, n=4, jobs=2))
    rows = _rows(digits_mlp_ckpt, db)
    assert sorted(rows) == [0, 1, 2, 3]
    assert rows[2].status == "error" and rows[2].details["message"].startswith("worker died twice"), rows[2].details
    assert all(rows[i].status != "error" for i in (0, 1, 3))
    assert s.died_twice == (2,) and s.worker_deaths == 2 and s.counts["error"] == 1
    assert any("died twice: 2" in line for line in s.lines())


def test_a_worker_that_dies_once_is_retried(digits_mlp_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KILL_WORKER_ENV, "1:1")  # only in the parallel run; the retry alone succeeds
    s = verify(_options(digits_mlp_ckpt, tmp_path / "r.sqlite", n=3, jobs=2))
    assert s.worker_deaths == 1 and s.died_twice == () and s.counts["error"] == 0
    assert _rows(digits_mlp_ckpt, tmp_path / "r.sqlite")[1].status in ("verified", "falsified", "misclassified")


def test_read_only_db_stops_before_any_work(digits_mlp_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    db = tmp_path / "r.sqlite"
    ResultsDB(db).close()
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))
    calls = _spy_verify_one(monkeypatch)
    with pytest.raises(UserError, match="read-only"):
        verify(_options(digits_mlp_ckpt, db))
    assert calls == []


def test_malformed_scheduler_is_a_user_error(digits_mlp_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"tcp://HOST:PORT"):
        _options(digits_mlp_ckpt, tmp_path / "r.sqlite", backend="dask", scheduler="notaurl")
