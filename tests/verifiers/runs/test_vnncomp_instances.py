"""VNN-COMP instances end to end: answers must never contradict the published ones, ``sat`` must
come with a counterexample onnxruntime confirms, and the vnncomp command must fill the results
database and resume.

The runner's sat-confirmation logic is also tested with a fake solver that lies: a claimed
counterexample that onnxruntime does not confirm must give ``unknown``, never ``sat``.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
import types
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from robustbench_mr.cli.eval import main as mr_eval  # noqa: E402
from robustbench_mr.verifiers.form.chain_from_onnx import onnxruntime_forward  # noqa: E402
from robustbench_mr.verifiers.spec.vnnlib import read_vnnlib  # noqa: E402
from robustbench_mr.verifiers.decide.instance import InstanceStatus, check_instance, confirm_counterexample  # noqa: E402

TIMEOUT = 30.0


def _expected(shared_dir):
    with open(shared_dir / "data" / "vnncomp" / "expected.csv", newline="") as fh:
        return {(r["benchmark"], r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(fh)}


def _solver():
    return pytest.importorskip("robustbench_mr.verifiers.decide.chain", reason="the verifier engineer's solve.check_property is not present yet")


# ----------------------------------------------------------------------------------------
# the sat confirmation, with a fake solver (no MILP needed)


class _FakeStatus(Enum):
    SAT = "sat"
    UNSAT = "unsat"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class _FakeResult:
    status: _FakeStatus
    counterexample: np.ndarray | None = None
    message: str = ""


def _install_fake_solver(monkeypatch, answer):
    mod = types.ModuleType("robustbench_mr.verifiers.decide.chain")
    mod.check_property = lambda network, prop, timeout, **kw: answer(network, prop)
    monkeypatch.setitem(sys.modules, "robustbench_mr.verifiers.decide.chain", mod)


def _test_files(shared_dir, onnx="test_sat.onnx", vnnlib="test_prop.vnnlib"):
    folder = shared_dir / "data" / "vnncomp" / "test"
    if not (folder / onnx).is_file():
        pytest.skip("shared vnncomp/test not present")
    return folder / onnx, folder / vnnlib


def test_a_claimed_counterexample_is_checked_by_onnxruntime(shared_dir, monkeypatch):
    net_path, prop_path = _test_files(shared_dir, "test_unsat.onnx")
    # a lying solver: "sat" at the box centre of an instance whose answer is unsat
    _install_fake_solver(monkeypatch, lambda net, prop: _FakeResult(_FakeStatus.SAT, (prop.lower + prop.upper) / 2))
    r = check_instance(net_path, prop_path, 5.0, falsify_samples=0)
    assert r.status is InstanceStatus.UNKNOWN and r.counterexample is None
    assert "not confirmed by onnxruntime" in r.message
    # sat without a counterexample is not sat either
    _install_fake_solver(monkeypatch, lambda net, prop: _FakeResult(_FakeStatus.SAT, None))
    assert check_instance(net_path, prop_path, 5.0, falsify_samples=0).status is InstanceStatus.UNKNOWN


def test_unsat_needs_every_property_and_timeouts_propagate(shared_dir, monkeypatch):
    net_path, prop_path = _test_files(shared_dir)
    _install_fake_solver(monkeypatch, lambda net, prop: _FakeResult(_FakeStatus.UNSAT))
    assert check_instance(net_path, prop_path, 5.0, falsify_samples=0).status is InstanceStatus.UNSAT
    _install_fake_solver(monkeypatch, lambda net, prop: _FakeResult(_FakeStatus.TIMEOUT))
    assert check_instance(net_path, prop_path, 5.0, falsify_samples=0).status is InstanceStatus.TIMEOUT

    def boom(net, prop):
        raise RuntimeError("solver crashed")

    _install_fake_solver(monkeypatch, boom)
    r = check_instance(net_path, prop_path, 5.0, falsify_samples=0)
    assert r.status is InstanceStatus.ERROR and "solver crashed" in r.message


def test_sampling_finds_easy_counterexamples_before_the_solver(shared_dir, monkeypatch):
    net_path, prop_path = _test_files(shared_dir)  # test_sat: most of the box is unsafe
    calls = []
    _install_fake_solver(monkeypatch, lambda net, prop: calls.append(1) or _FakeResult(_FakeStatus.TIMEOUT))
    r = check_instance(net_path, prop_path, 5.0)
    assert r.status is InstanceStatus.SAT and not calls
    (prop,) = read_vnnlib(prop_path)
    y = onnxruntime_forward(net_path, r.counterexample)
    assert prop.contains_input(r.counterexample, tol=1e-6) and prop.is_violated_by(y)
    np.testing.assert_allclose(r.output, y)


def test_confirm_counterexample_clips_into_the_box_and_checks_the_outputs(shared_dir):
    rng = np.random.default_rng(0)
    found = {}
    for onnx_name in ("test_sat.onnx", "test_unsat.onnx"):
        net_path, prop_path = _test_files(shared_dir, onnx_name)
        (prop,) = read_vnnlib(prop_path)
        pts = rng.uniform(prop.lower, prop.upper, size=(200, prop.lower.size))
        for p, y in zip(pts, onnxruntime_forward(net_path, pts)):
            found.setdefault(prop.is_violated_by(y), (net_path, prop, p))
    assert set(found) == {True, False}, "the samples should contain safe and violating points"
    net_path, prop, safe = found[False]
    assert confirm_counterexample(net_path, prop, safe) is None
    net_path, prop, bad = found[True]
    x, y = confirm_counterexample(net_path, prop, bad + 1e-3 * (prop.upper - prop.lower))  # nudged out of the box, clipped back
    assert prop.contains_input(x, tol=1e-6) and prop.is_violated_by(y)


# ----------------------------------------------------------------------------------------
# real instances with the exact verifier

FAST_INSTANCES = [
    ("test", "test_nano.onnx", "test_nano.vnnlib"),
    ("test", "test_tiny.onnx", "test_tiny.vnnlib"),
    ("test", "test_small.onnx", "test_small.vnnlib"),
    ("test", "test_sat.onnx", "test_prop.vnnlib"),
    ("test", "test_unsat.onnx", "test_prop.vnnlib"),
    ("acasxu", "onnx/ACASXU_run2a_2_1_batch_2000.onnx", "vnnlib/prop_2.vnnlib"),  # sat
    ("acasxu", "onnx/ACASXU_run2a_1_9_batch_2000.onnx", "vnnlib/prop_3.vnnlib"),  # sat
    ("acasxu", "onnx/ACASXU_run2a_4_8_batch_2000.onnx", "vnnlib/prop_3.vnnlib"),  # unsat
    ("acasxu", "onnx/ACASXU_run2a_3_4_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),  # unsat (input splitting decides it)
    ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_12_0.05.vnnlib"),  # sat
    ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_7_0.03.vnnlib"),  # unsat
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_13_0.03.vnnlib"),  # unsat
    ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_2_0.03.vnnlib"),  # sat, found by the MILP (not by sampling)
]


@pytest.mark.parametrize("bench, onnx_rel, vnnlib_rel", FAST_INSTANCES, ids=lambda v: str(v).split("/")[-1])
def test_instances_give_the_published_answer_or_a_timeout(shared_dir, bench, onnx_rel, vnnlib_rel):
    _solver()
    folder = shared_dir / "data" / "vnncomp" / bench
    if not (folder / onnx_rel).is_file():
        pytest.skip(f"{bench}/{onnx_rel} not present")
    expected = _expected(shared_dir).get((bench, onnx_rel, vnnlib_rel))
    assert expected in ("sat", "unsat")
    r = check_instance(folder / onnx_rel, folder / vnnlib_rel, TIMEOUT)
    assert r.status.value not in ("sat", "unsat") or r.status.value == expected, f"WRONG ANSWER {bench} {onnx_rel} {vnnlib_rel}: got {r.status.value}, expected {expected} ({r.message})"
    if r.status is InstanceStatus.UNKNOWN:
        # not wrong, but not the expected answer either: the solver's incumbent failed the
        # forward-pass check (a solver problem, shown as XFAIL rather than hidden)
        pytest.xfail(f"unknown: {r.message}")
    assert r.status.value in (expected, "timeout"), f"{bench} {onnx_rel} {vnnlib_rel}: got {r.status.value}, expected {expected} ({r.message})"
    if r.status is InstanceStatus.SAT:
        # independent check of the witness on the original file
        props = read_vnnlib(folder / vnnlib_rel)
        y = onnxruntime_forward(folder / onnx_rel, r.counterexample)
        assert any(p.contains_input(r.counterexample, tol=1e-6) and p.is_violated_by(y) for p in props)


def test_vnnlib_command_prints_one_word_and_writes_the_witness(shared_dir, tmp_path, capfd):
    _solver()
    net_path, prop_path = _test_files(shared_dir)
    out = tmp_path / "result.txt"
    assert mr_eval(["vnnlib", str(net_path), str(prop_path), "--timeout", str(TIMEOUT), "--out", str(out)]) == 0
    printed = capfd.readouterr().out  # file-descriptor level: native libraries' prints count too
    assert printed.count("\n") == 1
    printed = printed.strip()
    assert printed in ("sat", "timeout")  # expected sat
    text = out.read_text()
    assert text.splitlines()[0] == printed
    if printed == "sat":
        vals = dict((f"{k}_{i}", float(v)) for k, i, v in re.findall(r"\((X|Y)_(\d+) ([^()\s]+)\)", text))
        x = np.array([vals[f"X_{i}"] for i in range(5)])
        (prop,) = read_vnnlib(prop_path)
        y = onnxruntime_forward(net_path, x)
        assert prop.contains_input(x, tol=1e-6) and prop.is_violated_by(y)
        np.testing.assert_allclose([vals[f"Y_{j}"] for j in range(5)], y)


def test_vnnlib_command_bad_file_is_one_line(shared_dir, tmp_path, capsys):
    net_path, _ = _test_files(shared_dir)
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    assert mr_eval(["vnnlib", str(net_path), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.vnnlib:2:" in err


def test_vnncomp_command_fills_the_database_and_resumes(shared_dir, tmp_path, capsys):
    _solver()
    from robustbench_mr.verifiers.runs.vnncomp import VnncompOptions, run_vnncomp
    from robustbench_mr.results_db import ResultsDB

    src = shared_dir / "data" / "vnncomp"
    if not (src / "test" / "instances.csv").is_file():
        pytest.skip("shared vnncomp/test not present")
    bench = tmp_path / "vnncomp"
    shutil.copytree(src / "test", bench / "test")
    shutil.copy(src / "expected.csv", bench / "expected.csv")
    db = tmp_path / "r.sqlite"
    assert mr_eval(["vnncomp", str(bench), "--db", str(db), "--jobs", "2", "--timeout-cap", str(TIMEOUT)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:8] == ["benchmark", "inst", "sat", "unsat", "timeout", "unknown", "error", "wrong"]
    line = [ln for ln in table.splitlines() if ln.startswith("test ")][0].split()
    assert line[1] == "5" and line[7] == "0"
    with ResultsDB(db) as rdb:
        rows = rdb.rows(kind="vnncomp")
    assert len(rows) == 5
    by = {(r.ckpt_path.split("/")[-1], r.split): r for r in rows}
    for (net, prop), r in by.items():
        assert r.dataset == "test" and r.norm == "vnnlib" and r.method == "milp" and r.idx == 0 and r.eps == 0.0
        assert r.details["expected"] in ("sat", "unsat") and r.details["wrong"] is False
        assert r.status in (r.details["expected"], "timeout")
    # a rerun skips what is decided
    again = run_vnncomp(VnncompOptions(bench_dir=bench, db=db, timeout_cap=TIMEOUT, progress=False))
    decided = [o for o in again if o.status in ("sat", "unsat")]
    assert decided and all(o.from_db for o in decided)


def test_vnncomp_options_reach_the_verifier_and_the_rows(shared_dir, tmp_path, monkeypatch):
    """--bounds / --solver / --branching go to every instance's check_instance (as mr-eval vnnlib
    passes them) and into the rows: non-default bounds get their own rows (method milp-BOUNDS),
    a stored timeout is not reused for another branching rule, a decided row is reused under any."""
    from robustbench_mr.checkpoint import file_sha256
    from robustbench_mr.errors import UserError
    from robustbench_mr.results_db import ResultRow, ResultsDB
    from robustbench_mr.verifiers.decide import instance_limit
    from robustbench_mr.verifiers.runs.vnncomp import VnncompOptions, find_instances, run_vnncomp

    src = shared_dir / "data" / "vnncomp"
    if not (src / "test" / "instances.csv").is_file():
        pytest.skip("shared vnncomp/test not present")
    seen: list[dict] = []
    real = instance_limit.instance_in_child

    def spy(fn, onnx, vnnlib, deadline, **kw):
        seen.append(kw)
        return real(fn, onnx, vnnlib, deadline, **kw)

    monkeypatch.setattr(instance_limit, "instance_in_child", spy)  # jobs=1: joblib runs the worker in this process
    db = tmp_path / "r.sqlite"
    one = find_instances(src, ("test",))[:1]
    only = tmp_path / "one.csv"
    only.write_text(f"benchmark,onnx,vnnlib\ntest,{one[0].onnx},{one[0].vnnlib}\n")
    base = dict(bench_dir=src, benchmarks=("test",), db=db, jobs=1, timeout_cap=TIMEOUT, only=only, progress=False)
    got = run_vnncomp(VnncompOptions(**base, bounds="crown", branching="fsb"))
    assert len(got) == 1 and got[0].status == one[0].expected and not got[0].from_db
    assert seen == [{"bounds": "crown", "solver": "highs", "branching": "fsb"}]
    with ResultsDB(db) as rdb:
        (row,) = rdb.rows(kind="vnncomp")
    assert (row.method, row.solver, row.details["bounds"], row.details["branching"]) == ("milp-crown", "highs", "crown", "fsb")
    assert row.solver_version.startswith("HiGHS ")
    # the defaults keep the historical key "milp": a crown row is not theirs
    got = run_vnncomp(VnncompOptions(**base))
    assert not got[0].from_db and seen[-1] == {"bounds": "lp", "solver": "highs", "branching": "babsr"}
    with ResultsDB(db) as rdb:
        assert sorted(r.method for r in rdb.rows(kind="vnncomp")) == ["milp", "milp-crown"]
    # a decided row stands under another branching rule; a timeout does not
    assert run_vnncomp(VnncompOptions(**base, branching="fsb"))[0].from_db
    with ResultsDB(db) as rdb:
        rdb.put(ResultRow(kind="vnncomp", ckpt_sha=file_sha256(one[0].onnx_path), ckpt_path=str(one[0].onnx_path), dataset="test",
                          split=one[0].vnnlib, idx=0, norm="vnnlib", eps=0.0, method="milp", status="timeout", seconds=1e3,
                          timeout=1e3, solver="highs", details={"branching": "babsr"}))
    assert run_vnncomp(VnncompOptions(**base))[0].from_db
    calls = len(seen)
    again = run_vnncomp(VnncompOptions(**base, branching="fsb"))
    assert not again[0].from_db and len(seen) == calls + 1 and again[0].status == one[0].expected
    with pytest.raises(UserError, match="--branching 'nope'"):
        VnncompOptions(**base, branching="nope")


def test_only_runs_the_instances_a_csv_lists_and_a_bad_csv_is_one_line(shared_dir, tmp_path):
    from robustbench_mr.errors import UserError
    from robustbench_mr.verifiers.runs.vnncomp import VnncompOptions, find_instances, run_vnncomp

    src = shared_dir / "data" / "vnncomp"
    if not (src / "test" / "instances.csv").is_file():
        pytest.skip("shared vnncomp/test not present")
    every = find_instances(src, ("test",))
    pick = every[1:3]
    listed = tmp_path / "subset.csv"
    with open(listed, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["benchmark", "onnx", "vnnlib", "note"])
        w.writerows([(i.benchmark, i.onnx, i.vnnlib, "x") for i in pick] + [("acasxu", pick[0].onnx, pick[0].vnnlib, "other benchmark")])
    got = run_vnncomp(VnncompOptions(bench_dir=src, benchmarks=("test",), db=tmp_path / "r.sqlite", jobs=1, timeout_cap=TIMEOUT,
                                     only=listed, progress=False))
    assert sorted((o.instance.onnx, o.instance.vnnlib) for o in got) == sorted((i.onnx, i.vnnlib) for i in pick)
    bad = tmp_path / "bad.csv"
    bad.write_text("onnx,vnnlib\na,b\n")
    with pytest.raises(UserError, match="no column benchmark"):
        run_vnncomp(VnncompOptions(bench_dir=src, db=tmp_path / "r.sqlite", only=bad, progress=False))


def test_vnnlib_command_stdout_is_only_the_answer_when_the_milp_runs(shared_dir, capfd):
    _solver()
    folder = shared_dir / "data" / "vnncomp" / "acasxu"
    net, prop = folder / "onnx/ACASXU_run2a_3_4_batch_2000.onnx", folder / "vnnlib/prop_4.vnnlib"
    if not net.is_file():
        pytest.skip("acasxu not in shared data")
    assert mr_eval(["vnnlib", str(net), str(prop), "--timeout", str(TIMEOUT)]) == 0
    assert capfd.readouterr().out in ("unsat\n", "timeout\n")  # expected unsat; HiGHS's banner must not reach stdout
