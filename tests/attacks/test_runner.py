"""The attack runner and ``mr-eval attack``: one row per input, independent re-checks, resume."""

from __future__ import annotations

import torch
import pytest

from robustbench_mr.attacks.base import Attack, Norm
from robustbench_mr.attacks.runner import AttackOptions, attack, plan_jobs, validate_points
from robustbench_mr.cli.eval import main
from robustbench_mr.data import load_dataset
from robustbench_mr.errors import UserError
from robustbench_mr.results_db import ResultsDB


def test_cli_attack_writes_rows_and_resumes(digits_ckpt, digits_model, tmp_path, capsys):
    db_path = tmp_path / "r.sqlite"
    argv = ["attack", str(digits_ckpt), "--attack", "pgd", "--n", "40", "--db", str(db_path), "--pgd-restarts", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pgd" in out and "8/255" in out
    x, y = load_dataset("digits", "test")
    with ResultsDB(db_path) as db:
        rows = db.rows(kind="attack", method="pgd")
    assert sorted(r.idx for r in rows) == list(range(40))
    clean = digits_model(x[:40]).argmax(1)
    for r in rows:
        assert r.label == int(y[r.idx]) and r.prediction == int(clean[r.idx])
        assert r.norm == "linf" and r.eps == pytest.approx(8 / 255)
        if r.status == "misclassified":
            assert r.prediction != r.label
        else:
            assert r.prediction == r.label
            assert (r.status == "broken") == (r.details["adv_prediction"] != r.label)
    # a rerun decides nothing new
    summary = attack(AttackOptions(checkpoint=digits_ckpt, n=40, db=db_path, pgd_restarts=2))
    assert summary.jobs[0].resumed == 40 and summary.jobs[0].n == 40
    assert summary.jobs[0].robust + summary.jobs[0].broken + summary.jobs[0].misclassified == 40


class _FarAwayAttack(Attack):
    """Claims success with points far outside the ball (another input's image)."""

    name = "bogus"
    norm = Norm.LINF
    eps = 2 / 255

    def perturb(self, model, x, y):
        return torch.roll(x, 1, dims=0)


def test_points_outside_the_ball_are_not_trusted(digits_model):
    x, y = load_dataset("digits", "test")
    x, y = x[:30], y[:30]
    keep = digits_model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    atk = _FarAwayAttack()
    raw = atk.perturb(digits_model, x, y)
    assert (digits_model(raw).argmax(1) != y).sum() > 10  # the bogus points do misclassify
    broken, pred, dist = validate_points(digits_model, atk, x, y, raw)
    assert (dist <= 2 / 255 + 1e-6).all()
    # only what the re-projected point really does counts
    reproj = torch.max(torch.min(raw, x + 2 / 255), x - 2 / 255).clamp(0, 1)
    assert torch.equal(broken, digits_model(reproj).argmax(1) != y)
    assert broken.sum() < (digits_model(raw).argmax(1) != y).sum()


def test_plan_all_and_bad_options(digits_ckpt, tmp_path):
    jobs = plan_jobs(AttackOptions(checkpoint=digits_ckpt, attack="all", eps=4 / 255))
    assert [(j.method, j.norm.value) for j in jobs] == [("pgd", "linf"), ("autoattack", "linf"), ("autoattack", "l2"), ("wasserstein", "wasserstein")]
    assert jobs[0].eps == pytest.approx(4 / 255) and jobs[2].eps == 0.5 and jobs[3].eps == 0.1
    with pytest.raises(UserError):
        plan_jobs(AttackOptions(checkpoint=digits_ckpt, attack="fgsm"))
    with pytest.raises(UserError):
        plan_jobs(AttackOptions(checkpoint=digits_ckpt, attack="all", norm="l2"))
    with pytest.raises(UserError):
        attack(AttackOptions(checkpoint=digits_ckpt, start=10_000, db=tmp_path / "x.sqlite"))


def test_cli_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    assert main(["attack", str(tmp_path / "missing.pt"), "--db", str(tmp_path / "r.sqlite")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]
