"""End to end: ``mr-eval verify`` on a tiny seeded digits model; soundness cross-checks,
counterexample files, resume, and the Dask backend on a LocalCluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_mr.checkpoint import load_checkpoint
from robustbench_mr.cli.eval import main
from robustbench_mr.data.datasets import load_dataset
from robustbench_mr.results_db import ResultsDB
from robustbench_mr.verifiers.runs import dataset as runner
from robustbench_mr.verifiers.runs.dataset import VerifyOptions, verify

EPS = 0.05


def _strong_pgd_breaks(model: torch.nn.Module, x: torch.Tensor, label: int, eps: float) -> bool:
    """Independent attack: 60 steps x 4 random restarts of cross-entropy PGD."""
    g = torch.Generator().manual_seed(1)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    for _ in range(4):
        xa = (x + (torch.rand(x.shape, generator=g, dtype=x.dtype) * 2 - 1) * eps).clamp(lo, hi)
        for _ in range(60):
            xa.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xa[None]), torch.tensor([label]))
            (grad,) = torch.autograd.grad(loss, xa)
            xa = torch.max(torch.min(xa.detach() + eps / 10 * grad.sign(), hi), lo)
            if int(model(xa[None]).argmax()) != label:
                return True
    return False


def test_cli_verify_is_sound_and_resumes(digits_mlp_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    args = ["verify", str(digits_mlp_ckpt), "--eps", str(EPS), "--n", "30", "--jobs", "2", "--timeout", "20", "--db", str(db)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "verified accuracy" in out and "PGD accuracy" in out
    model, meta = load_checkpoint(digits_mlp_ckpt)
    model = model.double()
    x, y = load_dataset("digits", "test", None, False)
    with ResultsDB(db) as d:
        rows = d.rows(kind="verify", ckpt_sha=meta.sha256)
    assert len(rows) == 30 and {r.idx for r in rows} == set(range(30))
    assert {r.details["branching"] for r in rows} == {"babsr"}  # every row says how its search branched
    statuses = [r.status for r in rows]
    assert statuses.count("verified") >= 5 and statuses.count("falsified") >= 1, statuses
    for r in rows:
        xi = torch.as_tensor(x[r.idx], dtype=torch.float64)
        pred = int(model(xi[None]).argmax())
        assert r.prediction == pred and r.label == int(y[r.idx])
        if r.status == "verified":
            assert not _strong_pgd_breaks(model, xi, r.label, EPS), f"input {r.idx} verified but PGD breaks it"
        if r.status == "falsified":
            adv = torch.from_numpy(np.load(r.details["counterexample"]))
            assert float((adv - xi).abs().max()) <= EPS + 1e-12 and adv.min() >= 0 and adv.max() <= 1
            with torch.no_grad():
                out_adv = model(adv[None])[0].numpy()
            assert np.delete(out_adv, r.label).max() >= out_adv[r.label]  # some other class wins (ties count)

    # resume: decided inputs are not recomputed (a worker call would now fail loudly)
    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("decided input recomputed")

    monkeypatch.setattr(runner, "verify_one", boom)
    s = verify(VerifyOptions(str(digits_mlp_ckpt), EPS, n=30, jobs=1, timeout=20, db=str(db), progress=False))
    assert s.total == 30 and s.counts["verified"] == statuses.count("verified")


def test_bad_options_are_one_line_user_errors(digits_mlp_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["verify", str(digits_mlp_ckpt), "--eps", "0.1", "--backend", "dask", "--db", str(tmp_path / "x.sqlite")]) == 1
    assert "--scheduler" in capsys.readouterr().err


def test_dask_backend_on_a_local_cluster(digits_mlp_ckpt: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s_dask = verify(VerifyOptions(str(digits_mlp_ckpt), EPS, n=8, jobs=1, timeout=20, db=str(tmp_path / "d.sqlite"),
                                      backend="dask", scheduler=cluster.scheduler_address, progress=False))
    s_local = verify(VerifyOptions(str(digits_mlp_ckpt), EPS, n=8, jobs=1, timeout=20, db=str(tmp_path / "l.sqlite"), progress=False))
    assert s_dask.total == 8
    assert [r.status for r in s_dask.results] == [r.status for r in s_local.results]


def test_solver_cbc_gives_the_same_verdicts_and_is_recorded(digits_mlp_ckpt: Path, tmp_path: Path) -> None:
    from robustbench_mr.verifiers.milp.pulp_solver import SolverUnavailable, check_available

    try:
        check_available("cbc")
    except SolverUnavailable:
        pytest.skip("PuLP's CBC binary is not available")
    db = tmp_path / "s.sqlite"
    s_highs = verify(VerifyOptions(str(digits_mlp_ckpt), EPS, n=6, jobs=1, timeout=20, db=str(db), progress=False))
    s_cbc = verify(VerifyOptions(str(digits_mlp_ckpt), EPS, n=6, jobs=1, timeout=20, db=str(db), solver="cbc", progress=False))
    assert [r.status for r in s_cbc.results] == [r.status for r in s_highs.results]
    _, meta = load_checkpoint(digits_mlp_ckpt)
    with ResultsDB(db) as d:
        rows = d.rows(kind="verify", ckpt_sha=meta.sha256)
    by_solver = {r.solver: r for r in rows}
    assert set(by_solver) == {"highs", "cbc"}
    assert by_solver["highs"].solver_version.startswith("HiGHS ") and by_solver["cbc"].solver_version.startswith("CBC ")


def test_unavailable_solver_is_a_one_line_user_error(digits_mlp_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from robustbench_mr.verifiers.milp.pulp_solver import SolverUnavailable, check_available

    try:
        check_available("cplex")
        pytest.skip("CPLEX is installed here")
    except SolverUnavailable:
        pass
    assert main(["verify", str(digits_mlp_ckpt), "--eps", "0.1", "--solver", "cplex", "--db", str(tmp_path / "x.sqlite")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--solver cplex" in err and len(err.splitlines()) == 1, err


class _Res(nn.Module):
    """A tiny residual net: the graph form, so ``--device`` applies to it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.o = nn.Linear(16, 12), nn.Linear(12, 12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x.flatten(1)))
        return self.o(torch.relu(h + torch.relu(self.b(h))))


def test_device_option_reaches_the_graph_engine_and_refuses_a_missing_gpu() -> None:
    import argparse

    import robustbench_mr
    from robustbench_mr.errors import UserError
    from robustbench_mr.verifiers.runs.options import device_arg

    assert device_arg(" CUDA:1 ") == "cuda:1" and device_arg("auto") == "auto"
    with pytest.raises(argparse.ArgumentTypeError, match="not a device"):
        device_arg("gpu")
    torch.manual_seed(0)
    model = _Res().eval()
    x = torch.rand(3, 1, 4, 4)
    y = model(x).argmax(1)
    cpu = robustbench_mr.verify(model, x, y, 0.002, timeout=20, device="cpu")
    auto = robustbench_mr.verify(model, x, y, 0.002, timeout=20, device="auto")
    assert [r.status for r in cpu] == [r.status for r in auto]
    assert all(r.status.value == "verified" for r in cpu)  # a tiny radius: the bounds prove it
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            robustbench_mr.verify(model, x, y, 0.002, timeout=20, device="cuda")
