"""The training loop: manifold regularization (Jin & Rinard 2020) and its baselines.

Methods (``TrainConfig.method``):

- ``mr``: CE(f(x), y) + gamma_I * intrinsic + gamma_H * Hamming (one 3B forward pass)
- ``plain``: cross-entropy only
- ``pgd``: Madry et al. PGD adversarial training (CE on the PGD example only)
- ``intrinsic-only`` / ``hamming-only``: the paper's ablations (3B pass, one term)

Weight decay goes into SGD (5e-4), not the loss. Every epoch writes the checkpoint
(``out``; metadata carries the training config and the metrics) and appends a CSV row beside
it; the checkpoint's ``extra`` holds the optimizer state, the epoch and every RNG state, so
``resume=True`` continues bit for bit (on CPU) as if the run had never stopped.
"""

from __future__ import annotations

import csv
import math
import random
import sys
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_mr.errors import UserError
from robustbench_mr.options import eps_arg, nonneg_int, option, positive_float, positive_int
from robustbench_mr.training.regularizers import (
    HammingAccumulator,
    clean_batch_statistics,
    corner_batch,
    intrinsic_term,
    pgd_linf,
)
from robustbench_mr.training.schedules import Schedule
from robustbench_mr.training.stability import collapse_warning, unstable_relu_fraction


