"""Run commands from the outside: ``--config`` files (file < command line), ``--print-config``
round trips, unknown keys, the ``--threads`` default, one default per concept, the status line
off a terminal, and SIGTERM (exit 143, results kept)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_mr.checkpoint import metadata_for, model_kwargs, save_checkpoint
from robustbench_mr.cli.eval import main
from robustbench_mr.cli.train import main as train_main
from robustbench_mr.errors import UserError
from robustbench_mr.models import build_model

REPO = Path(__file__).resolve().parents[2]

# one command line per run command; --print-config needs nothing on disk
COMMANDS = {
    "verify": (main, ["verify", "ck.pt", "--eps", "8/255"]),
    "attack": (main, ["attack", "ck.pt"]),
    "vnnlib": (main, ["vnnlib", "net.onnx", "prop.vnnlib"]),
    "vnncomp": (main, ["vnncomp", "benchdir"]),
    "train": (train_main, ["mlp"]),
}


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits MLP fitted in a second (full-batch Adam), so most inputs are classified right
    and attacks have work to do."""
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


# --- config files ----------------------------------------------------------------------------

def test_the_command_line_wins_over_the_file_and_the_file_over_the_defaults(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "verify.yaml"
    cfg.write_text("checkpoint: from_file.pt\neps: 2/255\nn: 5\ntimeout: 30\ndata-dir: data\n")
    assert main(["verify", "--config", str(cfg), "--n", "7", "--print-config"]) == 0
    got = _yaml(capsys.readouterr().out)
    assert got["n"] == 7  # command line over the file
    assert got["eps"] == 2 / 255 and got["timeout"] == 30 and got["data_dir"] == "data" and got["checkpoint"] == "from_file.pt"  # the file
    assert got["bounds"] == "lp" and got["start"] == 0  # declared defaults


def test_train_reads_toml_and_flags_still_win(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text('epochs = 2\nlr = 0.2\nhidden = "8"\nmethod = "plain"\n')
    assert train_main(["mlp", "--config", str(cfg), "--epochs", "3", "--print-config"]) == 0
    import tomllib

    got = tomllib.loads(capsys.readouterr().out)  # printed in the --config file's format
    assert got["epochs"] == 3 and got["lr"] == 0.2 and got["hidden"] == "8" and got["method"] == "plain"
    assert got["batch_size"] == 128  # the preset's


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_print_config_round_trips(name: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    entry, argv = COMMANDS[name]
    extra = ["--threads", "3"] + (["--benchmark", "acasxu", "--benchmark", "test"] if name == "vnncomp" else [])
    empty = tmp_path / f"empty.{fmt}"
    empty.write_text("")
    assert entry([*argv, *extra, "--config", str(empty), "--print-config"]) == 0
    first = capsys.readouterr().out
    saved = tmp_path / f"effective.{fmt}"
    saved.write_text(first)
    assert entry([argv[0], "--config", str(saved), "--print-config"]) == 0  # everything else from the file
    assert capsys.readouterr().out == first
    assert "threads" in first and "3" in first


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_unknown_key_is_one_line_naming_it_and_the_known_keys(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    entry, argv = COMMANDS[name]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("threads: 1\ntimeout_s: 5\n")
    assert entry([*argv, "--config", str(cfg)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--config {cfg}: unknown key 'timeout_s'; known keys: " in line and "threads" in line, line


def test_a_bad_value_in_the_file_is_one_usage_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("eps: 8/255/2\n")
    assert main(["verify", "ck.pt", "--config", str(cfg)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("mr-eval: error: --config") and "eps:" in line and "8/255/2" in line


def test_a_required_option_may_come_from_the_file_but_must_come_from_somewhere(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["verify", "ck.pt"])
    assert exc.value.code == 2 and "required: --eps" in capsys.readouterr().err


# --- one default per concept; eps 0 --------------------------------------------------------------

def test_one_default_per_concept_across_commands(capsys: pytest.CaptureFixture) -> None:
    got = {}
    for name, (entry, argv) in COMMANDS.items():
        assert entry([*argv, "--print-config"]) == 0
        got[name] = _yaml(capsys.readouterr().out)
    assert got["verify"]["jobs"] == got["vnncomp"]["jobs"]
    assert got["train"]["device"] == got["attack"]["device"] == "auto"
    assert all(g["threads"] is None for g in got.values())  # the one rule (robustbench_mr.threads)


def test_eps_zero_is_refused_alike_by_the_flag_and_the_options() -> None:
    from robustbench_mr.verifiers.runs.dataset import VerifyOptions

    with pytest.raises(SystemExit):
        main(["verify", "ck.pt", "--eps", "0"])
    with pytest.raises(UserError, match="zero"):
        VerifyOptions(checkpoint="ck.pt", eps=0.0)
    with pytest.raises(UserError, match="exceeds 1"):
        VerifyOptions(checkpoint="ck.pt", eps=1.5)


# --- threads ------------------------------------------------------------------------------------

def test_threads_default_to_idle_cores_over_jobs_for_the_command_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustbench_mr.cli.verify as verify_cmd
    import robustbench_mr.threads as threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "load_average", lambda: 0.0)
    for name in ("OMP_NUM_THREADS", "ROBUSTBENCH_MR_THREADS"):
        monkeypatch.delenv(name, raising=False)
    seen = []
    monkeypatch.setattr(verify_cmd, "run", lambda args: seen.append((args.threads, os.environ["OMP_NUM_THREADS"],
                                                                      os.environ["ROBUSTBENCH_MR_THREADS"], torch.get_num_threads())) or 0)
    before = torch.get_num_threads()
    assert main(["verify", "ck.pt", "--eps", "0.1", "--jobs", "2"]) == 0
    assert main(["verify", "ck.pt", "--eps", "0.1", "--jobs", "1"]) == 0
    assert main(["verify", "ck.pt", "--eps", "0.1", "--jobs", "2", "--threads", "3"]) == 0
    assert seen == [(2, "2", "2", 2), (4, "4", "4", 4), (3, "3", "3", 3)]
    assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == before  # put back after the command


# --- progress and signals -------------------------------------------------------------------------

def test_status_lines_with_counts_off_a_terminal(trained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "r.sqlite"
    assert main(["verify", str(trained_ckpt), "--eps", "0.01", "--n", "6", "--jobs", "1", "--timeout", "30", "--db", str(db)]) == 0
    err = capsys.readouterr().err
    m = re.search(r"^mr-eval: verify: done 6/6 \(([^)]*)\), [0-9.]+ inputs/s, elapsed \d+s$", err, flags=re.M)
    assert m, err
    counts = dict((k, int(v)) for k, v in (part.rsplit(" ", 1) for part in m.group(1).split(", ")))
    assert sum(counts.values()) == 6 and set(counts) <= {"verified", "falsified", "misclassified", "timeout", "unknown", "error"}
    assert main(["attack", str(trained_ckpt), "--n", "6", "--pgd-restarts", "1", "--db", str(db)]) == 0
    assert re.search(r"^mr-eval: attack pgd linf 8/255: done 6/6 \((robust|broken|misclassified) \d", capsys.readouterr().err, flags=re.M)
    assert main(["attack", str(trained_ckpt), "--n", "6", "--pgd-restarts", "1", "--db", str(tmp_path / "q.sqlite"), "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no status line


def test_minus_v_shows_third_party_loggers_and_our_debug_lines(trained_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["attack", str(trained_ckpt), "--attack", "autoattack", "--autoattack-iters", "1", "--autoattack-queries", "5", "--n", "3"]
    assert main([*argv, "--db", str(tmp_path / "a.sqlite")]) == 0
    err = capsys.readouterr().err
    assert "[auto-attack]" not in err and "debug:" not in err
    assert main(["-v", *argv, "--db", str(tmp_path / "b.sqlite")]) == 0  # -v before the command works too
    err = capsys.readouterr().err
    assert "mr-eval [auto-attack]: debug: " in err and "mr-eval: debug: threads " in err, err


def test_train_reports_batches_and_epochs_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.pt"
    assert train_main(["mlp", "--epochs", "1", "--hidden", "8", "--method", "plain", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^mr-train: train mlp plain: done 12/12, [0-9.]+ batches/s, elapsed \d+s, epoch 1/1, loss ", err, flags=re.M), err
    assert re.search(r"^epoch 1: loss ", err, flags=re.M)


def test_vnncomp_reports_instances_off_a_terminal(shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = shared_dir / "data" / "vnncomp" / "test"
    if not (bench / "instances.csv").is_file():
        pytest.skip("shared vnncomp/test not present")
    assert main(["vnncomp", str(bench), "--db", str(tmp_path / "r.sqlite"), "--limit", "2", "--jobs", "1", "--timeout-cap", "30"]) == 0
    assert re.search(r"^mr-eval: vnncomp: done 2/2 \((sat|unsat|timeout|unknown|error) \d", capsys.readouterr().err, flags=re.M)


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigterm_under_a_pipe_exits_143_and_keeps_the_rows(trained_ckpt: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    # slow on purpose: one input per batch, a long PGD each; the run is cut after its first rows
    cmd = [sys.executable, "-m", "robustbench_mr.cli.eval", "attack", str(trained_ckpt), "--n", "297", "--batch-size", "1",
           "--pgd-steps", "3000", "--pgd-restarts", "2", "--db", str(db), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while _rows(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "mr-eval: terminated (SIGTERM); results written so far are kept" in err.splitlines()[-1]
    kept = _rows(db)
    assert 2 <= kept < 297
    # the last status line (stderr is a pipe) counts what the database kept
    m = re.search(r"^mr-eval: attack pgd linf 8/255: stopped at (\d+)/297 \(", err, flags=re.M)
    assert m and int(m.group(1)) == kept, err


def test_branching_is_one_option_of_every_verifying_command(capsys: pytest.CaptureFixture) -> None:
    """``--branching`` (declared once, on VerifyOptions) reaches verify and vnnlib, babsr by
    default; a rule that does not exist is a usage error."""
    from robustbench_mr.verifiers.decide import BRANCHING

    for name in ("verify", "vnnlib"):
        fn, argv = COMMANDS[name]
        assert fn([*argv, "--print-config"]) == 0
        assert _yaml(capsys.readouterr().out)["branching"] == "babsr"
        for rule in BRANCHING:
            assert fn([*argv, "--branching", rule, "--print-config"]) == 0
            assert _yaml(capsys.readouterr().out)["branching"] == rule
        with pytest.raises(SystemExit) as exc:
            fn([*argv, "--branching", "random"])
        assert exc.value.code == 2
        assert "fsb" in capsys.readouterr().err  # the choices are named


def test_vnnlib_hands_the_branching_rule_to_the_instance(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from robustbench_mr.verifiers.decide import instance_limit
    from robustbench_mr.verifiers.decide.instance import InstanceResult, InstanceStatus

    seen = {}

    def fake(check, onnx, vnnlib, deadline, **options):  # noqa: ANN001,ANN003,ANN202
        seen.update(options)
        return InstanceResult(InstanceStatus.UNSAT, 0.0)

    monkeypatch.setattr(instance_limit, "instance_in_child", fake)
    assert main(["vnnlib", "net.onnx", "prop.vnnlib", "--branching", "fsb"]) == 0
    assert capsys.readouterr().out.strip() == "unsat"
    assert seen == {"bounds": "lp", "solver": "highs", "branching": "fsb"}
