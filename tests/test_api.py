"""The Python API on tensors (robustbench_mr.api): verify / attack / benchmark any nn.Module,
callable attacks, and the old options-object entry points."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import robustbench_mr as rb
from robustbench_mr.attacks.base import Norm
from robustbench_mr.attacks.pgd import PGD, PGDConfig
from robustbench_mr.attacks.runner import AttackStatus
from robustbench_mr.verifiers.status import VerifyResult, VerifyStatus


def _identity_net() -> nn.Sequential:
    """Two inputs, two classes, logits = relu(x): class 0 wins while x0 > x1, so the L-inf
    radius of x is (x0 - x1) / 2 exactly."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        for lin in (m[1], m[3]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return m.eval()


X2 = torch.tensor([[0.6, 0.4], [0.3, 0.9], [0.55, 0.5]])  # radii 0.1, 0.3, and misclassified (label 1)
Y2 = torch.tensor([0, 1, 1])


def test_verify_returns_typed_exact_verdicts_on_a_tiny_net() -> None:
    m = _identity_net()
    small = rb.verify(m, X2, Y2, 0.05, timeout=5)
    assert all(isinstance(r, VerifyResult) for r in small) and [r.idx for r in small] == [0, 1, 2]
    assert [r.status for r in small] == [VerifyStatus.VERIFIED, VerifyStatus.VERIFIED, VerifyStatus.MISCLASSIFIED]
    big = rb.verify(m, X2, Y2, 0.15, timeout=5)
    assert [r.status for r in big] == [VerifyStatus.FALSIFIED, VerifyStatus.VERIFIED, VerifyStatus.MISCLASSIFIED]
    cex = torch.as_tensor(big[0].counterexample).reshape(1, 2).float()
    assert float((cex - X2[:1]).abs().max()) <= 0.15 + 1e-6 and int(m(cex).argmax()) == 1
    assert [r.prediction for r in big] == [0, 1, 0]


def test_attack_result_holds_points_outcomes_and_worst_case() -> None:
    m = _identity_net()
    res = rb.attack(m, X2, Y2, 0.15, attacks=("pgd",), pgd_restarts=2)
    assert isinstance(res, rb.AttackResult) and len(res.runs) == 1
    run = res["pgd"]
    assert run.norm is Norm.LINF and run.eps == pytest.approx(0.15) and run.x_adv.shape == X2.shape
    assert run.status == (AttackStatus.BROKEN, AttackStatus.ROBUST, AttackStatus.MISCLASSIFIED)
    assert res.worst == run.status and res.robust_accuracy == pytest.approx(1 / 3) and res.clean_accuracy == pytest.approx(2 / 3)
    assert float((run.x_adv - X2).abs().max()) <= 0.15 + 1e-6 and float(run.x_adv.min()) >= 0 and float(run.x_adv.max()) <= 1
    assert int(m(res.x_worst[:1]).argmax()) == 1 and torch.equal(res.x_worst[1:], X2[1:])
    assert res["pgd"].adv_prediction.tolist() == [1, 1, 0]
    assert rb.attack(m, X2, Y2, 0.05, attacks="pgd", pgd_restarts=2).worst == (AttackStatus.ROBUST, AttackStatus.ROBUST,
                                                                               AttackStatus.MISCLASSIFIED)


