"""Reports and leaderboards from rows inserted directly (no dependency on the verifier's code):
one board per (dataset, threat model, eps), counts checked against a brute-force recount with
pandas, paper rows only on their own setting, nothing stored left out, CSV round trip,
contradiction detection, ranking within a board, bad input as one line."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from robustbench_mr.cli.eval import main
from robustbench_mr.errors import UserError
from robustbench_mr.reports.consistency import check_consistency, flags
from robustbench_mr.reports.published import load_published
from robustbench_mr.reports.render import parse_csv, render_csv, render_markdown
from robustbench_mr.reports.tables import Setting, build_boards, build_report, canonical_eps, eps_text, group_by_checkpoint
from robustbench_mr.results_db import ResultRow, ResultsDB

EPS = 8 / 255
VERIFY_STATUSES = ["verified", "falsified", "timeout", "error", "unknown"]


def _populate(db: ResultsDB, sha: str, n: int, seed: int, contradiction: bool = False, dataset: str = "digits",
              linf_eps: float = EPS, model: str | None = "small / mr") -> None:
    """Random but self-consistent rows: verified inputs are never broken, unless asked."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randrange(10)
        pred = label if rng.random() < 0.8 else (label + 1) % 10
        base = dict(ckpt_sha=sha, ckpt_path=f"/ckpts/{sha[:4]}.pt", dataset=dataset, split="test", idx=i, label=label, prediction=pred, model=model)
        if pred != label:
            v_status = a_status = "misclassified"
        else:
            v_status = rng.choice(VERIFY_STATUSES)
            a_status = "robust" if v_status == "verified" or rng.random() < 0.5 else "broken"
            if v_status == "falsified":
                a_status = rng.choice(["robust", "broken"])
        rows.append(ResultRow(kind="verify", norm="linf", eps=linf_eps, method="mip", status=v_status, seconds=rng.random(), **base))
        rows.append(ResultRow(kind="attack", norm="linf", eps=linf_eps, method="pgd", status=a_status, **base))
        aa = "broken" if a_status == "broken" or (a_status == "robust" and v_status != "verified" and rng.random() < 0.2) else a_status
        rows.append(ResultRow(kind="attack", norm="linf", eps=linf_eps, method="autoattack", status=aa, **base))
        rows.append(ResultRow(kind="attack", norm="l2", eps=0.5, method="autoattack", status=rng.choice(["robust", "broken"]) if pred == label else "misclassified", **base))
        rows.append(ResultRow(kind="attack", norm="wasserstein", eps=0.1, method="wasserstein", status=rng.choice(["robust", "broken"]) if pred == label else "misclassified", **base))
    if contradiction:
        first = next(r for r in rows if r.kind == "verify" and r.status == "verified")
        # broken at a smaller radius than the one verified: impossible if both are right
        rows.append(ResultRow(kind="attack", ckpt_sha=sha, ckpt_path=first.ckpt_path, dataset=dataset, split="test", idx=first.idx,
                              norm="linf", eps=4 / 255, method="pgd", status="broken", label=first.label, prediction=first.prediction))
    db.put_many(rows)


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    p = tmp_path / "results.sqlite"
    with ResultsDB(p) as db:
        _populate(db, "a" * 64, 57, seed=1)
        _populate(db, "b" * 64, 31, seed=2)
    return p


@pytest.fixture()
def mixed_db(tmp_path: Path) -> Path:
    """The issue's case: a digits model at 8/255, an MNIST model at L-inf 0.1, a CIFAR-10 model at
    8/255 and at an unusual 3/255, plus a VNN-COMP row and an L1 attack (a norm no board knows)."""
    p = tmp_path / "mixed.sqlite"
    with ResultsDB(p) as db:
        _populate(db, "a" * 64, 20, seed=1)
        _populate(db, "c" * 64, 15, seed=3, dataset="mnist", linf_eps=0.1, model="mlp(hidden=[40, 40]) / plain")
        _populate(db, "d" * 64, 12, seed=4, dataset="cifar10", model="small / mr")
        _populate(db, "d" * 64, 12, seed=4, dataset="cifar10", linf_eps=3 / 255, model="small / mr")  # same inputs
        db.put(ResultRow(kind="vnncomp", ckpt_sha="e" * 64, ckpt_path="/x/net.onnx", dataset="acasxu", split="prop_1.vnnlib", idx=0,
                         norm="vnnlib", eps=0.0, method="milp", status="unsat"))
        first = db.rows(kind="verify", ckpt_sha="a" * 64, idx=0)[0]
        db.put(ResultRow(kind="attack", ckpt_sha="a" * 64, ckpt_path="/ckpts/aaaa.pt", dataset="digits", split="test", idx=0,
                         norm="l1", eps=2.0, method="pgd", status="broken", label=first.label, prediction=first.prediction))
    return p


