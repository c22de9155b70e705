"""Reports from rows inserted directly (no dependency on the verifier's code): counts checked
against a brute-force recount with pandas, CSV round trip, contradiction detection, leaderboard
order, plots."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from robustbench_mr.cli.eval import main
from robustbench_mr.reports.consistency import check_consistency
from robustbench_mr.reports.published import DEFAULT_PUBLISHED, load_published
from robustbench_mr.reports.render import parse_csv, render_csv, render_markdown
from robustbench_mr.reports.tables import build_tables, group_by_checkpoint, leaderboard
from robustbench_mr.results_db import ResultRow, ResultsDB

EPS = 8 / 255
VERIFY_STATUSES = ["verified", "falsified", "timeout", "error", "unknown"]


def _populate(db: ResultsDB, sha: str, n: int, seed: int, contradiction: bool = False) -> None:
    """Random but self-consistent rows: verified inputs are never broken, unless asked."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randrange(10)
        pred = label if rng.random() < 0.8 else (label + 1) % 10
        base = dict(ckpt_sha=sha, ckpt_path=f"/ckpts/{sha}.pt", dataset="digits", split="test", idx=i, label=label, prediction=pred)
        if pred != label:
            v_status = a_status = "misclassified"
        else:
            v_status = rng.choice(VERIFY_STATUSES)
            a_status = "robust" if v_status == "verified" or rng.random() < 0.5 else "broken"
            if v_status == "falsified":
                a_status = rng.choice(["robust", "broken"])
        rows.append(ResultRow(kind="verify", norm="linf", eps=EPS, method="mip", status=v_status, seconds=rng.random(), **base))
        rows.append(ResultRow(kind="attack", norm="linf", eps=EPS, method="pgd", status=a_status, **base))
        aa = "broken" if a_status == "broken" or (a_status == "robust" and v_status != "verified" and rng.random() < 0.2) else a_status
        rows.append(ResultRow(kind="attack", norm="linf", eps=EPS, method="autoattack", status=aa, **base))
        rows.append(ResultRow(kind="attack", norm="l2", eps=0.5, method="autoattack", status=rng.choice(["robust", "broken"]) if pred == label else "misclassified", **base))
        rows.append(ResultRow(kind="attack", norm="wasserstein", eps=0.1, method="wasserstein", status=rng.choice(["robust", "broken"]) if pred == label else "misclassified", **base))
    if contradiction:
        first = next(r for r in rows if r.kind == "verify" and r.status == "verified")
        # broken at a smaller radius than the one verified: impossible if both are right
        rows.append(ResultRow(kind="attack", ckpt_sha=sha, ckpt_path=first.ckpt_path, dataset="digits", split="test", idx=first.idx,
                              norm="linf", eps=4 / 255, method="pgd", status="broken", label=first.label, prediction=first.prediction))
    db.put_many(rows)


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    p = tmp_path / "results.sqlite"
    with ResultsDB(p) as db:
        _populate(db, "a" * 64, 57, seed=1)
        _populate(db, "b" * 64, 31, seed=2)
    return p


def _brute_force(db_path: Path) -> pd.DataFrame:
    with ResultsDB(db_path) as db:
        df = pd.DataFrame([r.__dict__ for r in db.rows()])
    return df


def test_tables_match_a_brute_force_recount(db_path):
    df = _brute_force(db_path)
    with ResultsDB(db_path) as db:
        t1, t2 = build_tables(db, load_published())
    ours1 = [r for r in t1.rows if r.source == "ours"]
    ours2 = [r for r in t2.rows if r.source == "ours"]
    assert len(ours1) == len(ours2) == 2
    for row1, row2 in zip(ours1, ours2):
        d = df[df.ckpt_sha == row1.ckpt_sha]
        ver = d[(d.kind == "verify") & (d.norm == "linf")]
        pgd = d[(d.method == "pgd") & (d.norm == "linf") & (abs(d.eps - EPS) < 1e-12)]
        n = ver.idx.nunique()
        assert row1.figures[0].n == n and float(row1.figures[0].text) == pytest.approx(100 * (ver.status == "verified").sum() / n, abs=0.005)
        assert float(row1.figures[1].text) == pytest.approx(100 * (pgd.status == "robust").sum() / len(pgd), abs=0.005)
        assert float(row1.figures[2].text) == pytest.approx(100 * (ver.label == ver.prediction).mean(), abs=0.005)
        for fig, (norm, eps, method) in zip(row2.figures[:3], [("l2", 0.5, "autoattack"), ("linf", EPS, "autoattack"), ("wasserstein", 0.1, "wasserstein")]):
            sel = d[(d.kind == "attack") & (d.norm == norm) & (abs(d.eps - eps) < 1e-12) & (d.method == method)]
            assert fig.n == len(sel) and float(fig.text) == pytest.approx(100 * (sel.status == "robust").mean(), abs=0.005)
        # the ordering every sound pipeline satisfies
        assert float(row1.figures[0].text) <= float(row1.figures[1].text) <= float(row1.figures[2].text)
        assert float(row2.figures[1].text) <= float(row1.figures[1].text)  # AA found at least PGD's breaks here
    paper = [r for r in t1.rows if r.source == "paper"]
    assert [r.defense for r in paper] == [p.defense for p in load_published() if p.table == 1]


