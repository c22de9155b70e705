"""``mr-eval attack ckpt.pt --attack pgd|autoattack|autoattack-plus|wasserstein|all``.

Stores one row per input (kind ``attack``) in the results database; reruns resume.
"""

from __future__ import annotations

import argparse

from robustbench_mr.cli.common import add_run_options, positive_int
from robustbench_mr.options import add_options, from_args

EPILOG = """\
--attack all runs the paper's set: PGD L-inf at --eps, AutoAttack (standard) L-inf at --eps,
AutoAttack (standard) L2 at 0.5, and the Wasserstein attack at 0.1.
Defaults are the reference settings: PGD 20 steps x 10 restarts, step 2/255; AutoAttack as
published (pyautoattack); Wasserstein 400 iterations, radius 0.001 grown x1.17 to the budget.
Default --eps: 8/255 (linf), 0.5 (l2), 0.1 (wasserstein).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from robustbench_mr.attacks.options import AttackOptions

    p = sub.add_parser(
        "attack", help="attack a checkpoint (PGD, AutoAttack, Wasserstein) and store per-input results",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, AttackOptions)  # every flag, its default and help: the fields of AttackOptions
    p.add_argument("--autoattack-iters", type=positive_int, default=None,
                   help="smoke tests only: APGD/FAB iterations instead of the reference 100 (then it is not AutoAttack)")
    p.add_argument("--autoattack-queries", type=positive_int, default=None,
                   help="smoke tests only: Square queries instead of the reference 5000 (then it is not AutoAttack)")
    add_run_options(p)
    p.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace):  # noqa: ANN201 - AttackOptions, imported lazily
    from robustbench_mr.attacks.options import AttackOptions

    reduced = {k: v for k, v in (("n_iter", args.autoattack_iters), ("n_queries", args.autoattack_queries)) if v}
    # the CLI always reports progress (a bar on a terminal, status lines elsewhere) unless -q
    return from_args(AttackOptions, args, autoattack_reduced_cost=reduced, progress=not getattr(args, "quiet", 0))


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import attack_checkpoint as attack
    from robustbench_mr.utils.eps import format_eps

    summary = attack(options_from_args(args))
    print(f"{summary.checkpoint} ({summary.ckpt_sha[:12]}) on {summary.dataset}/{summary.split}; results in {args.db}")
    print(f"{'attack':<16} {'norm':<12} {'eps':>7} {'n':>6} {'clean':>7} {'robust':>7} {'broken':>7} {'resumed':>8} {'time':>8}")
    for j in summary.jobs:
        print(
            f"{j.method:<16} {j.norm:<12} {format_eps(j.eps):>7} {j.n:>6} {100 * j.clean_accuracy:>6.2f}% "
            f"{100 * j.robust_accuracy:>6.2f}% {j.broken:>7} {j.resumed:>8} {j.seconds:>7.1f}s"
        )
    return 0
