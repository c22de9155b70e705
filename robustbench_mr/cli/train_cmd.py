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

from robustbench_mr.cli.common import add_run_options, positive_int
from robustbench_mr.options import add_options, from_args
from robustbench_mr.training.presets import DATASET_OVERRIDES, PRESETS, preset_for
from robustbench_mr.training.trainer import Method, TrainConfig

METHODS = tuple(m.value for m in Method)


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, preset in PRESETS.items():
        what = {"small": "the paper's verification conv net", "large": "PreActResNet18", "mlp": "a small MLP (quick experiments)"}[name]
        p = sub.add_parser(
            name,
            help=f"train {what} (default dataset {preset.dataset})",
            description=f"Train {what} with manifold regularization or a baseline. "
            f"Preset (Appendix B, made dataset-aware, docs/training.md): gamma_I={preset.gamma_i}, alpha={preset.alpha}, "
            f"{preset.epochs} epochs, LR 0->{preset.lr}->{preset.lr_mid}->0, eps eps/4 -> eps; gamma_H and eps per dataset: "
            + ", ".join(f"{d} {preset_for(name, d).gamma_h:g} @ {preset_for(name, d).eps:.4g}" for d in ("digits", "mnist", "cifar10"))
            + ("" if (name, "cifar10") in DATASET_OVERRIDES else " (cifar10: the paper's)") + ".",
        )
        # every TrainConfig flag, with this preset's numbers as defaults (declared once: training.trainer.TrainConfig)
        add_options(p, TrainConfig, defaults={
            "dataset": preset.dataset, "out": None, "epochs": None, "batch_size": preset.batch_size, "lr": preset.lr, "lr_mid": preset.lr_mid,
            "eps": None, "eps_start": None, "gamma_i": None, "gamma_h": None, "gamma_growth": preset.gamma_growth, "alpha": preset.alpha,
            "weight_decay": preset.weight_decay,
        }, default_text={
            "out": f"runs/{name}_<dataset>_<method>.pt", "epochs": "the preset's for --dataset", "eps": "per --dataset: 8/255, mnist 0.1",
            "eps_start": "eps/4, i.e. 2/255 for 8/255", "gamma_i": "per --dataset", "gamma_h": "per --dataset",
        })
        p.add_argument("--train-from-test", type=positive_int, default=None, metavar="K",
                       help="train on the first K official test images and evaluate on the rest (test[:K] / test[K:], recorded "
                       "in the checkpoint; mr-eval defaults to the held-out part); for machines without the training files")
        if name == "mlp":
            p.add_argument("--hidden", default="64,64", help="hidden widths, comma separated (default: 64,64)")
        add_run_options(p)  # -v/-q (-q: no progress bar or per-epoch lines), --threads, --config, --print-config
        p.set_defaults(handler=run, preset=name)


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig (imported lazily)
    from robustbench_mr.errors import UserError
    from robustbench_mr.training import TrainConfig

    from robustbench_mr.utils.splits import train_from_test

    preset = preset_for(args.preset, args.dataset)  # the numbers tuned for this data set
    for name in ("epochs", "eps", "gamma_i", "gamma_h"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(preset, name))
    splits = train_from_test(args.train_from_test) if args.train_from_test else ("train", "test")
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
    # the flags are TrainConfig's own fields; what is derived from the preset or from other flags is passed here
    return from_args(
        TrainConfig, args, arch=preset.arch, out=out, momentum=preset.momentum, eps_start=eps_start, workers=getattr(args, "threads", None) or 0,
        arch_kwargs=arch_kwargs, train_split=splits[0], eval_split=splits[1], quiet=bool(getattr(args, "quiet", 0)),
    )


def run(args: argparse.Namespace) -> int:
    from robustbench_mr import train

    result = train(config_from_args(args))
    print(json.dumps({"checkpoint": str(result.checkpoint), "csv": str(result.csv), "epochs_run": result.epochs_run, **result.metrics}))
    return 0
