"""``mr-eval benchmark MODEL``: from a model file to a leaderboard row and plots, in one command.

MODEL is one of our checkpoints (mr-train, or ``mr-eval import-torch`` for a state_dict trained
elsewhere) or an ONNX file. On the first --n test inputs it measures the clean accuracy, runs
the attacks (robust accuracy: an upper bound) and the exact verifier (verified accuracy: a
lower bound; L-inf, and only for models the verifier imports), as ``mr-eval attack`` and
``mr-eval verify`` do: one row per input in --db (reruns resume). Then it writes, into --out,
the leaderboard of the model's setting (dataset, threat model, eps: every model with rows there,
and the paper's rows where the setting is theirs) as leaderboard.md / leaderboard.csv, and the
model's plots (accuracy_vs_eps.png: its verified-to-attacked band; verifier_decided_vs_time.png),
and prints the model's board row, each figure with the n inputs behind it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from robustbench_mr.attacks.options import ATTACK_NAMES
from robustbench_mr.cli.common import add_run_options
from robustbench_mr.options import add_options, from_args, nonneg_int, option, positive_float, positive_int, radius_arg
from robustbench_mr.verifiers.runs.options import default_jobs

THREATS = {"linf": "Linf", "l2": "L2"}
PLOTS = ("accuracy_vs_eps.png", "verifier_decided_vs_time.png")

EPILOG = """\
examples:
  mr-eval import-torch mnist_wk2017_0_1.pth --arch small --dataset mnist -o wk.pt --data-dir data/mnist
  mr-eval benchmark wk.pt --eps 0.1 --n 20 --data-dir data/mnist --out runs/wk
  mr-eval benchmark model.onnx --dataset digits --eps 8/255 --n 20
Default --eps: 8/255 (Linf), 0.5 (L2). The exact verifier handles L-inf only: with --threat L2
the row has no verified figure. `mr-eval leaderboard` / `mr-eval plot` redo the files from --db
for every model and setting.
"""


def threat_arg(text: str) -> str:
    """``Linf`` or ``L2``, in any case (a usage error otherwise)."""
    t = THREATS.get(str(text).strip().lower())
    if t is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a threat model; use Linf or L2")
    return t


def attacks_arg(text: str) -> str:
    """A comma-separated list of attack names (``pgd,autoattack``), normalized."""
    names = [s.strip().lower() for s in str(text).split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: name at least one attack of {', '.join(ATTACK_NAMES)}")
    bad = [s for s in names if s not in ATTACK_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, bad))}: unknown attack; use {', '.join(ATTACK_NAMES)} (comma-separated)")
    return ",".join(dict.fromkeys(names))


@dataclass(frozen=True)
class BenchmarkOptions:
    """Everything one ``mr-eval benchmark`` run needs (the CLI flags, declared once)."""

    model: str = option(positional=True, help="a .pt checkpoint (mr-train, mr-eval import-torch) or an .onnx file")
    dataset: str | None = option(None, type=str.lower, default_text="the checkpoint's; ONNX: the one its input shape fits",
                                 help="dataset: digits, mnist or cifar10")
    threat: str = option("Linf", type=threat_arg, metavar="Linf|L2", help="threat model")
    eps: float | None = option(None, type=radius_arg, default_text="8/255 for Linf, 0.5 for L2", help="radius in pixel units, e.g. 8/255 or 0.1")
    n: int = option(100, type=positive_int, help="number of test inputs (the first ones)")
    attacks: str = option("pgd,autoattack", type=attacks_arg, metavar="A,B",
                          help=f"attacks, comma-separated ({', '.join(ATTACK_NAMES)})")
    timeout: float = option(30.0, type=positive_float, help="seconds per input for the exact verifier")
    db: str = option("runs/results.sqlite", help="SQLite results database")
    out: str | None = option(None, metavar="DIR", default_text="benchmark/ beside --db", help="where to write the leaderboard and plots")
    name: str | None = option(None, default_text="the file's path",
                              help="the name the rows and the board show for the model (the Model column is then left empty)")
    data_dir: str | None = option(None, help="folder holding the dataset files (mnist, cifar10)")
    jobs: int = option(default_factory=default_jobs, type=positive_int, default_text="min(8, cores)", help="inputs verified in parallel")
    device: str = option("auto", help="where the attacks run: auto (CUDA when present), cpu, cuda, cuda:N")
    seed: int = option(0, type=nonneg_int, help="seed of the attacks and the verifier")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.db).parent / "benchmark"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="clean + attacked + verified accuracy of a model file, its leaderboard row and plots",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, BenchmarkOptions)  # every flag, its default and help: the fields of BenchmarkOptions
    add_run_options(p)
    p.set_defaults(handler=run)


def _check_usage(args: argparse.Namespace, o: BenchmarkOptions) -> None:
    """What the flags' own types cannot see alone (a usage error, exit 2, before any work)."""
    from robustbench_mr.errors import UserError
    from robustbench_mr.utils.eps import parse_eps

    if o.threat == "Linf" and o.eps is not None:
        try:
            parse_eps(o.eps)
        except UserError as exc:
            args._parser.error(f"argument --eps: {exc} (for --threat Linf)")


