"""Plots are checked through the figure's artists, not pixels: the band edges are the verified
and attacked percentages, timeouts are their own hatched shade (not 0% verified), points of
different input sets are different lines, n and the dataset are on the figure, eps ticks are
fractions of 255, and the legend names each checkpoint file once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from robustbench_mr.cli.eval import main
from robustbench_mr.reports.plots import accuracy_bands, accuracy_vs_eps_figure, decided_vs_time_figure
from robustbench_mr.reports.tables import group_by_checkpoint
from robustbench_mr.results_db import ResultRow, ResultsDB

SHA = "a" * 64


def _rows(eps: float, inputs: range, verified: int, timeout: int, robust: int, misclassified: int = 0) -> list[ResultRow]:
    """Rows of ``inputs`` at L-inf ``eps``: the first ``verified`` inputs verified, the next ``timeout``
    timed out, the rest falsified; the first ``robust`` inputs robust under PGD, the rest broken;
    the last ``misclassified`` inputs misclassified (clean)."""
    out = []
    for k, i in enumerate(inputs):
        wrong = k >= len(inputs) - misclassified
        base = dict(ckpt_sha=SHA, ckpt_path="/ckpts/net.pt", dataset="digits", split="test", idx=i, norm="linf", eps=eps,
                    label=1, prediction=2 if wrong else 1, model="small / mr")
        v = "misclassified" if wrong else "verified" if k < verified else "timeout" if k < verified + timeout else "falsified"
        a = "misclassified" if wrong else "robust" if k < robust else "broken"
        out.append(ResultRow(kind="verify", method="milp", status=v, seconds=0.1 * (k + 1) if v != "timeout" else 60.0, timeout=60.0, **base))
        out.append(ResultRow(kind="attack", method="pgd", status=a, **base))
    return out


@pytest.fixture()
def groups(tmp_path: Path):  # noqa: ANN201
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.put_many(_rows(2 / 255, range(10), verified=6, timeout=2, robust=9, misclassified=1)
                    + _rows(4 / 255, range(10), verified=4, timeout=3, robust=7, misclassified=1)
                    + _rows(6 / 255, range(10, 15), verified=1, timeout=1, robust=3))  # another input set
        return group_by_checkpoint(db)


def _by_gid(ax, gid: str) -> list:  # noqa: ANN001
    return [a for a in (*ax.lines, *ax.collections, *ax.patches) if a.get_gid() == gid]


def test_bands_are_computed_per_input_set(groups):
    bands = accuracy_bands(groups[0])
    assert [(b.inputs_text, [round(p.eps * 255) for p in b.points]) for b in bands] == [
        ("inputs 0–9 (n=10)", [2, 4]), ("inputs 10–14 (n=5)", [6])]
    p2, p4 = bands[0].points
    assert (p2.verified, p2.undecided, p2.attacked, p2.clean) == (60.0, 20.0, 90.0, 90.0)
    assert (p4.verified, p4.undecided, p4.attacked) == (40.0, 30.0, 70.0)
    (p6,) = bands[1].points
    assert (p6.n, p6.verified, p6.undecided, p6.attacked) == (5, 20.0, 20.0, 60.0)


def test_accuracy_figure_artists(groups):
    fig = accuracy_vs_eps_figure(groups)
    (ax,) = [a for a in fig.axes if a.get_visible() and a.axison]
    assert "digits" in ax.get_title() and "L-inf" in ax.get_title()
    # the band edges: verified (lower) and attacked (upper) lines, one pair per input set, never joined across sets
    verified = [(list(np.round(np.asarray(l.get_xdata()) * 255)), list(l.get_ydata())) for l in _by_gid(ax, "verified")]
    attacked = [(list(np.round(np.asarray(l.get_xdata()) * 255)), list(l.get_ydata())) for l in _by_gid(ax, "attacked")]
    assert verified == [([2, 4], [60.0, 40.0]), ([6], [20.0])]
    assert attacked == [([2, 4], [90.0, 70.0]), ([6], [60.0])]
    # the shaded band between them spans exactly verified..attacked
    band = _by_gid(ax, "band")
    (band_poly,) = [c for c in band if isinstance(c, PolyCollection)]
    ys = np.concatenate([p.vertices[:, 1] for p in band_poly.get_paths()])
    assert ys.min() == pytest.approx(40.0) and ys.max() == pytest.approx(90.0)
    (bar,) = [p for p in band if isinstance(p, Rectangle)]  # the band at a single eps is a bar
    assert (bar.get_y(), bar.get_y() + bar.get_height()) == pytest.approx((20.0, 60.0))
    assert bar.get_x() < 6 / 255 < bar.get_x() + bar.get_width()
    # timeouts are their own hatched shade above the verified edge (verified is not drawn as 0%)
    und = _by_gid(ax, "undecided")
    assert len(und) == 2 and all(a.get_hatch() for a in und)
    (und_poly,) = [c for c in und if isinstance(c, PolyCollection)]
    uy = np.concatenate([p.vertices[:, 1] for p in und_poly.get_paths()])
    assert uy.min() == pytest.approx(40.0) and uy.max() == pytest.approx(80.0)  # 60 verified + 20 timeout at 2/255
    (und_bar,) = [a for a in und if isinstance(a, Rectangle)]
    assert (und_bar.get_y(), und_bar.get_height()) == pytest.approx((20.0, 20.0))
    # n on the figure, the file name once, eps as fractions of 255
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("n=10" in t for t in texts) and any("n=5" in t for t in texts)
    assert sum("net.pt" in t for t in texts) == 1 and any("small / mr" in t for t in texts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2/255", "4/255", "6/255"]
    fig_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("timeout" in t for t in fig_texts) and any("lower bound" in t for t in fig_texts) and any("upper bound" in t for t in fig_texts)


def test_decided_vs_time_counts_and_limit(groups):
    fig = decided_vs_time_figure(groups)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("net.pt" in t for t in texts) == 1
    assert "L-inf 2/255: 8/10 decided, 2 undecided" in texts and "L-inf 6/255: 4/5 decided, 1 undecided" in texts
    assert "time limit 60 s" in texts
    curve = next(l for l in ax.lines if l.get_label().startswith("L-inf 2/255"))
    assert max(curve.get_ydata()) == 8  # decided inputs only; timeouts never count as decided


def test_plot_cli_writes_pngs(tmp_path, groups, capsys):
    assert main(["plot", "--db", str(tmp_path / "r.sqlite"), "--out-dir", str(tmp_path / "png")]) == 0
    for name in ("accuracy_vs_eps.png", "verifier_decided_vs_time.png"):
        data = (tmp_path / "png" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
