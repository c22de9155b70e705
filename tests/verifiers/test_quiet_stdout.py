"""HiGHS never writes to our stdout: ``mr-eval vnnlib`` prints exactly one word there and
``mr-eval verify`` prints only its summary (highspy's constructor used to print a banner)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EVAL = [sys.executable, "-m", "robustbench_mr.cli.eval"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_building_and_solving_a_milp_prints_nothing_on_stdout() -> None:
    code = (
        "import numpy as np\n"
        "from robustbench_mr.verifiers.form.chain import Affine, Network, ReLU\n"
        "from robustbench_mr.verifiers.spec.property import robustness_property\n"
        "from robustbench_mr.verifiers.decide.chain import check_property\n"
        "rng = np.random.default_rng(0)\n"
        "net = Network((4,), (Affine(rng.normal(size=(8, 4)), rng.normal(size=8)), ReLU(), Affine(rng.normal(size=(3, 8)), np.zeros(3))))\n"
        "x = np.full(4, 0.5)\n"
        "r = check_property(net, robustness_property(x, int(net.forward(x).argmax()), 0.3, 3), 10, samples=0, input_split=False)\n"
        "assert r.milp_solves >= 1, r\n"
    )
    p = _run([sys.executable, "-c", code])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "", p.stdout


def test_mr_eval_vnnlib_prints_exactly_one_word(shared_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    folder = shared_dir / "data" / "digits_reference"
    if not (folder / "digits_mlp_40x40.onnx").is_file():
        pytest.skip("digits_reference not in shared data")
    p = _run(EVAL + ["vnnlib", str(folder / "digits_mlp_40x40.onnx"), str(folder / "digits_mlp_40x40_eps0.06_0.vnnlib"), "--timeout", "20"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() in (["sat"], ["unsat"], ["timeout"], ["unknown"]), repr(p.stdout)


def test_mr_eval_verify_stdout_is_only_the_summary(digits_mlp_ckpt: Path, tmp_path: Path) -> None:
    p = _run(EVAL + ["verify", str(digits_mlp_ckpt), "--eps", "0.05", "--n", "4", "--jobs", "1", "--timeout", "10", "--db", str(tmp_path / "r.sqlite")])
    assert p.returncode == 0, p.stderr
    assert "HiGHS" not in p.stdout, p.stdout
    assert p.stdout.splitlines()[0].startswith("inputs 4:"), p.stdout


@pytest.mark.parametrize(("prop", "expected"), [("digits_mlp_40x40_eps0.03_0.vnnlib", "unsat"), ("digits_mlp_40x40_eps0.03_1.vnnlib", "sat")])
def test_mr_eval_vnnlib_with_cbc_and_interval_bounds_gives_the_reference_answer(shared_dir: Path, prop: str, expected: str) -> None:
    # --bounds/--solver are the same options as mr-eval verify's; the answers are expected.csv's
    pytest.importorskip("onnxruntime")
    folder = shared_dir / "data" / "digits_reference"
    if not (folder / prop).is_file():
        pytest.skip("digits_reference not in shared data")
    p = _run(EVAL + ["vnnlib", str(folder / "digits_mlp_40x40.onnx"), str(folder / prop), "--timeout", "30", "--solver", "cbc", "--bounds", "interval"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [expected], (p.stdout, p.stderr)