class Method(str, Enum):
    MR = "mr"
    PLAIN = "plain"
    PGD = "pgd"
    INTRINSIC_ONLY = "intrinsic-only"
    HAMMING_ONLY = "hamming-only"

    @property
    def uses_triple_batch(self) -> bool:
        return self in (Method.MR, Method.INTRINSIC_ONLY, Method.HAMMING_ONLY)

    @property
    def uses_intrinsic(self) -> bool:
        return self in (Method.MR, Method.INTRINSIC_ONLY)

    @property
    def uses_hamming(self) -> bool:
        return self in (Method.MR, Method.HAMMING_ONLY)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. Defaults are the ``small`` preset on digits
    (``preset_config(name, dataset, ...)`` builds one for any preset and data set)."""

    # Each field is also mr-train's flag, help text and config key (robustbench_mr.options);
    # cli/train_cmd.py replaces the defaults by the preset's numbers for the chosen data set.
    arch: str = option("small", cli=False, help="architecture (the preset's)")
    dataset: str = option("digits", choices=("digits", "mnist", "cifar10"), help="dataset")
    method: str = option("mr", choices=tuple(m.value for m in Method), help="mr (manifold regularization) or a baseline")
    out: str = option("runs/small_digits_mr.pt", help="checkpoint path; the CSV log goes beside it")
    epochs: int = option(100, type=positive_int, help="epochs (the schedules scale with it)")
    batch_size: int = option(128, type=positive_int, help="batch size")
    lr: float = option(0.1, type=positive_float, help="peak learning rate (reached at 40% of the run)")
    lr_mid: float = option(0.005, type=float, help="learning rate at 80% of the run")
    momentum: float = option(0.9, cli=False, help="SGD momentum")
    weight_decay: float = option(5e-4, type=float, help="SGD weight decay")
    eps: float = option(8 / 255, type=eps_arg, help="final L-inf radius in pixel units, e.g. 8/255")
    eps_start: float = option(2 / 255, type=eps_arg, help="radius before the ramp")
    gamma_i: float = option(0.4, type=float, help="initial intrinsic weight (x10 from 20% to 80%)")
    # presets.preset_for("small", "digits"); the paper's CIFAR-10 9000 collapses digits
    gamma_h: float = option(50.0, type=float, help="initial Hamming weight (x10 from 20% to 80%)")
    gamma_growth: float = option(10.0, type=positive_float, help="growth of gamma_I and gamma_H from 20% to 80% of the run")
    alpha: float = option(8.0, type=positive_float, help="tanh sharpness of the Hamming relaxation")
    pgd_steps: int = option(7, type=positive_int, help="PGD steps, for --method pgd")
    pgd_step_size: float | None = option(None, type=eps_arg, default_text="2.5*eps/steps (Madry et al.)", help="PGD step, for --method pgd")
    seed: int = option(0, type=nonneg_int, help="seed of the initialization, the batches and the noise")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    amp: bool = option(False, help="bfloat16 autocast (CUDA only)")
    channels_last: bool = option(False, help="channels_last memory format (CUDA only; for large)")
    augment: bool | None = option(None, flag="--no-augment", action="store_const", const=False,
                                  default_text="crop and flip for cifar10 only", help="no random crop/flip")
    keep_freed_memory: bool = option(True, help="CPU (glibc): the process keeps freed memory for the next step's buffers instead of "
                                     "page-faulting them in again every step (mr's step: 3.9x -> ~3.3x a plain step on 2 cores); "
                                     "--no-keep-freed-memory returns it to the OS")
    workers: int = option(0, cli=False, help="CPU threads for torch (0: torch's default; mr-train passes --threads)")
    data_dir: str | None = option(None, help="folder with the official mnist/cifar10 files")
    download: bool = option(False, help="fetch mnist/cifar10 through torchvision (internet)")
    # what is trained on and what test_acc / unstable_frac are measured on (datasets.parse_split):
    # the standard train / test, or e.g. test[:5000] / test[5000:] (datasets.train_from_test)
    train_split: str = option("train", cli=False, help="the split trained on")
    eval_split: str = option("test", cli=False, help="the split test_acc and unstable_frac are measured on")
    arch_kwargs: Mapping[str, Any] = option(default_factory=dict, cli=False, help="architecture arguments")
    stability_samples: int = option(1000, cli=False, help="test inputs for the unstable-ReLU column")
    resume: bool = option(False, help="continue the run in --out from its last epoch")
    quiet: bool = option(False, cli=False, help="no progress bar or per-epoch lines (mr-train -q)")

    def schedule(self) -> Schedule:
        return Schedule(
            epochs=self.epochs,
            lr_peak=self.lr,
            lr_mid=self.lr_mid,
            eps_start=self.eps_start,
            eps_end=self.eps,
            gamma_i=self.gamma_i,
            gamma_h=self.gamma_h,
            gamma_growth=self.gamma_growth,
        )

    def csv_path(self) -> Path:
        return Path(self.out).with_suffix(".csv")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch_kwargs"] = dict(self.arch_kwargs)
        return d


# Fields that may differ between a killed run and its --resume without changing the result.
_RESUME_FREE = {"resume", "quiet", "out", "device", "workers", "data_dir", "download", "keep_freed_memory"}
# Fields added after checkpoints were first written: a saved config without them had these defaults.
_ADDED_FIELDS = {"train_split", "eval_split"}


@dataclass(frozen=True)
class EpochLog:
    epoch: int  # 1-based: epochs completed
    lr: float
    eps: float
    gamma_i: float
    gamma_h: float
    loss: float
    ce: float
    intrinsic: float
    hamming: float
    train_acc: float
    test_acc: float
    unstable_frac: float
    seconds: float
    train_seconds: float = math.nan  # the SGD steps alone (seconds minus the end-of-epoch evaluation); NaN in older logs


CSV_FIELDS = list(EpochLog.__dataclass_fields__)


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    csv: Path
    epochs_run: int
    metrics: dict[str, float]
    history: tuple[EpochLog, ...]


@dataclass(frozen=True)
class StepSettings:
    """The scheduled values one step uses."""

    method: Method
    eps: float
    gamma_i: float
    gamma_h: float
    pgd_steps: int
    pgd_step_size: float | None


@dataclass(frozen=True)
class StepLosses:
    loss: float
    ce: float
    intrinsic: float
    hamming: float
    correct: int


def validate_config(config: TrainConfig) -> Method:
    from robustbench_mr.data import dataset_info
    from robustbench_mr.models import ARCHITECTURES

    try:
        method = Method(config.method)
    except ValueError:
        raise UserError(f"unknown method {config.method!r}; use one of: {', '.join(m.value for m in Method)}") from None
    if config.arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {config.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    dataset_info(config.dataset)
    from robustbench_mr.utils.splits import parse_split, splits_overlap

    parse_split(config.train_split), parse_split(config.eval_split)
    if splits_overlap(config.train_split, config.eval_split):
        raise UserError(f"the training split {config.train_split} overlaps the evaluation split {config.eval_split}; "
                        "held-out figures need disjoint splits (e.g. --train-from-test 5000: test[:5000] / test[5000:])")
    checks = [
        (config.epochs >= 1, "--epochs must be >= 1"),
        (config.batch_size >= 1, "--batch-size must be >= 1"),
        (config.lr > 0 and config.lr_mid >= 0, "--lr must be positive"),
        (0 < config.eps <= 1, "--eps must be in (0, 1] (pixel units, e.g. 8/255)"),
        (0 <= config.eps_start <= config.eps, "the starting eps must be in [0, --eps]"),
        (config.gamma_i >= 0 and config.gamma_h >= 0, "--gamma-i and --gamma-h must be >= 0"),
        (config.alpha > 0, "--alpha must be positive"),
        (config.pgd_steps >= 1, "--pgd-steps must be >= 1"),
        (config.pgd_step_size is None or config.pgd_step_size > 0, "--pgd-step-size must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return method


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    hamming: HammingAccumulator | None,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: StepSettings,
    noise: torch.Generator | None,
    autocast: Any = None,
) -> StepLosses:
    """One SGD step of ``settings.method`` on the batch (x, y); returns the loss parts."""
    method = settings.method
    amp = autocast if autocast is not None else nullcontext()
    zero = torch.zeros((), device=x.device)
    intrinsic = hamming_value = zero
    if method is Method.PGD:
        step = settings.pgd_step_size if settings.pgd_step_size is not None else 2.5 * settings.eps / settings.pgd_steps
        # Train accuracy is clean accuracy for every method. Measured before the attack: a
        # forward pass between the adversarial forward and backward would modify the BN
        # buffers that autograd saved.
        with torch.no_grad(), amp:
            correct = int((model_clean_logits(model, x).argmax(1) == y).sum())
        with amp:
            x_train = pgd_linf(model, x, y, settings.eps, settings.pgd_steps, step, noise)
            logits = model(x_train).float()
        ce = F.cross_entropy(logits, y)
        loss = ce
    elif method.uses_triple_batch:
        b = x.shape[0]
        batch = corner_batch(x, settings.eps, noise)  # [x; x+; x-], built in place
        collect = hamming.collecting() if (hamming is not None and method.uses_hamming) else nullcontext()
        with amp, clean_batch_statistics(model), collect:
            out = model(batch).float()
        logits, logits_plus, logits_minus = out.split(b)
        ce = F.cross_entropy(logits, y)
        loss = ce
        if method.uses_intrinsic:
            intrinsic = intrinsic_term(logits_plus, logits_minus)
            loss = loss + settings.gamma_i * intrinsic
        if method.uses_hamming:
            if hamming is None:
                raise RuntimeError("method needs a HammingAccumulator")
            hamming_value = hamming.value()
            loss = loss + settings.gamma_h * hamming_value
        correct = int((logits.detach().argmax(1) == y).sum())
    else:
        with amp:
            logits = model(x).float()
        ce = F.cross_entropy(logits, y)
        loss = ce
        correct = int((logits.detach().argmax(1) == y).sum())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepLosses(float(loss.detach()), float(ce.detach()), float(intrinsic.detach()), float(hamming_value.detach()), correct)


def model_clean_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits without touching BatchNorm running statistics (train-mode batch stats)."""
    from robustbench_mr.training.regularizers import frozen_batchnorm_stats

    with frozen_batchnorm_stats(model):
        return model(x)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and horizontal flip, batched, from ``gen``."""
    n, _, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    flip = torch.randint(0, 2, (n,), generator=gen, device=x.device).bool()
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


@torch.no_grad()
def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 512) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size].to(device)).argmax(1).cpu() == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(data_gen: torch.Generator, noise_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG state as weights-only-loadable data (tensors, lists, ints)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "data": data_gen.get_state(),
        "noise": noise_gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: Mapping[str, Any], data_gen: torch.Generator, noise_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    data_gen.set_state(state["data"])
    noise_gen.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_csv(path: Path, upto_epoch: int) -> list[EpochLog]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if int(r["epoch"]) <= upto_epoch:
                rows.append(EpochLog(epoch=int(r["epoch"]), **{k: float(r.get(k) or "nan") for k in CSV_FIELDS if k != "epoch"}))
    return rows


def _write_csv(path: Path, rows: list[EpochLog]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    tmp.replace(path)


def train(config: TrainConfig) -> TrainResult:
    """Train per ``config``; writes ``config.out`` (checkpoint) and its CSV log each epoch."""
    from robustbench_mr.checkpoint import metadata_for, read_checkpoint_payload, save_checkpoint
    from robustbench_mr.data import load_dataset
    from robustbench_mr.models import build_model

    method = validate_config(config)
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        raise UserError("--amp needs a CUDA device (mixed precision is not used on CPU); drop --amp or use --device cuda")
    if config.workers > 0:
        torch.set_num_threads(config.workers)
    if config.keep_freed_memory and device.type == "cpu":
        from robustbench_mr.utils.allocator import keep_freed_memory

        keep_freed_memory()  # speed and resident memory only, never a result; a no-op off glibc (utils/allocator.py)
    out = Path(config.out)
    csv_path = config.csv_path()

    _seed_everything(config.seed)
    x_train, y_train = load_dataset(config.dataset, config.train_split, config.data_dir, config.download)
    x_test, y_test = load_dataset(config.dataset, config.eval_split, config.data_dir, config.download)
    meta0 = metadata_for(config.arch, config.dataset, dict(config.arch_kwargs))
    model = build_model(config.arch, input_shape=meta0.input_shape, num_classes=meta0.num_classes, mean=list(meta0.mean), std=list(meta0.std), **dict(config.arch_kwargs))
    model = model.to(device)
    memory_format = torch.channels_last if (config.channels_last and device.type == "cuda") else torch.preserve_format
    if config.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay)
    data_gen = torch.Generator().manual_seed(config.seed)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    augment = config.augment if config.augment is not None else config.dataset == "cifar10"

    start_epoch = 0
    history: list[EpochLog] = []
    if config.resume:
        if not out.exists():
            raise UserError(f"--resume: no checkpoint at {out} to continue; run without --resume to start")
        payload = read_checkpoint_payload(out)
        saved_cfg = payload["metadata"].get("train_config", {})
        mine = {k: v for k, v in _plain(config.to_dict()).items() if k not in _RESUME_FREE}
        # a key the saved run predates had its default then (e.g. train_split / eval_split)
        added = {k: v for k, v in _plain(TrainConfig().to_dict()).items() if k in _ADDED_FIELDS}
        theirs = {k: v for k, v in {**added, **saved_cfg}.items() if k not in _RESUME_FREE}
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise UserError(f"--resume: {out} was trained with different settings ({', '.join(diff)}); use the same flags or a new --out")
        extra = payload.get("extra") or {}
        if "optimizer" not in extra:
            raise UserError(f"--resume: {out} holds no optimizer state (not written by mr-train)")
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(extra["optimizer"])
        _restore_rng_state(extra["rng"], data_gen, noise_gen)
        start_epoch = int(extra["epoch"])
        history = _read_csv(csv_path, start_epoch)

    hamming = HammingAccumulator(model, config.alpha) if method.uses_hamming else None
    schedule = config.schedule()
    n = len(x_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    x_stab = x_test[: config.stability_samples]
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if config.amp else None
    from robustbench_mr.progress import Progress

    # one status for the whole run: a bar on a terminal, a line at least every 10 s elsewhere (at batch ends)
    bar = Progress((config.epochs - start_epoch) * steps_per_epoch, f"train {config.arch} {method.value}", unit="batch",
                   enabled=not config.quiet, heartbeat=False)

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=data_gen)
        sums = {"loss": 0.0, "ce": 0.0, "intrinsic": 0.0, "hamming": 0.0}
        correct = 0
        settings = None
        for step in range(steps_per_epoch):
            idx = perm[step * config.batch_size : (step + 1) * config.batch_size]
            xb, yb = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            if augment:
                xb = _augment(xb, noise_gen)
            if memory_format is torch.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            t = epoch + step / steps_per_epoch
            for g in optimizer.param_groups:
                g["lr"] = schedule.lr(t)
            settings = StepSettings(method, schedule.eps(t), schedule.gamma_i_at(t), schedule.gamma_h_at(t), config.pgd_steps, config.pgd_step_size)
            parts = training_step(model, optimizer, hamming, xb, yb, settings, noise_gen, autocast)
            if not math.isfinite(parts.loss):
                raise UserError(f"training diverged (loss {parts.loss}) at epoch {epoch + 1}; lower --lr or --gamma-h")
            for k in sums:
                sums[k] += getattr(parts, k) * len(idx)
            correct += parts.correct
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{parts.loss:.3f}", eps=f"{settings.eps * 255:.2f}/255")
            bar.update()
        train_seconds = time.perf_counter() - t0
        assert settings is not None
        model.eval()
        test_acc = clean_accuracy(model, x_test, y_test, device)
        unstable = unstable_relu_fraction(model, x_stab, settings.eps)
        row = EpochLog(
            epoch=epoch + 1,
            lr=optimizer.param_groups[0]["lr"],
            eps=settings.eps,
            gamma_i=settings.gamma_i if method.uses_intrinsic else 0.0,
            gamma_h=settings.gamma_h if method.uses_hamming else 0.0,
            loss=sums["loss"] / n,
            ce=sums["ce"] / n,
            intrinsic=sums["intrinsic"] / n,
            hamming=sums["hamming"] / n,
            train_acc=correct / n,
            test_acc=test_acc,
            unstable_frac=unstable,
            seconds=time.perf_counter() - t0,
            train_seconds=train_seconds,
        )
        history.append(row)
        metrics = {"train_acc": row.train_acc, "test_acc": row.test_acc, "unstable_frac": row.unstable_frac, "eps": row.eps}
        if collapse_warning(row.test_acc, row.unstable_frac, int(meta0.num_classes), uses_hamming=method.uses_hamming,
                            gamma_h=config.gamma_h, arch=config.arch, dataset=config.dataset):
            metrics["collapsed"] = 1.0  # travels with the checkpoint: evaluations can say so
        meta = metadata_for(config.arch, config.dataset, dict(config.arch_kwargs), train_config=_plain(config.to_dict()), metrics=metrics, epoch=epoch + 1)
        extra = {"optimizer": optimizer.state_dict(), "epoch": epoch + 1, "rng": _rng_state(data_gen, noise_gen)}
        # CSV first, then the checkpoint: a kill between the two leaves a CSV row that the
        # resumed run (which restarts from the checkpoint's epoch) drops and rewrites.
        _write_csv(csv_path, history)
        save_checkpoint(out, model, meta, extra)
        if not config.quiet:
            bar.echo(
                f"epoch {row.epoch}: loss {row.loss:.4f} (ce {row.ce:.4f}, intr {row.intrinsic:.4f}, ham {row.hamming:.2e}) "
                f"train {row.train_acc:.3f} test {row.test_acc:.3f} unstable {row.unstable_frac:.3f} eps {row.eps * 255:.2f}/255"
            )
    bar.close()
    if hamming is not None:
        hamming.remove()
    num_classes = int(meta0.num_classes)
    warning = None
    if history:
        warning = collapse_warning(history[-1].test_acc, history[-1].unstable_frac, num_classes, uses_hamming=method.uses_hamming,
                                   gamma_h=config.gamma_h, arch=config.arch, dataset=config.dataset)
    if warning:
        print(warning, file=sys.stderr)
    last = history[-1] if history else None
    metrics = {"train_acc": last.train_acc, "test_acc": last.test_acc, "unstable_frac": last.unstable_frac} if last else {}
    if warning:
        metrics["collapsed"] = 1.0
    return TrainResult(checkpoint=out, csv=csv_path, epochs_run=config.epochs - start_epoch, metrics=metrics, history=tuple(history))


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    from robustbench_mr.checkpoint import plain_data

    return plain_data(d)


def preset_config(name: str, dataset: str | None = None, **overrides: Any) -> Any:
    """A :class:`TrainConfig` of preset ``name`` on ``dataset`` with ``overrides`` (any
    TrainConfig field); the Python counterpart of ``mr-train NAME --dataset D ...``."""
    from robustbench_mr.training.presets import preset_for

    p = preset_for(name, dataset)
    fields = dict(
        arch=p.arch, dataset=p.dataset, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, lr_mid=p.lr_mid, momentum=p.momentum,
        weight_decay=p.weight_decay, eps=p.eps, eps_start=p.eps_start, gamma_i=p.gamma_i, gamma_h=p.gamma_h,
        gamma_growth=p.gamma_growth, alpha=p.alpha,
    )
    if "eps" in overrides and "eps_start" not in overrides:
        fields["eps_start"] = overrides["eps"] * p.eps_start / p.eps  # the ramp keeps its shape
    fields.update(overrides)
    fields.setdefault("out", f"runs/{name}_{fields['dataset']}_{fields.get('method', 'mr')}.pt")
    return TrainConfig(**fields)

