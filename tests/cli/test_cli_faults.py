"""Hostile input at the CLI: each gets one line naming what is wrong and the fix, and the right
exit code (1 failure, 2 usage, 141 stdout closed, 143 SIGTERM)."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.cli.common import EXIT_BROKEN_PIPE, EXIT_TERMINATED, run_main
from robustbench_mr.cli.eval import main
from robustbench_mr.models import build_model
from robustbench_mr.results_db import ResultRow, ResultsDB


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained digits MLP: these tests never get as far as solving anything."""
    torch.manual_seed(0)
    meta = metadata_for("mlp", "digits", {"hidden": [8]})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", build_model("mlp", **model_kwargs(meta)).eval(), meta)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    return lines[0]


def _foreign(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (who TEXT, score REAL)")
    conn.commit()
    conn.close()
    return path


def _not_sqlite(path: Path) -> Path:
    path.write_text("not a database\n" * 100)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(("make", "expected"), [(_directory, "is a directory"), (_foreign, "not a robustbench_mr results table"),
                                                (_not_sqlite, "not an SQLite database")])
def test_unusable_db_is_one_line(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, make, expected: str) -> None:  # noqa: ANN001
    db = make(tmp_path / "r.sqlite")
    assert main(["verify", str(tiny_ckpt), "--eps", "0.01", "--n", "2", "--jobs", "1", "--db", str(db)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(db) in line and expected in line and "--db" in line, line


def test_read_only_db_is_one_line_for_attack(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    ResultsDB(db).close()
    real = sqlite3.connect  # read-only, as SQLite opens a file its user may not write (chmod 444; root ignores chmod)
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))
    assert main(["attack", str(tiny_ckpt), "--n", "2", "--pgd-restarts", "1", "--db", str(db)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(db) in line and "read-only" in line and "chmod u+w" in line, line


def test_malformed_scheduler_is_a_usage_error_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # the checkpoint does not even exist: the address is rejected while parsing, before anything is read
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tmp_path / "missing.pt"), "--eps", "0.1", "--backend", "dask", "--scheduler", "notaurl"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert "--scheduler" in line and "'notaurl'" in line and "tcp://HOST:PORT" in line and "missing.pt" not in err, err


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "10.0.0.5:8786", "tls://[::1]:8786", "inproc://10.0.0.5/123/1"])
def test_well_formed_scheduler_addresses_pass(address: str) -> None:
    from robustbench_mr.verifiers.runs.options import scheduler_address_problem

    assert scheduler_address_problem(address) is None


@pytest.mark.parametrize("address", ["notaurl", "tcp://host", "tcp://:8786", "tcp://host:99999", "http://host:8786", "tcp://host:8786/x"])
def test_malformed_scheduler_addresses_are_named(address: str) -> None:
    from robustbench_mr.verifiers.runs.options import scheduler_address_problem

    assert scheduler_address_problem(address)


def test_closed_stdout_exits_quietly(tiny_ckpt: Path) -> None:
    """``mr-eval info ckpt.pt | head -1``: made deterministic by closing the pipe before the
    command writes (it takes far longer to start than this takes)."""
    proc = subprocess.Popen([sys.executable, "-m", "robustbench_mr.cli.eval", "info", str(tiny_ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert err == "", err


def _parser_with(handler) -> argparse.ArgumentParser:  # noqa: ANN001
    parser = argparse.ArgumentParser(prog="mr-test")
    parser.add_argument("--debug", action="store_true")
    parser.set_defaults(handler=handler)
    return parser


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "r.sqlite"
    before = signal.getsignal(signal.SIGTERM)

    def handler(args: argparse.Namespace) -> int:
        with ResultsDB(db) as d:
            d.put(ResultRow("verify", "sha", "c.pt", "digits", "test", 0, "linf", 0.1, "milp-lp", "verified"))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler interrupts this at once
            d.put(ResultRow("verify", "sha", "c.pt", "digits", "test", 1, "linf", 0.1, "milp-lp", "verified"))
        return 0

    t0 = time.perf_counter()
    assert run_main("mr-test", _parser_with(handler), []) == EXIT_TERMINATED
    assert time.perf_counter() - t0 < 20
    line = _one_error_line(capsys.readouterr().err)
    assert "SIGTERM" in line and "kept" in line
    with ResultsDB(db) as d:
        assert [r.idx for r in d.rows()] == [0]  # what was written before is kept
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
