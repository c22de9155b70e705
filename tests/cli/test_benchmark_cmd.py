"""``mr-eval benchmark MODEL``: a model file to stored rows, a leaderboard row, leaderboard files
and plots in one command (run in-process through ``main``: the exit code and what reaches
stdout / stderr are what a user sees)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.cli.eval import main
from robustbench_mr.models import build_model
from robustbench_mr.results_db import ResultsDB

FAST = ["--n", "4", "--attacks", "pgd", "--timeout", "5", "--jobs", "1", "--device", "cpu", "-q"]


def _mr_eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded digits MLP fitted in about a second (full-batch Adam)."""
    from robustbench_mr.data import load_dataset

    torch.manual_seed(0)
    meta = metadata_for("mlp", "digits", {"hidden": [16]})
    model = build_model("mlp", **model_kwargs(meta))
    x, y = load_dataset("digits", "train")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlp.pt", model.eval(), meta)


def _board_row(stdout: str) -> dict[str, str]:
    """The printed board row as column -> cell."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    head, row = ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[:2])
    assert len(lines) == 2, stdout
    return dict(zip(head, row))


def test_a_checkpoint_becomes_rows_a_board_row_leaderboard_files_and_plots(digits_ckpt: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.sqlite"
    code, out, err = _mr_eval(capsys, "benchmark", str(digits_ckpt), "--eps", "0.02", "--db", str(db), *FAST)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{digits_ckpt} (") and "on digits, Linf eps 0.02, first 4 inputs" in out
    row = _board_row(out)
    assert row["Model"] == "mlp(hidden=[16])" and row["Defense"].startswith("mlp.pt (")
    for col in ("Verified", "PGD", "Clean"):  # clean / attacked / verified, each with its n
        assert re.fullmatch(r"\d+\.\d\d \(n=4\)", row[col]), row
    verified, pgd, clean = (float(row[c].split()[0]) for c in ("Verified", "PGD", "Clean"))
    assert verified <= pgd <= clean
    out_dir = tmp_path / "benchmark"  # the default: beside the database
    written = {out_dir / f for f in ("leaderboard.md", "leaderboard.csv", "accuracy_vs_eps.png", "verifier_decided_vs_time.png")}
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert all(str(p) in out for p in written) and f"rows in {db}" in out
    assert "### digits · L-inf eps 0.02" in (out_dir / "leaderboard.md").read_text()
    (rec,) = csv.DictReader((out_dir / "leaderboard.csv").open())
    assert (rec["dataset"], rec["threat"], rec["eps"], rec["verified_n"], rec["pgd_n"], rec["clean_n"]) == ("digits", "linf", "0.02", "4", "4", "4")
    assert all((out_dir / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in ("accuracy_vs_eps.png", "verifier_decided_vs_time.png"))
    with ResultsDB(db) as store:
        rows = store.rows()
    assert sorted((r.kind, r.idx) for r in rows) == [(k, i) for k in ("attack", "verify") for i in range(4)]
    # a rerun resumes from the rows and prints the same row
    code, again, err = _mr_eval(capsys, "benchmark", str(digits_ckpt), "--eps", "0.02", "--db", str(db), *FAST)
    assert code == 0, err
    assert _board_row(again) == row
    with ResultsDB(db) as store:
        assert len(store.rows()) == len(rows)


def test_an_onnx_file_is_one_command(digits_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    from robustbench_mr.intake import load_model
    from robustbench_mr.verifiers.spec.export import export_onnx

    loaded = load_model(digits_ckpt)
    onnx = export_onnx(loaded.model, loaded.input_shape, tmp_path / "model.onnx")
    out_dir = tmp_path / "board"
    code, out, err = _mr_eval(capsys, "benchmark", str(onnx), "--dataset", "digits", "--eps", "8/255", "--db", str(tmp_path / "r.sqlite"),
                              "--out", str(out_dir), "--name", "my-onnx-net", *FAST)
    assert code == 0, err
    assert "on digits, Linf eps 8/255, first 4 inputs" in out
    row = _board_row(out)
    assert row["Defense"].startswith("my-onnx-net (") and all("(n=4)" in row[c] for c in ("Verified", "PGD", "Clean"))
    assert (out_dir / "leaderboard.md").is_file() and (out_dir / "accuracy_vs_eps.png").is_file()
    assert "my-onnx-net" in (out_dir / "leaderboard.csv").read_text()


def test_l2_has_no_verified_figure_and_says_why(digits_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _mr_eval(capsys, "benchmark", str(digits_ckpt), "--threat", "l2", "--eps", "0.3", "--db", str(tmp_path / "r.sqlite"), *FAST)
    assert code == 0, err
    row = _board_row(out)
    assert "Verified" not in row and "(n=4)" in row["PGD"] and "not verified: the exact verifier handles L-inf only" in out


def _error_line(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert "Traceback" not in err, err
    return line


def test_a_bad_model_path_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pt"
    code, out, err = _mr_eval(capsys, "benchmark", str(missing), "--db", str(tmp_path / "r.sqlite"), *FAST)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [_error_line(err)] and str(missing) in err and "no such model file" in err
    assert not (tmp_path / "r.sqlite").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    code, _, err = _mr_eval(capsys, "benchmark", str(junk), *FAST)
    assert code == 1 and err.strip().splitlines() == [_error_line(err)] and str(junk) in err


@pytest.mark.parametrize(("flags", "named"), [(["--threat", "Linfinity"], "--threat"), (["--eps", "2"], "--eps"),
                                              (["--attacks", "pgd,fgsm"], "--attacks"), (["--n", "0"], "--n")])
def test_bad_flags_are_one_usage_line_exit_2(flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", str(tmp_path / "missing.pt"), *flags])
    assert exc.value.code == 2
    line = _error_line(capsys.readouterr().err)
    assert f"argument {named}" in line, line


def test_a_shape_mismatch_is_one_line(digits_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _mr_eval(capsys, "benchmark", str(digits_ckpt), "--dataset", "cifar10", "--db", str(tmp_path / "r.sqlite"), *FAST)
    assert code == 1 and "cifar10" in _error_line(err)


def test_config_and_print_config_work_as_on_the_other_run_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("model: m.onnx\nthreat: l2\nn: 7\nattacks: PGD\n")
    code, out, _ = _mr_eval(capsys, "benchmark", "--config", str(cfg), "--n", "3", "--threads", "2", "--print-config")
    assert code == 0
    import yaml

    got = yaml.safe_load(out)
    assert (got["model"], got["threat"], got["n"], got["attacks"], got["threads"], got["eps"]) == ("m.onnx", "L2", 3, "pgd", 2, None)
    saved = tmp_path / "saved.yaml"
    saved.write_text(out)
    assert _mr_eval(capsys, "benchmark", "--config", str(saved), "--print-config")[1] == out
    cfg.write_text("timeout_s: 5\n")
    code, _, err = _mr_eval(capsys, "benchmark", "m.onnx", "--config", str(cfg))
    assert code == 2 and "unknown key 'timeout_s'" in _error_line(err)


def test_help_does_not_load_the_engines() -> None:
    import subprocess
    import sys

    code = ("import sys; from robustbench_mr.cli.eval import main\n"
            "try: main(['benchmark', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'highspy', 'scipy', 'onnx', 'matplotlib') if m in sys.modules), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "mr-eval benchmark" in p.stdout and p.stderr.strip().splitlines()[-1] == "[]", p.stderr
