"""``mr-eval report``, ``mr-eval leaderboard`` and ``mr-eval plot``: read the results database
(verify and attack rows) and show one board per (dataset, threat model, eps), each with the
paper's rows (package data: robustbench_mr/reports/data/published.csv) where its setting matches
theirs. Every stored result appears on some board or under "other stored results"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustbench_mr.cli.common import radius_arg

DEFAULT_DB = Path("runs/results.sqlite")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="results database (default runs/results.sqlite)")
    p.add_argument("--published", type=Path, default=None,
                   help="published numbers CSV (default: the paper's Tables 1-2, shipped with the package)")
    p.add_argument("--dataset", type=str.lower, default=None, help="show only the boards of this dataset (e.g. digits, cifar10)")
    p.add_argument("--threat", type=str.lower, default=None, help="show only the boards of this threat model (linf, l2, wasserstein)")
    p.add_argument("--eps", type=radius_arg, default=None, help="show only the boards at this radius (e.g. 8/255, 0.5)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print one board per (dataset, threat model, eps), ours beside the paper's, and check consistency",
                       description=__doc__)
    _common(p)
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument("--strict", action="store_true", help="exit 1 if an input is both verified and broken (or other inconsistencies)")
    p.set_defaults(handler=run_report)

    p = sub.add_parser("leaderboard", help="write leaderboard.csv and .md: one ranked board per (dataset, threat model, eps)",
                       description=__doc__)
    _common(p)
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="where to write leaderboard.csv/.md (default results/)")
    p.set_defaults(handler=run_leaderboard)

    p = sub.add_parser("plot", help="PNG plots: verified-to-attacked accuracy bands vs eps, inputs decided vs solve time", description=__doc__)
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="results database (default runs/results.sqlite)")
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="where to write the PNG files (default results/)")
    p.set_defaults(handler=run_plot)


def _open_db(path: Path):  # noqa: ANN202
    from robustbench_mr.errors import UserError
    from robustbench_mr.results_db import ResultsDB

    if not path.is_file():
        raise UserError(f"{path}: no results database; run mr-eval verify/attack first or pass --db")
    return ResultsDB(path)


def _report(args: argparse.Namespace):  # noqa: ANN202
    """The (filtered) report and the consistency checks of everything stored."""
    from robustbench_mr.reports.consistency import check_consistency, flags
    from robustbench_mr.reports.published import load_published
    from robustbench_mr.reports.tables import build_boards, build_report, group_by_checkpoint

    published = load_published(args.published)
    with _open_db(args.db) as db:
        groups = group_by_checkpoint(db)
        consistency = check_consistency(groups, build_boards([], published))
        report = build_report(db, published, dataset=args.dataset, threat=args.threat, eps=args.eps,
                              flagged=flags(consistency), groups=groups)
    return report, consistency


def _footer(report, consistency) -> None:  # noqa: ANN001
    from robustbench_mr.reports.render import render_hidden

    hidden = render_hidden(report.hidden)
    if hidden:
        print(hidden, file=sys.stderr)
    if not consistency.ok:
        print(consistency.banner(), file=sys.stderr)


def run_report(args: argparse.Namespace) -> int:
    from robustbench_mr.reports.render import render_csv, render_markdown

    report, consistency = _report(args)
    sys.stdout.write(render_csv(report) if args.format == "csv" else render_markdown(report))
    _footer(report, consistency)
    return 1 if args.strict and not consistency.ok else 0


def run_leaderboard(args: argparse.Namespace) -> int:
    from robustbench_mr.reports.render import render_leaderboard_csv, render_leaderboard_markdown

    report, consistency = _report(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "leaderboard.csv").write_text(render_leaderboard_csv(report), encoding="utf-8")
    md = render_leaderboard_markdown(report)
    (args.out_dir / "leaderboard.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    print(f"wrote {args.out_dir / 'leaderboard.csv'} and {args.out_dir / 'leaderboard.md'} ({len(report.boards)} board(s))", file=sys.stderr)
    _footer(report, consistency)
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from robustbench_mr.reports.plots import plot_accuracy_vs_eps, plot_decided_vs_time
    from robustbench_mr.reports.tables import group_by_checkpoint

    with _open_db(args.db) as db:
        groups = group_by_checkpoint(db)
    a = plot_accuracy_vs_eps(groups, args.out_dir / "accuracy_vs_eps.png")
    b = plot_decided_vs_time(groups, args.out_dir / "verifier_decided_vs_time.png")
    print(f"wrote {a} and {b}")
    return 0
