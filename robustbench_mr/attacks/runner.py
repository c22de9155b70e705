"""Run attacks on a checkpoint and store one result row per input (kind ``attack``).

Every stored ``broken`` is re-checked here, independently of the attack: the point is
projected into its ball and [0,1] (L-inf / L2) or its exact transport cost is computed by an
LP and shrunk into the ball if needed (Wasserstein), and then the model is re-run with a plain
forward pass. Misclassified clean inputs are stored as ``misclassified`` and not attacked.
Rows are written as each batch finishes; a rerun skips inputs already decided (resume), but
only those decided on the same input (``input_sha``: pixels and label) with the same attack
settings (``config_sha``: the options outside the row key that change a ``robust`` verdict,
``attack_config``); any other stored row is recomputed and replaced.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_mr.attacks.base import Attack, Norm, perturbation_size, project_ball
from robustbench_mr.errors import UserError

# declared in a module without torch, so that the CLI builds its parser from it
from robustbench_mr.attacks.options import ATTACK_NAMES, AttackOptions  # noqa: E402,F401 - re-exported
DEFAULT_EPS = {Norm.LINF: 8 / 255, Norm.L2: 0.5, Norm.WASSERSTEIN: 0.1}
# float32 rounding slack when checking an L-inf / L2 point that was just projected
BALL_SLACK = 1e-6


class AttackStatus(str, Enum):
    ROBUST = "robust"
    BROKEN = "broken"
    MISCLASSIFIED = "misclassified"


@dataclass(frozen=True)
class JobSummary:
    method: str
    norm: str
    eps: float
    n: int
    clean: int
    robust: int
    broken: int
    misclassified: int
    resumed: int
    seconds: float

    @property
    def robust_accuracy(self) -> float:
        return self.robust / self.n if self.n else float("nan")

    @property
    def clean_accuracy(self) -> float:
        return self.clean / self.n if self.n else float("nan")


@dataclass(frozen=True)
class AttackSummary:
    checkpoint: str
    ckpt_sha: str
    dataset: str
    split: str
    jobs: tuple[JobSummary, ...]


@dataclass(frozen=True)
class AttackJob:
    method: str
    norm: Norm
    eps: float


def plan_jobs(options: AttackOptions) -> list[AttackJob]:
    """The (attack, norm, eps) runs one invocation makes; ``all`` is the paper's set."""
    if options.attack not in ATTACK_NAMES:
        raise UserError(f"unknown attack {options.attack!r}; choose one of {', '.join(ATTACK_NAMES)}")
    try:
        norm = Norm(options.norm)
    except ValueError:
        raise UserError(f"unknown norm {options.norm!r}; use linf or l2") from None
    if options.attack == "wasserstein":
        return [AttackJob("wasserstein", Norm.WASSERSTEIN, options.eps or DEFAULT_EPS[Norm.WASSERSTEIN])]
    if norm is Norm.WASSERSTEIN:
        raise UserError("--norm wasserstein only goes with --attack wasserstein")
    eps = options.eps or DEFAULT_EPS[norm]
    if norm is Norm.LINF and eps > 1:
        raise UserError(f"L-inf eps {eps:g} exceeds 1; radii are in [0,1] pixel units (e.g. 8/255)")
    if options.attack == "all":
        if norm is not Norm.LINF:
            raise UserError("--attack all uses --eps as the L-inf radius; leave --norm at linf")
        return [
            AttackJob("pgd", Norm.LINF, eps),
            AttackJob("autoattack", Norm.LINF, eps),
            AttackJob("autoattack", Norm.L2, DEFAULT_EPS[Norm.L2]),
            AttackJob("wasserstein", Norm.WASSERSTEIN, DEFAULT_EPS[Norm.WASSERSTEIN]),
        ]
    return [AttackJob(options.attack, norm, eps)]


def build_attack(job: AttackJob, options: AttackOptions, batch_size: int) -> Attack:
    if job.method == "pgd":
        from robustbench_mr.attacks.pgd import PGD, PGDConfig

        return PGD(job.norm, job.eps, PGDConfig(options.pgd_steps, options.pgd_restarts, options.pgd_step_size, True, options.seed))
    if job.method in ("autoattack", "autoattack-plus"):
        from robustbench_mr.attacks.autoattack import AutoAttackEnsemble

        version = "standard" if job.method == "autoattack" else "plus"
        return AutoAttackEnsemble(job.norm, job.eps, version, options.seed, batch_size, options.autoattack_reduced_cost)
    if job.method == "wasserstein":
        from robustbench_mr.attacks.wasserstein import WassersteinAttack, WassersteinConfig

        cfg = WassersteinConfig(iterations=options.wasserstein_iterations, sinkhorn_max_iter=options.wasserstein_sinkhorn_iters)
        return WassersteinAttack(job.eps, cfg)
    raise UserError(f"unknown attack {job.method!r}")


