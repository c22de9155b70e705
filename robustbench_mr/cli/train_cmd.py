"""``mr-train small|large|mlp``: the paper's presets (Appendix B), every number a flag.

Examples::

    mr-train small                                   # small conv net, digits, mr, 100 epochs
    mr-train small --method plain --epochs 20 --out runs/plain.pt
    mr-train large --data-dir data/ --amp --channels-last   # PreActResNet18, CIFAR-10
    mr-train small --resume                          # continue runs/small_digits_mr.pt
"""

from __future__ import annotations

import argparse
import json

from robustbench_mr.cli.common import eps_arg, nonneg_int, positive_float, positive_int
from robustbench_mr.training.presets import PRESETS

METHODS = ("mr", "plain", "pgd", "intrinsic-only", "hamming-only")


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, preset in PRESETS.items():
        what = {"small": "the paper's verification conv net", "large": "PreActResNet18", "mlp": "a small MLP (quick experiments)"}[name]
        p = sub.add_parser(
            name,
            help=f"train {what} (default dataset {preset.dataset})",
            description=f"Train {what} with manifold regularization or a baseline. "
            f"Preset: gamma_I={preset.gamma_i}, gamma_H={preset.gamma_h}, alpha={preset.alpha}, "
            f"{preset.epochs} epochs, LR 0->{preset.lr}->{preset.lr_mid}->0, eps 2/255->8/255.",
        )
        p.add_argument("--dataset", choices=("digits", "mnist", "cifar10"), default=preset.dataset)
        p.add_argument("--data-dir", default=None, help="folder with the official mnist/cifar10 files")
        p.add_argument("--download", action="store_true", help="fetch mnist/cifar10 through torchvision (internet)")
        p.add_argument("--method", choices=METHODS, default="mr")
        p.add_argument("--epochs", type=positive_int, default=preset.epochs, help="schedules scale with it")
        p.add_argument("--batch-size", type=positive_int, default=preset.batch_size)
        p.add_argument("--lr", type=positive_float, default=preset.lr, help="peak learning rate (reached at 40%% of the run)")
        p.add_argument("--lr-mid", type=float, default=preset.lr_mid, help="learning rate at 80%% of the run")
        p.add_argument("--eps", type=eps_arg, default=preset.eps, help="final L-inf radius in pixel units, e.g. 8/255")
        p.add_argument("--eps-start", type=eps_arg, default=None, help="radius before the ramp (default: eps/4, i.e. 2/255 for 8/255)")
        p.add_argument("--gamma-i", type=float, default=preset.gamma_i, help="initial intrinsic weight (x10 from 20%% to 80%%)")
        p.add_argument("--gamma-h", type=float, default=preset.gamma_h, help="initial Hamming weight (x10 from 20%% to 80%%)")
        p.add_argument("--gamma-growth", type=positive_float, default=preset.gamma_growth)
        p.add_argument("--alpha", type=positive_float, default=preset.alpha, help="tanh sharpness of the Hamming relaxation")
        p.add_argument("--weight-decay", type=float, default=preset.weight_decay)
        p.add_argument("--pgd-steps", type=positive_int, default=7, help="for --method pgd")
        p.add_argument("--pgd-step-size", type=eps_arg, default=None, help="for --method pgd (default 2.5*eps/steps)")
        if name == "mlp":
            p.add_argument("--hidden", default="64,64", help="hidden widths, comma separated")
        p.add_argument("--seed", type=nonneg_int, default=0)
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
        p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
        p.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only; for large)")
        p.add_argument("--workers", type=nonneg_int, default=0, help="CPU threads for torch (0: torch's default)")
        p.add_argument("--no-augment", action="store_true", help="no random crop/flip (default on for cifar10 only)")
        p.add_argument("--out", default=None, help=f"checkpoint path (default runs/{name}_<dataset>_<method>.pt); CSV log beside it")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
        p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
        p.set_defaults(handler=run, preset=name)


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig (imported lazily)
    from robustbench_mr.errors import UserError
    from robustbench_mr.training import TrainConfig

    preset = PRESETS[args.preset]
    arch_kwargs: dict = {}
    if args.preset == "mlp":
        try:
            arch_kwargs["hidden"] = [int(v) for v in args.hidden.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--hidden {args.hidden!r}: give positive integers separated by commas, e.g. 64,64") from None
        if not arch_kwargs["hidden"] or min(arch_kwargs["hidden"]) <= 0:
            raise UserError(f"--hidden {args.hidden!r}: give positive integers separated by commas, e.g. 64,64")
    out = args.out or f"runs/{args.preset}_{args.dataset}_{args.method}.pt"
    eps_start = args.eps_start if args.eps_start is not None else args.eps * preset.eps_start / preset.eps
    return TrainConfig(
        arch=preset.arch,
        dataset=args.dataset,
        method=args.method,
        out=out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_mid=args.lr_mid,
        momentum=preset.momentum,
        weight_decay=args.weight_decay,
        eps=args.eps,
        eps_start=eps_start,
        gamma_i=args.gamma_i,
        gamma_h=args.gamma_h,
        gamma_growth=args.gamma_growth,
        alpha=args.alpha,
        pgd_steps=args.pgd_steps,
        pgd_step_size=args.pgd_step_size,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        augment=False if args.no_augment else None,
        workers=args.workers,
        data_dir=args.data_dir,
        download=args.download,
        arch_kwargs=arch_kwargs,
        resume=args.resume,
        quiet=args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import train

    result = train(config_from_args(args))
    print(json.dumps({"checkpoint": str(result.checkpoint), "csv": str(result.csv), "epochs_run": result.epochs_run, **result.metrics}))
    return 0