def _report(path: Path, **filters):  # noqa: ANN202
    with ResultsDB(path) as db:
        return build_report(db, load_published(), **filters)


def _board(report, dataset: str, threat: str, eps: float):  # noqa: ANN001, ANN202
    (b,) = [b for b in report.boards if b.setting == Setting(dataset, "test", threat, canonical_eps(eps))]
    return b


def test_eps_text_fractions_for_multiples_of_1_255():
    assert [eps_text(e) for e in (8 / 255, 2 / 255, 1 / 255, 85 / 255, 3 / 255)] == ["8/255", "2/255", "1/255", "85/255", "3/255"]
    # round decimals stay decimals (51/255 == 0.2), other radii are the shortest exact decimal
    assert [eps_text(e) for e in (0.2, 1.0, 0.1, 0.5, 0.03, 0.0313, 0.0)] == ["0.2", "1", "0.1", "0.5", "0.03", "0.0313", "0"]


def test_boards_match_a_brute_force_recount(db_path):
    with ResultsDB(db_path) as db:
        df = pd.DataFrame([r.__dict__ for r in db.rows()])
    report = _report(db_path)
    linf = _board(report, "digits", "linf", EPS)
    assert linf.columns == ("Verified", "PGD", "AutoAttack", "Robust (all attacks)", "Clean")
    assert [r.rank for r in linf.rows] == [1, 2] and {r.source for r in linf.rows} == {"ours"}
    for row in linf.rows:
        d = df[df.ckpt_sha == row.ckpt_sha]
        ver = d[(d.kind == "verify") & (d.norm == "linf")]
        n = ver.idx.nunique()
        assert row.cell("Verified").n == n and float(row.cell("Verified").text) == pytest.approx(100 * (ver.status == "verified").sum() / n, abs=0.005)
        for col, method in (("PGD", "pgd"), ("AutoAttack", "autoattack")):
            sel = d[(d.method == method) & (d.norm == "linf")]
            assert row.cell(col).n == len(sel) and float(row.cell(col).text) == pytest.approx(100 * (sel.status == "robust").mean(), abs=0.005)
        both = d[(d.kind == "attack") & (d.norm == "linf")].groupby("idx").status.apply(lambda s: (s == "robust").all())
        assert float(row.cell("Robust (all attacks)").text) == pytest.approx(100 * both.mean(), abs=0.005)
        assert float(row.cell("Clean").text) == pytest.approx(100 * (ver.label == ver.prediction).mean(), abs=0.005)
        assert row.model == "small / mr"
        undecided = ver.status.isin(["timeout", "unknown", "error"]).sum()
        assert "not decided: " in row.note and sum(int(x.split()[-1]) for x in row.note.split(";")[0].split(":")[1].split(",")) == undecided
        # the ordering every sound pipeline satisfies
        v, p, a, c = (float(row.cell(k).text) for k in ("Verified", "PGD", "Robust (all attacks)", "Clean"))
        assert v <= a <= p <= c
    # ranked within the board: verified first
    assert float(linf.rows[0].cell("Verified").text) >= float(linf.rows[1].cell("Verified").text)
    for threat, eps, col in (("l2", 0.5, "AutoAttack"), ("wasserstein", 0.1, "Wasserstein")):
        b = _board(report, "digits", threat, eps)
        for row in b.rows:
            d = df[(df.ckpt_sha == row.ckpt_sha) & (df.norm == threat)]
            assert row.cell(col).n == len(d) and float(row.cell(col).text) == pytest.approx(100 * (d.status == "robust").mean(), abs=0.005)
            assert "Verified" not in b.columns