def _load(o: BenchmarkOptions):  # noqa: ANN202 - a LoadedModel (torch is imported only here)
    from dataclasses import replace

    from robustbench_mr.errors import UserError
    from robustbench_mr.intake import load_model

    path = Path(o.model)
    if not path.exists():
        raise UserError(f"{path}: no such model file; pass a .pt checkpoint (mr-train, mr-eval import-torch) or an .onnx file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; pass a .pt checkpoint or an .onnx file")
    loaded = load_model(path, dataset=o.dataset, require_dataset=True)
    if loaded.dataset is None:  # pragma: no cover - load_model names the dataset or refuses
        raise UserError(f"{path}: cannot tell the dataset; pass --dataset NAME")
    return replace(loaded, path=o.name) if o.name else loaded


def _board_row(report, sha: str, split: str, threat: str, eps: float):  # noqa: ANN001, ANN202 - (Board, BoardRow) or (None, None)
    hits = [(b, r) for b in report.boards if b.setting.matches(threat=threat, eps=eps) for r in b.rows
            if r.source == "ours" and r.ckpt_sha == sha]
    return next(((b, r) for b, r in hits if b.setting.split == split), hits[0] if hits else (None, None))


def run(args: argparse.Namespace) -> int:
    import sys

    from robustbench_mr.errors import UserError

    o = from_args(BenchmarkOptions, args)
    _check_usage(args, o)
    out = o.out_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    loaded = _load(o)

    from robustbench_mr.api import benchmark
    from robustbench_mr.cli.report_cmd import _report
    from robustbench_mr.reports.plots import plot_accuracy_vs_eps, plot_decided_vs_time
    from robustbench_mr.reports.render import render_board_markdown, render_leaderboard_csv, render_leaderboard_markdown
    from robustbench_mr.reports.tables import Board, group_by_checkpoint
    from robustbench_mr.results_db import ResultsDB
    from robustbench_mr.utils.splits import eval_split_of

    res = benchmark(loaded, dataset=loaded.dataset, threat_model=o.threat, eps=o.eps, n=o.n, results=o.db,
                    attacks=tuple(o.attacks.split(",")), data_dir=o.data_dir, timeout=o.timeout, jobs=o.jobs, seed=o.seed,
                    device=o.device, progress=not getattr(args, "quiet", 0))
    norm = res.threat_model.lower()
    db = Path(res.results)
    # the leaderboard of the model's setting, as `mr-eval leaderboard --dataset D --threat T --eps E` writes it
    report, consistency = _report(argparse.Namespace(db=db, published=None, dataset=res.dataset, threat=norm, eps=res.eps))
    out.mkdir(parents=True, exist_ok=True)
    md, csv = out / "leaderboard.md", out / "leaderboard.csv"
    md.write_text(render_leaderboard_markdown(report), encoding="utf-8")
    csv.write_text(render_leaderboard_csv(report), encoding="utf-8")
    # the model's plots, as `mr-eval plot` draws them (for this model only)
    with ResultsDB(db) as store:
        groups = [g for g in group_by_checkpoint(store) if g.ckpt_sha == res.sha256 and g.dataset == res.dataset]
    plots = [plot_accuracy_vs_eps(groups, out / PLOTS[0]), plot_decided_vs_time(groups, out / PLOTS[1])]

    print(res.lines()[0])
    split = eval_split_of(loaded.meta.train_config if loaded.meta is not None else {}) if res.dataset == loaded.dataset else "test"
    board, row = _board_row(report, res.sha256, split, norm, res.eps)
    if row is not None:
        cols = tuple(c for c in board.columns if c in dict(row.cells))
        print(render_board_markdown(Board(board.setting, cols, (row,))).rstrip("\n"))
        print(f"rank {row.rank} of {len(board.rows)} on this board")
    if res.verified_accuracy is None:
        print(f"not verified: {res.verify_note}")
    print(f"rows in {db}")
    print(f"wrote {md}, {csv}")
    print(f"wrote {', '.join(map(str, plots))}")
    if not consistency.ok:
        print(consistency.banner(), file=sys.stderr)
    return 0
