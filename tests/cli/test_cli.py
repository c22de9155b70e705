import subprocess
import sys

import pytest


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)


@pytest.mark.parametrize("module", ["robustbench_mr.cli.eval", "robustbench_mr.cli.train"])
def test_help_exits_zero(module):
    res = _run(module, "--help")
    assert res.returncode == 0
    assert "usage:" in res.stdout


def test_eval_help_lists_its_subcommands():
    res = _run("robustbench_mr.cli.eval", "--help")
    for cmd in ("info",):
        assert cmd in res.stdout


@pytest.mark.parametrize("module", ["robustbench_mr.cli.eval", "robustbench_mr.cli.train"])
def test_usage_errors_exit_two(module):
    assert _run(module).returncode == 2
    assert _run(module, "no-such-command").returncode == 2