def test_one_board_per_setting_and_no_result_dropped(mixed_db):
    report = _report(mixed_db)
    settings = [b.setting for b in report.boards]
    assert len(settings) == len(set(settings))
    # every (checkpoint, dataset, norm, eps) of a verify/attack row is on exactly one board, with its input count
    with ResultsDB(mixed_db) as db:
        rows = db.rows()
    stored = {(r.ckpt_sha, r.dataset, r.norm, canonical_eps(r.eps)) for r in rows if r.kind in ("verify", "attack")}
    shown = {(r.ckpt_sha, b.setting.dataset, b.setting.threat, b.setting.eps) for b in report.boards for r in b.rows if r.source == "ours"}
    assert shown == stored
    for sha, ds, norm, eps in stored:
        (row,) = [r for r in _board(report, ds, norm, eps).rows if r.ckpt_sha == sha]
        idx = {r.idx for r in rows if r.ckpt_sha == sha and r.dataset == ds and r.norm == norm and canonical_eps(r.eps) == eps}
        assert row.cell("Clean").n == len(idx)
    # the MNIST model at 0.1 is on its own board, not ranked against CIFAR-10 8/255 paper rows
    mnist = _board(report, "mnist", "linf", 0.1)
    assert [r.source for r in mnist.rows] == ["ours"] and mnist.rows[0].rank == 1 and mnist.rows[0].model.startswith("mlp")
    # the paper's rows only where the setting matches: CIFAR-10 and their eps
    paper = {b.setting for b in report.boards if any(r.source == "paper" for r in b.rows)}
    assert paper == {Setting("cifar10", "test", "linf", canonical_eps(EPS)), Setting("cifar10", "test", "l2", 0.5),
                     Setting("cifar10", "test", "wasserstein", 0.1)}
    cifar = _board(report, "cifar10", "linf", EPS)
    pub = load_published()
    assert {r.defense for r in cifar.rows if r.source == "paper"} == {p.defense for p in pub if p.threat == "linf"}
    assert [r.source for r in cifar.rows].count("ours") == 1 and [r.rank for r in cifar.rows] == list(range(1, len(cifar.rows) + 1))
    assert {r.source for r in _board(report, "cifar10", "linf", 3 / 255).rows} == {"ours"}
    assert {r.defense for r in _board(report, "cifar10", "l2", 0.5).rows if r.source == "paper"} == {p.defense for p in pub if p.threat == "l2"}
    # rows of other kinds are summarized, not dropped
    assert [(o.kind, o.dataset, o.n, o.statuses) for o in report.other] == [("vnncomp", "acasxu", 1, "unsat 1")]
    md = render_markdown(report)
    for title in ("### mnist · L-inf eps 0.1", "### cifar10 · L-inf eps 3/255", "### digits · l1 eps 2", "### cifar10 · L-inf eps 8/255",
                  "### Other stored results"):
        assert title in md


def test_board_ranking_puts_missing_values_last_and_reads_bounds(mixed_db):
    cifar = _board(_report(mixed_db), "cifar10", "l2", 0.5)
    # Maini 66.0, MR 57.53, then the "<5.0" baseline (a bound, ranked as 5.0) and our row
    vals = [r.cell("AutoAttack").sort_value if r.cell("AutoAttack").text else r.cell("AutoAttack+").sort_value for r in cifar.rows]
    assert vals == sorted(vals, reverse=True) and 5.0 in vals


def test_report_csv_round_trip(mixed_db, capsys):
    assert main(["report", "--db", str(mixed_db), "--format", "csv", "--strict"]) == 0
    csv_text, err = capsys.readouterr()
    assert err == ""  # the planted results are consistent
    assert main(["report", "--db", str(mixed_db)]) == 0
    md_text = capsys.readouterr().out
    report = parse_csv(csv_text)
    assert report == _report(mixed_db)
    assert render_markdown(report) == md_text and render_csv(report) == csv_text
    assert "(n=20)" in md_text and "(n=15)" in md_text and "Manifold Regularization (small)" in md_text and "mlp(hidden=[40, 40]) / plain" in md_text