def attack_config(job: AttackJob, options: AttackOptions) -> dict[str, object]:
    """The settings that can change a job's verdicts and are not in the row key (the key holds
    the attack, norm and eps): the seed and the attack's strength. Digested into ``config_sha``."""
    config: dict[str, object] = {"seed": options.seed}
    if job.method == "pgd":
        config.update(steps=options.pgd_steps, restarts=options.pgd_restarts, step_size=options.pgd_step_size)
    elif job.method.startswith("autoattack"):
        config.update(reduced_cost=dict(sorted(options.autoattack_reduced_cost.items())))
    elif job.method == "wasserstein":
        config.update(iterations=options.wasserstein_iterations, sinkhorn_iters=options.wasserstein_sinkhorn_iters)
    return config


def _solver_version(method: str) -> str:
    if method.startswith("autoattack"):
        from importlib.metadata import version

        return f"pyautoattack {version('pyautoattack')}"
    return f"torch {torch.__version__}"


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def validate_points(
    model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, return_points: bool = False
) -> tuple[torch.Tensor, ...]:
    """Independent check of an attack's output. Returns (broken mask, adversarial predictions,
    distances), and with ``return_points`` the checked points too (re-projected; for
    Wasserstein the certified in-ball point of each broken sample). A sample is broken only if
    its (re-projected) point is inside the threat model and a plain forward pass misclassifies it."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"{attack!r} returned malformed points")
    x_adv = x_adv.detach().to(x.dtype)
    if attack.norm is Norm.WASSERSTEIN:
        from robustbench_mr.attacks.wasserstein import shrink_into_ball

        with torch.no_grad():
            pred = model(x_adv.clamp(0, 1)).argmax(1)
        dist = torch.zeros(x.shape[0], dtype=torch.float64)
        broken = torch.zeros(x.shape[0], dtype=torch.bool)
        points = x_adv.clamp(0, 1).clone()
        for i in (pred != y).nonzero().flatten().tolist():
            cfg = attack.config  # type: ignore[attr-defined]
            z, d = shrink_into_ball(x[i], x_adv[i].clamp(0, 1), attack.eps, cfg.kernel_size, cfg.p)
            if not d <= attack.eps * (1 + BALL_SLACK):
                pred[i] = y[i]  # no certified-in-ball point: not counted as broken
                dist[i] = d
                continue
            with torch.no_grad():
                pred[i] = model(z[None].to(x.dtype)).argmax(1)[0]
            dist[i] = d
            broken[i] = bool(pred[i] != y[i])
            points[i] = z.to(points.device, points.dtype)
        return (broken, pred.cpu(), dist, points) if return_points else (broken, pred.cpu(), dist)
    x_adv = project_ball(x_adv, x, attack.norm, attack.eps)
    dist = perturbation_size(x_adv, x, attack.norm).double().cpu()
    inside = (dist <= attack.eps * (1 + BALL_SLACK) + 1e-7) & (x_adv.flatten(1).amin(1) >= 0).cpu() & (x_adv.flatten(1).amax(1) <= 1).cpu()
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    broken = (pred != y).cpu() & inside
    return (broken, pred.cpu(), dist, x_adv) if return_points else (broken, pred.cpu(), dist)


@dataclass(frozen=True, eq=False)
class BatchOutcome:
    """One attack on one batch: clean predictions, per-sample status, the adversarial
    predictions and distances of the checked points, and the points (the clean input where the
    sample was misclassified and not attacked)."""

    clean_prediction: torch.Tensor
    status: tuple[AttackStatus, ...]
    adv_prediction: torch.Tensor
    distance: torch.Tensor
    x_adv: torch.Tensor


def attack_batch(model: nn.Module, atk: Attack, xb: torch.Tensor, yb: torch.Tensor) -> BatchOutcome:
    """Attack the correctly classified samples of ``xb`` and check every returned point
    independently (:func:`validate_points`); misclassified samples are not attacked."""
    with torch.no_grad():
        clean_pred = model(xb).argmax(1)
    correct = clean_pred == yb
    status = [AttackStatus.MISCLASSIFIED] * len(yb)
    adv_pred = clean_pred.clone().cpu()
    dist = torch.zeros(len(yb), dtype=torch.float64)
    points = xb.detach().clone()
    sel = correct.nonzero().flatten()
    if sel.numel():
        x_adv = atk.perturb(model, xb[sel], yb[sel])
        broken, pred_s, dist_s, pts = validate_points(model, atk, xb[sel], yb[sel], x_adv, return_points=True)
        points[sel] = pts.to(points.device, points.dtype)
        for k, j in enumerate(sel.tolist()):
            status[j] = AttackStatus.BROKEN if bool(broken[k]) else AttackStatus.ROBUST
            adv_pred[j] = pred_s[k]
            dist[j] = dist_s[k]
    return BatchOutcome(clean_pred.cpu(), tuple(status), adv_pred, dist, points)


def attack(options: AttackOptions, loaded: Any = None) -> AttackSummary:
    """Run the planned attacks and write one row per input to ``options.db``.

    The model is ``options.checkpoint`` (one of our checkpoints or an ONNX file, read by
    :func:`robustbench_mr.intake.load_model`), or the already loaded ``loaded`` (a
    :class:`robustbench_mr.intake.LoadedModel`: how the Python API passes in-memory modules)."""
    from robustbench_mr import load_dataset
    from robustbench_mr.progress import Progress
    from robustbench_mr.utils.eps import format_eps
    from robustbench_mr.intake import load_model
    from robustbench_mr.results_db import ResultRow, ResultsDB, input_digest, options_digest

    jobs = plan_jobs(options)
    if options.batch_size <= 0:
        raise UserError("--batch-size must be positive")
    device = _resolve_device(options.device)
    if loaded is None:
        loaded = load_model(options.checkpoint, dataset=options.dataset)
    model = loaded.model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    train_config = loaded.meta.train_config if loaded.meta is not None else {}
    dataset = options.dataset or loaded.dataset
    from robustbench_mr.data.datasets import resolve_eval_split

    split = resolve_eval_split(options.split, train_config, dataset, loaded.dataset)
    x_all, y_all = load_dataset(dataset, split, options.data_dir)
    if tuple(x_all.shape[1:]) != tuple(loaded.input_shape):
        raise UserError(f"dataset {dataset!r} has inputs {tuple(x_all.shape[1:])} but the model expects {tuple(loaded.input_shape)}")
    if options.start < 0 or options.start >= len(y_all):
        raise UserError(f"--start {options.start} is outside the {len(y_all)} {split} inputs")
    stop = len(y_all) if options.n is None else min(len(y_all), options.start + options.n)
    wanted = list(range(options.start, stop))
    # what each row is computed from: a stored verdict is reused only for the very same input
    digests = {i: input_digest(x_all[i], int(y_all[i])) for i in wanted}
    show = sys.stderr.isatty() if options.progress is None else options.progress
    summaries = []
    with ResultsDB(options.db) as db:
        db.require_writable()  # a read-only --db stops here, before any work
        for job in jobs:
            key = dict(kind="attack", ckpt_sha=loaded.sha256, dataset=dataset, split=split, norm=job.norm.value, eps=job.eps, method=job.method)
            config_sha = options_digest(attack_config(job, options))
            kept, _stale = db.reusable_rows([s.value for s in AttackStatus], digests, config_sha, **key)
            todo = [i for i in wanted if i not in kept]
            atk = build_attack(job, options, options.batch_size)
            t_job = time.perf_counter()
            bar = Progress(len(todo), f"attack {job.method} {job.norm.value} {format_eps(job.eps)}", enabled=show)
            try:
                for b in range(0, len(todo), options.batch_size):
                    idx = todo[b:b + options.batch_size]
                    xb, yb = x_all[idx].to(device), y_all[idx].to(device)
                    t0 = time.perf_counter()
                    out = attack_batch(model, atk, xb, yb)
                    status, clean_pred, adv_pred, dist = out.status, out.clean_prediction, out.adv_prediction, out.distance
                    per_input = (time.perf_counter() - t0) / len(idx)
                    rows = [
                        ResultRow(
                            **key, ckpt_path=str(options.checkpoint), idx=i, status=status[k].value, label=int(yb[k]),
                            prediction=int(clean_pred[k]), seconds=per_input, seed=options.seed, solver=repr(atk),
                            solver_version=_solver_version(job.method),
                            details={"adv_prediction": int(adv_pred[k]), "distance": float(dist[k]), "batch_size": len(idx)},
                            input_sha=digests[i], config_sha=config_sha,
                        )
                        for k, i in enumerate(idx)
                    ]
                    db.put_many(rows)
                    bar.add(status)
            finally:
                bar.close()
            stored = [r for r in db.rows(**key) if r.idx in set(wanted)]
            count = {s: sum(r.status == s.value for r in stored) for s in AttackStatus}
            summaries.append(
                JobSummary(
                    job.method, job.norm.value, job.eps, len(stored),
                    clean=sum(r.label == r.prediction for r in stored), robust=count[AttackStatus.ROBUST],
                    broken=count[AttackStatus.BROKEN], misclassified=count[AttackStatus.MISCLASSIFIED],
                    resumed=len(kept), seconds=time.perf_counter() - t_job,
                )
            )
    return AttackSummary(str(options.checkpoint), loaded.sha256, dataset, split, tuple(summaries))


__all__ = ["AttackOptions", "AttackStatus", "AttackSummary", "BatchOutcome", "JobSummary", "attack", "attack_batch", "attack_config", "plan_jobs",
           "validate_points"]
