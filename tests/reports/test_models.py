"""The model column: ``results.model`` holds the checkpoint's architecture / training label, old
databases gain the column on open (their rows keep working), and rows without a label get it
from the checkpoint file they name, only while that file still has the row's sha256."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from robustbench_mr.checkpoint import file_sha256, metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.cli.eval import main
from robustbench_mr.models.registry import build_model
from robustbench_mr.results_db import BASE_COLUMNS, SCHEMA, ResultRow, ResultsDB, model_label


def _checkpoint(path: Path, method: str = "mr") -> tuple[str, str]:
    meta = metadata_for("mlp", "digits", {"hidden": [6]}, train_config={"method": method})
    save_checkpoint(path, build_model("mlp", **model_kwargs(meta)), meta)
    return str(path), file_sha256(path)


def _old_db(path: Path, rows: list[ResultRow]) -> None:
    """A database of the schema before the model column (digests included)."""
    conn = sqlite3.connect(path)
    conn.executescript("\n".join(line for line in SCHEMA.splitlines() if not line.strip().startswith("model ")))
    cols = [c for c in (*BASE_COLUMNS, "input_sha", "config_sha")]
    assert "model" not in {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    for r in rows:
        values = dict(zip((*BASE_COLUMNS, "input_sha", "config_sha", "model"), r.as_tuple()))
        conn.execute(f"INSERT INTO results ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", [values[c] for c in cols])
    conn.commit()
    conn.close()


def test_model_label():
    assert model_label({"arch": "small", "arch_kwargs": {}, "train_config": {"method": "mr"}}) == "small / mr"
    assert model_label({"arch": "mlp", "arch_kwargs": {"hidden": [40, 40]}}) == "mlp(hidden=[40, 40])"
    assert model_label({"arch": ""}) is None and model_label({}) is None


def test_old_database_gains_the_model_column_and_reports_read_the_checkpoint(tmp_path: Path, capsys):
    ck, sha = _checkpoint(tmp_path / "net.pt")
    ck2, sha2 = _checkpoint(tmp_path / "old_only.pt", method="plain")  # only old rows: the label comes from the file
    gone = "9" * 64  # a row whose checkpoint file no longer has its sha: model unknown
    base = dict(kind="verify", dataset="digits", split="test", norm="linf", eps=8 / 255, method="milp", label=1, prediction=1)
    db_path = tmp_path / "old.sqlite"
    _old_db(db_path, [ResultRow(ckpt_sha=sha, ckpt_path=ck, idx=0, status="verified", **base),
                      ResultRow(ckpt_sha=gone, ckpt_path=ck, idx=0, status="timeout", **base),
                      ResultRow(ckpt_sha=sha2, ckpt_path=ck2, idx=0, status="verified", **base)])
    with ResultsDB(db_path) as db:
        assert "model" in {r["name"] for r in db.conn.execute("PRAGMA table_info(results)")}
        assert [r.model for r in db.rows()] == [None, None, None]  # old rows: unknown, not guessed at read time
        # a new row written without a label gets the checkpoint's; an explicit label is kept
        db.put(ResultRow(ckpt_sha=sha, ckpt_path=ck, idx=1, status="falsified", **base))
        db.put(ResultRow(ckpt_sha="7" * 64, ckpt_path="/elsewhere/x.pt", idx=2, status="verified", model="given", **base))
        db.put(ResultRow(ckpt_sha=gone, ckpt_path=ck, idx=1, status="verified", **base))
        models = {(r.ckpt_sha, r.idx, r.eps): r.model for r in db.rows()}
    assert models[(sha, 1, 8 / 255)] == "mlp(hidden=[6]) / mr" and models[("7" * 64, 2, 8 / 255)] == "given"
    assert models[(gone, 1, 8 / 255)] is None
    assert main(["report", "--db", str(db_path), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    board = out.split("### digits · L-inf eps 8/255")[1].split("###")[0]
    lines = {ln.split("|")[4].strip(): ln for ln in board.splitlines() if ln.startswith("| ") and "ours" in ln}
    assert "| mlp(hidden=[6]) / mr |" in lines[f"net.pt ({sha[:8]})"]  # old rows and new ones: one label per checkpoint
    assert "| given |" in lines[f"x.pt ({'7' * 8})"]
    assert "| mlp(hidden=[6]) / plain |" in lines[f"old_only.pt ({sha2[:8]})"]
    assert "| – |" in lines[f"net.pt ({gone[:8]})"]  # unknown model, shown as such