def test_filters_show_hidden_boards_and_a_bad_filter_is_one_line(mixed_db, capsys):
    assert main(["report", "--db", str(mixed_db), "--eps", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert "### mnist · L-inf eps 0.1" in out and "### cifar10 · Wasserstein eps 0.1" in out and "8/255" not in out.split("### Other")[0]
    assert "more board(s) not shown" in err and "digits · L-inf eps 8/255" in err
    assert main(["report", "--db", str(mixed_db), "--dataset", "mnist", "--threat", "linf"]) == 0
    assert capsys.readouterr().out.count("### ") == 2  # the mnist board and the other-results summary
    assert main(["report", "--db", str(mixed_db), "--eps", "0.2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--eps 0.2" in err and "mnist · L-inf eps 0.1" in err
    with pytest.raises(SystemExit) as exc:  # a malformed radius is a usage error
        main(["report", "--db", str(mixed_db), "--eps", "8/255/2"])
    assert exc.value.code == 2 and "8/255/2" in capsys.readouterr().err
    with ResultsDB(mixed_db) as db, pytest.raises(UserError):
        build_report(db, load_published(), dataset="svhn")


def test_contradiction_is_loud_flagged_on_the_board_and_strict_fails(tmp_path, db_path, capsys):
    assert main(["report", "--db", str(db_path), "--strict"]) == 0
    out, err = capsys.readouterr()
    assert "CONTRADICTION" not in err and "INCONSISTENT" not in out
    bad = tmp_path / "bad.sqlite"
    with ResultsDB(bad) as db:
        _populate(db, "c" * 64, 20, seed=3, contradiction=True)
        report = check_consistency(group_by_checkpoint(db))
    assert len(report.contradictions) == 1 and report.contradictions[0].broken_eps < report.contradictions[0].verified_eps
    assert set(flags(report)) == {("c" * 64, "linf", canonical_eps(EPS)), ("c" * 64, "linf", canonical_eps(4 / 255))}
    assert main(["report", "--db", str(bad)]) == 0
    out, err = capsys.readouterr()
    assert "CONTRADICTION" in err
    board_8 = out.split("### digits · L-inf eps 8/255")[1].split("###")[0]
    assert "INCONSISTENT: 1 input(s) verified here but broken" in board_8
    assert main(["report", "--db", str(bad), "--strict"]) == 1
    assert "CONTRADICTION" in capsys.readouterr().err


def test_broken_at_larger_radius_is_not_a_contradiction(tmp_path):
    p = tmp_path / "ok.sqlite"
    base = dict(ckpt_sha="d" * 64, ckpt_path="/d.pt", dataset="digits", split="test", idx=0, label=3, prediction=3)
    with ResultsDB(p) as db:
        db.put(ResultRow(kind="verify", norm="linf", eps=2 / 255, method="mip", status="verified", **base))
        db.put(ResultRow(kind="attack", norm="linf", eps=8 / 255, method="pgd", status="broken", **base))
        db.put(ResultRow(kind="attack", norm="l2", eps=0.01, method="pgd", status="broken", **base))
        assert check_consistency(group_by_checkpoint(db)).ok
        db.put(ResultRow(kind="attack", norm="linf", eps=2 / 255, method="autoattack", status="broken", **base))
        assert len(check_consistency(group_by_checkpoint(db)).contradictions) == 1


def test_robust_above_clean_is_caught_without_verify_rows(tmp_path):
    base = dict(ckpt_sha="f" * 64, ckpt_path="/f.pt", dataset="digits", split="test", norm="l2", eps=0.5, method="autoattack", kind="attack")
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.put(ResultRow(idx=0, status="robust", label=1, prediction=2, **base))  # "robust" but misclassified: impossible
        report = check_consistency(group_by_checkpoint(db))
    (o,) = report.ordering
    assert o.verified is None and o.robust == 1 and o.clean == 0 and "robust (autoattack) 1 <= clean 0" in o.describe()


def test_published_rows_are_checked_too(mixed_db):
    pub = load_published()
    assert check_consistency([], build_boards([], pub)).ok
    bad = [p if p.defense != "Gowal et al." else type(p)(**{**p.__dict__, "verified_pct": "60.0"}) for p in pub]
    report = check_consistency([], build_boards([], bad))
    assert not report.ok and len(report.published) == 1 and "Gowal et al." in report.published[0]


def test_leaderboard_ranked_per_board_and_written(mixed_db, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["leaderboard", "--db", str(mixed_db), "--out-dir", str(out)]) == 0
    lb = pd.read_csv(out / "leaderboard.csv", keep_default_na=False, dtype=str)
    assert (out / "leaderboard.md").read_text().startswith("# Leaderboards")
    assert {"model", "verified", "verified_n", "pgd", "pgd_n", "autoattack_plus", "robust", "clean", "clean_n"} <= set(lb.columns)
    report = _report(mixed_db)
    assert len(lb) == sum(len(b.rows) for b in report.boards)
    for (ds, threat, eps), part in lb.groupby(["dataset", "threat", "eps"], sort=False):
        assert [int(r) for r in part["rank"]] == list(range(1, len(part) + 1))
        key = [(-(float(v) if v else -1), ) for v in part.verified]
        assert key == sorted(key)
    mnist = lb[(lb.dataset == "mnist") & (lb.threat == "linf")]
    assert list(mnist.eps) == ["0.1"] and list(mnist["rank"]) == ["1"] and mnist.model.iloc[0] == "mlp(hidden=[40, 40]) / plain"
    assert set(lb[lb.source == "paper"].dataset) == {"cifar10"}
    ours = lb[lb.source == "ours"]
    assert all(ours.clean_n != "") and set(lb[lb.dataset == "cifar10"].eps) == {"8/255", "3/255", "0.5", "0.1"}


def test_missing_db_and_bad_published_are_one_line_errors(tmp_path, db_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    bad = tmp_path / "published.csv"
    bad.write_text("table,defense\n1,x\n")
    assert main(["report", "--db", str(db_path), "--published", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing columns" in err and str(bad) in err
    bad.write_text("table,mechanism,defense,threat,eps,verified_pct,robust_pct,clean_pct,attack,note,source\n"
                   "1,x,y,linf,8/255/2,,1,2,PGD,,s\n")
    assert main(["report", "--db", str(db_path), "--published", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'y'" in err and "8/255/2" in err
