"""``mr-eval report``, ``mr-eval leaderboard`` and ``mr-eval plot``: read the results database
(verify and attack rows) and put our numbers beside the paper's (results/published.csv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustbench_mr.cli.common import eps_arg, radius_arg

DEFAULT_DB = Path("runs/results.sqlite")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="results database (default runs/results.sqlite)")
    p.add_argument("--published", type=Path, default=None, help="published numbers CSV (default: results/published.csv)")
    p.add_argument("--eps", type=eps_arg, default=8 / 255, help="L-inf radius of Tables 1-2 (default 8/255)")
    p.add_argument("--l2-eps", type=radius_arg, default=0.5, help="L2 radius of Table 2 (default 0.5)")
    p.add_argument("--wasserstein-eps", type=radius_arg, default=0.1, help="Wasserstein radius of Table 2 (default 0.1)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print Tables 1-2 (ours beside the paper's) and check consistency", description=__doc__)
    _common(p)
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument("--strict", action="store_true", help="exit 1 if an input is both verified and broken (or other inconsistencies)")
    p.set_defaults(handler=run_report)

    p = sub.add_parser("leaderboard", help="write results/leaderboard.csv and .md sorted by verified, then robust accuracy", description=__doc__)
    _common(p)
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="where to write leaderboard.csv/.md (default results/)")
    p.set_defaults(handler=run_leaderboard)

    p = sub.add_parser("plot", help="PNG plots: accuracy vs eps, inputs decided vs solve time", description=__doc__)
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="results database (default runs/results.sqlite)")
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="where to write the PNG files (default results/)")
    p.set_defaults(handler=run_plot)


def _open_db(path: Path):  # noqa: ANN202
    from robustbench_mr.errors import UserError
    from robustbench_mr.results_db import ResultsDB

    if not path.is_file():
        raise UserError(f"{path}: no results database; run mr-eval verify/attack first or pass --db")
    return ResultsDB(path)


def _tables(args: argparse.Namespace):  # noqa: ANN202
    from robustbench_mr.reports.consistency import check_consistency
    from robustbench_mr.reports.published import load_published
    from robustbench_mr.reports.tables import ThreatSettings, build_tables, group_by_checkpoint

    published = load_published(args.published)
    with _open_db(args.db) as db:
        settings = ThreatSettings(args.eps, args.l2_eps, args.wasserstein_eps)
        tables = build_tables(db, published, settings)
        consistency = check_consistency(group_by_checkpoint(db))
    return tables, consistency


def run_report(args: argparse.Namespace) -> int:
    from robustbench_mr.reports.render import render_csv, render_markdown

    tables, consistency = _tables(args)
    if args.format == "csv":
        sys.stdout.write(render_csv(tables))
    else:
        sys.stdout.write("\n".join(render_markdown(t) for t in tables))
    if not consistency.ok:
        print(consistency.banner(), file=sys.stderr)
        if args.strict:
            return 1
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    from robustbench_mr.reports.render import render_leaderboard_csv, render_leaderboard_markdown
    from robustbench_mr.reports.tables import leaderboard

    (t1, t2), consistency = _tables(args)
    entries = leaderboard(t1, t2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "leaderboard.csv").write_text(render_leaderboard_csv(entries), encoding="utf-8")
    md = render_leaderboard_markdown(entries)
    (args.out_dir / "leaderboard.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    print(f"wrote {args.out_dir / 'leaderboard.csv'} and {args.out_dir / 'leaderboard.md'}", file=sys.stderr)
    if not consistency.ok:
        print(consistency.banner(), file=sys.stderr)
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