def _digits_net(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x, y = rb.load_dataset("digits", "train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    for step in range(150):  # plain SGD by hand (torch.optim costs seconds to import)
        b = torch.arange(step * 50, step * 50 + 50) % len(y)
        model.zero_grad()
        nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    xt, yt = rb.load_dataset("digits", "test")
    return model.eval(), xt, yt


def test_script_verify_and_attack_an_arbitrary_sequential() -> None:
    """What a user writes: any small nn.Sequential, tensors in, typed results out."""
    model, x, y = _digits_net()
    verdicts = rb.verify(model, x[:8], y[:8], eps=0.06, timeout=10)
    attacked = rb.attack(model, x[:8], y[:8], eps=0.06, attacks=("pgd",), pgd_restarts=2)
    with torch.no_grad():
        pred = model(x[:8]).argmax(1)
    assert [r.status is VerifyStatus.MISCLASSIFIED for r in verdicts] == (pred != y[:8]).tolist()
    assert {r.status for r in verdicts} >= {VerifyStatus.VERIFIED, VerifyStatus.FALSIFIED}  # both branches exercised
    assert attacked.clean_prediction.tolist() == pred.tolist()
    assert all(r.status in (VerifyStatus.VERIFIED, VerifyStatus.FALSIFIED, VerifyStatus.MISCLASSIFIED) for r in verdicts)
    for r, worst in zip(verdicts, attacked.worst):
        if r.status is VerifyStatus.VERIFIED:  # sound: nothing breaks a verified input
            assert worst is AttackStatus.ROBUST
        if r.status is VerifyStatus.FALSIFIED:
            z = torch.as_tensor(r.counterexample).reshape(1, 1, 8, 8).float()
            assert float((z - x[r.idx]).abs().max()) <= 0.06 + 1e-6 and int(model(z).argmax()) != int(y[r.idx])
    assert model.training is False and all(p.requires_grad for p in model.parameters())  # the caller's model is untouched


def test_callable_attacks() -> None:
    model, x, y = _digits_net()
    xb, yb = x[:8], y[:8]
    pgd = PGD("linf", 0.05, PGDConfig(steps=5, restarts=1))
    direct = pgd.perturb(model, xb, yb)
    assert torch.equal(pgd(model, xb, yb), direct)
    bound = PGD("linf", 0.05, PGDConfig(steps=5, restarts=1), model=model)
    assert torch.equal(bound(xb, yb), direct)
    with pytest.raises(rb.UserError, match="built without a model"):
        pgd(xb, yb)
    model.train()
    pgd(model, xb, yb)
    assert model.training  # eval during the attack, flags restored after
    model.eval()
    with pytest.raises(TypeError):
        pgd(model, xb)
    from robustbench_mr.attacks.wasserstein import WassersteinAttack, WassersteinConfig

    w = WassersteinAttack(0.05, WassersteinConfig(iterations=2, sinkhorn_max_iter=5), model=model)
    assert w(xb[:2], yb[:2]).shape == (2, 1, 8, 8)


def test_bad_inputs_are_one_line_errors() -> None:
    m = _identity_net()
    for x, y, fragment in ((X2 * 255, Y2, "pixels in [0,1]"), (X2, Y2[:2], "one label per input"), (X2, torch.tensor([0, 1, 2]), "labels must lie in 0..1")):
        with pytest.raises(rb.UserError) as err:
            rb.verify(m, x, y, 0.1)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(rb.UserError, match="eps"):
        rb.verify(m, X2, Y2)


def test_options_objects_still_run_the_checkpoint_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustbench_mr.attacks.runner as arunner
    import robustbench_mr.verifiers.runs.dataset as vrunner

    seen = []
    monkeypatch.setattr(vrunner, "verify", lambda options: seen.append(options) or "vsummary")
    monkeypatch.setattr(arunner, "attack", lambda options: seen.append(options) or "asummary")
    vo = vrunner.VerifyOptions(checkpoint="m.pt", eps=0.1, jobs=1)
    ao = arunner.AttackOptions(checkpoint=Path("m.pt"))
    assert rb.verify(vo) == "vsummary" and rb.attack(ao) == "asummary" and seen == [vo, ao]
    assert rb.verify_checkpoint(vo) == "vsummary" and rb.attack_checkpoint(ao) == "asummary"


def test_benchmark_writes_rows_the_report_shows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustbench_mr.cli.eval import main
    from robustbench_mr.results_db import ResultsDB

    model, _, _ = _digits_net()
    db = tmp_path / "r.sqlite"
    res = rb.benchmark(model, "digits", "Linf", eps=0.06, n=4, results=db, attacks=("pgd",), name="tiny-mlp", timeout=10, pgd_restarts=1)
    assert isinstance(res, rb.BenchmarkResult) and res.n == 4 and res.name == "tiny-mlp"
    assert res.verified_accuracy is not None and res.verified_accuracy <= res.robust_accuracy <= res.clean_accuracy
    with ResultsDB(db) as store:
        rows = store.rows(ckpt_sha=res.sha256)
    assert sorted({(r.kind, r.idx) for r in rows}) == [(k, i) for k in ("attack", "verify") for i in range(4)]
    assert {r.ckpt_path for r in rows} == {"tiny-mlp"}
    again = rb.benchmark(model, "digits", "Linf", eps=0.06, n=4, results=db, attacks=("pgd",), name="tiny-mlp", timeout=10, pgd_restarts=1)
    assert again == res  # same model, same digest: resumed from the rows
    capsys.readouterr()
    assert main(["report", "--db", str(db), "--dataset", "digits"]) == 0
    assert f"tiny-mlp ({res.sha256[:8]})" in capsys.readouterr().out


def test_benchmark_skips_verification_it_cannot_do(tmp_path: Path) -> None:
    model, _, _ = _digits_net()
    res = rb.benchmark(model, "digits", "L2", eps=0.3, n=2, results=tmp_path / "r.sqlite", attacks=("pgd",), pgd_restarts=1)
    assert res.verified_accuracy is None and "L-inf only" in res.verify_note and res.threat_model == "L2"