def test_report_csv_round_trip(db_path, capsys):
    assert main(["report", "--db", str(db_path), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert main(["report", "--db", str(db_path)]) == 0
    md_text = capsys.readouterr().out
    tables = parse_csv(csv_text)
    assert "\n".join(render_markdown(t) for t in tables) == md_text
    assert render_csv(tables) == csv_text
    assert "(n=57)" in md_text and "(n=31)" in md_text and "Manifold Regularization (small)" in md_text


def test_contradiction_is_loud_and_strict_fails(tmp_path, db_path, capsys):
    assert main(["report", "--db", str(db_path), "--strict"]) == 0
    assert "CONTRADICTION" not in capsys.readouterr().err
    bad = tmp_path / "bad.sqlite"
    with ResultsDB(bad) as db:
        _populate(db, "c" * 64, 20, seed=3, contradiction=True)
        report = check_consistency(group_by_checkpoint(db))
    assert len(report.contradictions) == 1 and report.contradictions[0].broken_eps < report.contradictions[0].verified_eps
    assert main(["report", "--db", str(bad)]) == 0
    assert "CONTRADICTION" in capsys.readouterr().err
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


def test_leaderboard_sorted_and_written(db_path, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["leaderboard", "--db", str(db_path), "--out-dir", str(out)]) == 0
    lb = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    assert (out / "leaderboard.md").read_text().startswith("| #")
    key = [(-(float(v) if v != "" else -1), -(float(r) if r not in ("",) else -1)) for v, r in zip(lb.verified.astype(str), lb.robust_pgd.astype(str))]
    assert key == sorted(key)
    assert set(lb.source) == {"ours", "paper"}
    with ResultsDB(db_path) as db:
        t1, t2 = build_tables(db, load_published())
    t1_keys = {(r.source, r.defense, r.ckpt_sha) for r in t1.rows}
    only_t2 = [r for r in t2.rows if (r.source, r.defense, r.ckpt_sha) not in t1_keys]
    assert len(leaderboard(t1, t2)) == len(t1.rows) + len(only_t2) == len(lb)
    ours = lb[lb.source == "ours"]
    assert len(ours) == 2 and all(ours.linf_aa.astype(str) != "")  # Table 2 figures joined onto our rows


def test_plots_are_png(db_path, tmp_path, capsys):
    assert main(["plot", "--db", str(db_path), "--out-dir", str(tmp_path)]) == 0
    for name in ("accuracy_vs_eps.png", "verifier_decided_vs_time.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_missing_db_is_one_line_error(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_published_csv_equals_the_papers_tables(shared_dir):
    assert DEFAULT_PUBLISHED.read_bytes() == (shared_dir / "paper" / "published.csv").read_bytes()
    rows = load_published()
    assert sum(r.table == 1 for r in rows) == 12 and sum(r.table == 2 for r in rows) == 9
    mr_small = next(r for r in rows if r.defense == "Manifold Regularization (small)")
    assert (mr_small.verified_pct, mr_small.robust_pct, mr_small.clean_pct) == ("21.04", "25.56", "36.66")
    # the numbers also appear in the paper's text
    text = (shared_dir / "paper" / "manifold_regularization_jin_rinard_2020.txt").read_text(errors="replace")
    for value in ("21.04", "25.56", "36.66", "40.54", "69.95", "57.53", "36.90", "66.02"):
        assert value in text
