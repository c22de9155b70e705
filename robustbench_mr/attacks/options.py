"""``AttackOptions``: everything one ``mr-eval attack`` run needs, each option declared once (its
field is the flag, the default, the help text and the config key; ``robustbench_mr.options``).

Importing this loads no engine (torch): the CLI builds its parser from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robustbench_mr.options import nonneg_int, option, positive_int, radius_arg
from robustbench_mr.utils.splits import split_arg

ATTACK_NAMES = ("pgd", "autoattack", "autoattack-plus", "wasserstein", "all")


@dataclass(frozen=True)
class AttackOptions:
    """Everything one ``mr-eval attack`` run needs (the CLI flags, declared once)."""

    checkpoint: Path = option(positional=True, help="a .pt checkpoint (mr-train, mr-eval import-torch) or an .onnx file")
    attack: str = option("pgd", choices=ATTACK_NAMES, help="which attack; all: the paper's set (see below)")
    eps: float | None = option(None, type=radius_arg, default_text="per norm, see below", help="radius in pixel units, e.g. 8/255")
    norm: str = option("linf", choices=("linf", "l2"), help="threat model for pgd / autoattack")
    n: int | None = option(None, type=positive_int, default_text="all", help="number of test inputs from --start")
    start: int = option(0, type=nonneg_int, help="first input index")
    batch_size: int = option(100, type=positive_int, help="inputs per attack batch (a row is written per input as each batch ends)")
    db: Path = option(Path("runs/results.sqlite"), help="results database")
    dataset: str | None = option(None, default_text="the checkpoint's; ONNX: the one its input shape fits", help="dataset")
    split: str | None = option(None, type=split_arg, default_text="the split the checkpoint's training held out, usually test",
                               help="train, test or a slice such as test[5000:]")
    data_dir: Path | None = option(None, help="folder with the official mnist / cifar10 files")
    seed: int = option(0, type=nonneg_int, help="seed of the attacks' random starts")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    pgd_steps: int = option(20, type=positive_int, help="PGD steps")
    pgd_restarts: int = option(10, type=positive_int, help="PGD restarts")
    pgd_step_size: float = option(2 / 255, type=radius_arg, help="PGD step")
    # reduced-cost knobs for tests only (not on the command line): {"n_iter":..,"n_queries":..}
    autoattack_reduced_cost: dict[str, int] = option(default_factory=dict, cli=False, help="AutoAttack iterations / queries (tests only)")
    wasserstein_iterations: int = option(400, type=positive_int, help="Wasserstein attack steps")
    wasserstein_sinkhorn_iters: int = option(400, type=positive_int, help="max projected-Sinkhorn iterations per step "
                                             "(fewer is faster on CPU and stays sound: points are checked by an exact LP)")
    progress: bool | None = option(None, cli=False, help="None: a bar only when stderr is a terminal")
