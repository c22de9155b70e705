"""``mr-eval attack ckpt.pt --attack pgd|autoattack|autoattack-plus|wasserstein|all``.

Stores one row per input (kind ``attack``) in the results database; reruns resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robustbench_mr.cli.common import nonneg_int, positive_int, radius_arg

EPILOG = """\
--attack all runs the paper's set: PGD L-inf at --eps, AutoAttack (standard) L-inf at --eps,
AutoAttack (standard) L2 at 0.5, and the Wasserstein attack at 0.1.
Defaults are the reference settings: PGD 20 steps x 10 restarts, step 2/255; AutoAttack as
published (pyautoattack); Wasserstein 400 iterations, radius 0.001 grown x1.17 to the budget.
Default --eps: 8/255 (linf), 0.5 (l2), 0.1 (wasserstein).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack", help="attack a checkpoint (PGD, AutoAttack, Wasserstein) and store per-input results",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a .pt file written by mr-train")
    p.add_argument("--attack", default="pgd", choices=["pgd", "autoattack", "autoattack-plus", "wasserstein", "all"])
    p.add_argument("--eps", type=radius_arg, default=None, help="radius in pixel units, e.g. 8/255 (default per norm, see below)")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model for pgd / autoattack (default linf)")
    p.add_argument("--n", type=positive_int, default=None, help="number of test inputs (default: all)")
    p.add_argument("--start", type=nonneg_int, default=0, help="first input index (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--db", type=Path, default=Path("runs/results.sqlite"), help="results database (default runs/results.sqlite)")
    p.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the official mnist / cifar10 files")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--pgd-steps", type=positive_int, default=20)
    p.add_argument("--pgd-restarts", type=positive_int, default=10)
    p.add_argument("--pgd-step-size", type=radius_arg, default=2 / 255, help="PGD step (default 2/255)")
    p.add_argument("--wasserstein-iterations", type=positive_int, default=400, help="attack steps (default 400)")
    p.add_argument("--wasserstein-sinkhorn-iters", type=positive_int, default=400,
                   help="max projected-Sinkhorn iterations per step (default 400; fewer is faster on CPU and stays sound: points are checked by an exact LP)")
    p.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace):  # noqa: ANN201 - AttackOptions, imported lazily
    from robustbench_mr.attacks.runner import AttackOptions

    return AttackOptions(
        checkpoint=args.checkpoint, attack=args.attack, eps=args.eps, norm=args.norm, n=args.n, start=args.start,
        batch_size=args.batch_size, db=args.db, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
        seed=args.seed, device=args.device, pgd_steps=args.pgd_steps, pgd_restarts=args.pgd_restarts,
        pgd_step_size=args.pgd_step_size, wasserstein_iterations=args.wasserstein_iterations,
        wasserstein_sinkhorn_iters=args.wasserstein_sinkhorn_iters,
    )


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import attack
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
