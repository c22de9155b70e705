"""The Python API on tensors: verify, attack and benchmark any model.

::

    import torch
    import robustbench_mr as rb

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = rb.load_dataset("digits")            # [0,1] pixels, N x 1 x 8 x 8
    results = rb.verify(model, x[:5], y[:5], eps=0.01, timeout=10)    # list[VerifyResult]
    adv = rb.attack(model, x[:5], y[:5], eps=0.05, attacks=("pgd",))  # AttackResult
    adv.x_worst, adv.worst, adv.robust_accuracy

``model`` is an ``nn.Module`` (for verification one that :func:`robustbench_mr.intake.to_network`
imports: today ``nn.Sequential`` chains of Linear/Conv2d/Flatten/BatchNorm/ReLU), a path to one
of our checkpoints or to an ONNX file, or an :class:`~robustbench_mr.intake.LoadedModel`.
Inputs are pixels in [0,1] (normalization belongs inside the model), labels integers.

:func:`verify` and :func:`attack` run the very per-input machinery of the CLI runners
(``verifiers.runner.verify_one`` / ``run_inputs`` and ``attacks.runner.attack_batch``), without
a results database; :func:`benchmark` runs the runners themselves on the first ``n`` inputs of
a data set, so its rows land in the results store and ``mr-eval report`` shows them.

For compatibility, :func:`verify` and :func:`attack` still accept one options object
(``VerifyOptions`` / ``AttackOptions``, what the CLIs build), as do :func:`verify_checkpoint`
and :func:`attack_checkpoint`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING  # import-free: the one default of --branching

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from robustbench_mr.attacks.base import Attack, Norm
    from robustbench_mr.attacks.runner import AttackOptions, AttackStatus, AttackSummary
    from robustbench_mr.intake import LoadedModel
    from robustbench_mr.verifiers.runs.dataset import VerifyOptions, VerifySummary
    from robustbench_mr.verifiers.status import VerifyResult

ModelLike = Any  # nn.Module | str | Path | LoadedModel


# --- the old entry points: one options object -----------------------------------------------


def verify_checkpoint(options: VerifyOptions) -> VerifySummary:
    """Verify a checkpoint or ONNX file on a data set slice (``mr-eval verify``); see
    :mod:`robustbench_mr.verifiers.runs.dataset`."""
    from robustbench_mr.verifiers.runs.dataset import verify as _verify

    return _verify(options)


def attack_checkpoint(options: AttackOptions) -> AttackSummary:
    """Attack a checkpoint or ONNX file on a data set slice (``mr-eval attack``); see
    :mod:`robustbench_mr.attacks.runner`."""
    from robustbench_mr.attacks.runner import attack as _attack

    return _attack(options)


# --- inputs ---------------------------------------------------------------------------------


def _as_tensors(x: Any, y: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float32 (N, ...) in [0,1] and ``y`` as int64 (N,); one bare input with an int
    label becomes a batch of one."""
    import numpy as np
    import torch

    if x is None or y is None:
        raise UserError(f"{what}(model, x, y, eps): x (inputs) and y (labels) are required")
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if isinstance(y, (int, np.integer)) and not isinstance(y, bool):
        xt, yt = xt[None], torch.tensor([int(y)])
    else:
        yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().reshape(-1)
    if xt.dim() < 2 or xt.shape[0] != yt.shape[0]:
        raise UserError(f"{what}: x has shape {tuple(xt.shape)} and y {tuple(yt.shape)}; expected x (N, C, H, W) or (N, features) "
                        "and one label per input")
    if not xt.is_floating_point():
        raise UserError(f"{what}: x is {xt.dtype}; expected float pixels in [0,1] (divide uint8 images by 255)")
    if yt.is_floating_point() and not bool((yt == yt.round()).all()):
        raise UserError(f"{what}: y holds non-integer labels")
    if xt.numel() and (not bool(torch.isfinite(xt).all()) or float(xt.min()) < 0.0 or float(xt.max()) > 1.0):
        raise UserError(f"{what}: x must hold pixels in [0,1] (found {float(xt.min()):.4g}..{float(xt.max()):.4g}); "
                        "put any normalization inside the model as its first layer")
    return xt.float(), yt.long()


def _loaded(model: ModelLike, input_shape: tuple[int, ...], dataset: str | None = None, name: str | None = None) -> LoadedModel:
    from torch import nn

    from robustbench_mr.intake import LoadedModel, from_module, load_model

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, dataset=dataset, require_dataset=dataset is not None)
    if isinstance(model, nn.Module):
        return from_module(model, input_shape, dataset=dataset, name=name)
    raise UserError(f"model must be an nn.Module, a checkpoint or ONNX path, or a LoadedModel; got {type(model).__name__}")


def _check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"{what}: labels must lie in 0..{num_classes - 1} (the model has {num_classes} outputs); got {int(y.min())}..{int(y.max())}")


# --- verify -----------------------------------------------------------------------------------


def verify(model: ModelLike, x: Any = None, y: Any = None, eps: float | None = None, *, timeout: float = 30.0, bounds: str | None = None,
           solver: str = "highs", jobs: int = 1, seed: int = 0, pgd_steps: int = 20, pgd_restarts: int = 1,
           device: str = "auto", branching: str = DEFAULT_BRANCHING) -> list[VerifyResult]:
    """Exact L-inf robustness of ``model`` at each input ``x[i]`` with label ``y[i]`` in the ball
    of radius ``eps`` (clipped to [0,1]): one :class:`~robustbench_mr.verifiers.status.VerifyResult`
    per input, in order (``idx`` is the position in ``x``).

    Per input, as ``mr-eval verify``: misclassified -> no solve; interval bounds; a short PGD
    (its counterexample confirmed by float64 forward passes); tighter bounds; then the MILP
    (``bounds``, ``solver``) within ``timeout`` seconds. ``jobs`` > 1 runs inputs in parallel
    processes. A model the verifier cannot import (e.g. a residual net) is one
    :class:`~robustbench_mr.errors.UnsupportedLayerError` line. ``device`` (auto, cpu, cuda,
    cuda:N): where the bound engine runs for graph-form networks (residual, pooled). ``branching``
    (babsr, fsb): the rule of the ReLU-split branch and bound.

    ``verify(VerifyOptions(...))`` (one options object, as the CLI builds) verifies a
    checkpoint on a data set and returns a ``VerifySummary`` (:func:`verify_checkpoint`).
    """
    from robustbench_mr.verifiers.runs.dataset import VerifyOptions, one_input_args, run_inputs

    if isinstance(model, VerifyOptions):
        if x is not None or y is not None or eps is not None:
            raise UserError("verify(VerifyOptions(...)) takes no x, y or eps: they are in the options")
        return verify_checkpoint(model)  # type: ignore[return-value]
    if eps is None:
        raise UserError("verify(model, x, y, eps): eps (the L-inf radius in pixel units, e.g. 8/255) is required")
    from robustbench_mr.verifiers.bounds.methods import DEFAULT_BOUNDS
    from robustbench_mr.verifiers.status import VerifyResult

    xt, yt = _as_tensors(x, y, "verify")
    loaded = _loaded(model, tuple(xt.shape[1:]))
    if tuple(xt.shape[1:]) != tuple(loaded.input_shape):
        raise UserError(f"verify: x has inputs of shape {tuple(xt.shape[1:])}, the model takes {tuple(loaded.input_shape)}")
    _check_labels(yt, loaded.num_classes, "verify")
    options = VerifyOptions(checkpoint=loaded.path, eps=float(eps), n=max(1, len(yt)), jobs=jobs, timeout=timeout,
                            bounds=bounds or DEFAULT_BOUNDS, seed=seed, solver=solver, pgd_steps=pgd_steps,
                            pgd_restarts=pgd_restarts, progress=False, device=device, branching=branching)
    network = loaded.verifier_network()
    model64 = loaded.float64_model()
    xs = xt.double().numpy()
    results: dict[int, VerifyResult] = {}
    from robustbench_mr.verifiers.form.chain import Network

    dev = "cpu"
    if not isinstance(network, Network):
        from robustbench_mr.verifiers.bounds.engine import resolve_device

        dev = resolve_device(options.device)

    def args_of(i: int) -> tuple:
        return one_input_args(options, model64, network, i, xs[i], int(yt[i]), dev)

    def record(r: VerifyResult) -> None:
        results[r.idx] = r

    run_inputs(options, list(range(len(yt))), args_of, record, lambda i: i in results, lambda: None)
    return [results[i] for i in range(len(yt))]


# --- attack -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AttackRun:
    """One attack on every input: the checked adversarial points (``x_adv``, N x ...; the clean
    input where the model misclassified it and it was not attacked), per-input status, the
    model's prediction at each point and its distance from the input."""

    method: str
    norm: Norm
    eps: float
    x_adv: torch.Tensor
    status: tuple[AttackStatus, ...]
    adv_prediction: torch.Tensor
    distance: torch.Tensor
    seconds: float
    attack: Attack = field(repr=False)

    @property
    def robust_accuracy(self) -> float:
        from robustbench_mr.attacks.runner import AttackStatus

        return sum(s is AttackStatus.ROBUST for s in self.status) / len(self.status) if self.status else float("nan")


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Every attack's run, and the worst case per input: ``broken`` if any attack broke it
    (``x_worst`` holds the first breaking point), ``misclassified`` if the clean input is."""

    runs: tuple[AttackRun, ...]
    labels: torch.Tensor
    clean_prediction: torch.Tensor
    worst: tuple[AttackStatus, ...]
    x_worst: torch.Tensor

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_prediction == self.labels).float().mean()) if len(self.labels) else float("nan")

    @property
    def robust_accuracy(self) -> float:
        """Robust accuracy against all attacks together (an upper bound on the true one)."""
        from robustbench_mr.attacks.runner import AttackStatus

        return sum(s is AttackStatus.ROBUST for s in self.worst) / len(self.worst) if self.worst else float("nan")

    def __getitem__(self, method: str) -> AttackRun:
        """The run of ``method`` (``"pgd"``, or ``"autoattack:l2"`` where a method ran at several norms)."""
        name, _, norm = method.partition(":")
        hits = [r for r in self.runs if r.method == name and (not norm or r.norm.value == norm)]
        if len(hits) != 1:
            raise KeyError(f"{method!r}: runs are {', '.join(f'{r.method}:{r.norm.value}' for r in self.runs)}")
        return hits[0]


def _attack_objects(attacks: Sequence[Any] | str | Attack, eps: float | None, norm: str, loaded_path: str, **settings: Any) -> list[Attack]:
    from robustbench_mr.attacks.base import Attack
    from robustbench_mr.attacks.runner import AttackOptions, build_attack, plan_jobs

    items = [attacks] if isinstance(attacks, (str, Attack)) else list(attacks)
    if not items:
        raise UserError("attack: attacks is empty; name at least one of pgd, autoattack, autoattack-plus, wasserstein, all")
    out: list[Attack] = []
    for item in items:
        if isinstance(item, Attack):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise UserError(f"attack: {item!r} is neither an attack name nor an Attack")
        options = AttackOptions(checkpoint=Path(loaded_path), attack=item, eps=eps, norm=norm, **settings)
        out += [build_attack(job, options, options.batch_size) for job in plan_jobs(options)]
    return out


def attack(model: ModelLike, x: Any = None, y: Any = None, eps: float | None = None, attacks: Sequence[Any] | str = ("pgd",), *,
           norm: str = "linf", seed: int = 0, batch_size: int = 100, device: str | None = None, pgd_steps: int = 20,
           pgd_restarts: int = 10, pgd_step_size: float = 2 / 255, wasserstein_iterations: int = 400,
           wasserstein_sinkhorn_iters: int = 400) -> AttackResult:
    """Attack ``model`` at inputs ``x`` (pixels in [0,1]) with labels ``y``.

    ``attacks``: names (``pgd``, ``autoattack``, ``autoattack-plus``, ``wasserstein``, or
    ``all`` for the paper's set) at radius ``eps`` (default per norm: 8/255 L-inf, 0.5 L2,
    0.1 Wasserstein) and ``norm``, and/or :class:`~robustbench_mr.attacks.base.Attack` objects.
    Every returned point is re-checked as the CLI does (projected into the ball and [0,1],
    then a plain forward pass): the attack's own success flag is never trusted. ``device``:
    where to run (default: where the model is; given, the model is moved there).

    ``attack(AttackOptions(...))`` attacks a checkpoint on a data set and returns an
    ``AttackSummary`` (:func:`attack_checkpoint`).
    """
    import torch

    from robustbench_mr.attacks.runner import AttackOptions, AttackStatus, _resolve_device, attack_batch

    if isinstance(model, AttackOptions):
        if x is not None or y is not None or eps is not None:
            raise UserError("attack(AttackOptions(...)) takes no x, y or eps: they are in the options")
        return attack_checkpoint(model)  # type: ignore[return-value]
    if batch_size <= 0:
        raise UserError("attack: batch_size must be positive")
    xt, yt = _as_tensors(x, y, "attack")
    loaded = _loaded(model, tuple(xt.shape[1:]))
    net = loaded.model
    _check_labels(yt, loaded.num_classes, "attack")
    tensors = [*net.parameters(), *net.buffers()]
    dev = _resolve_device(device) if device is not None else (tensors[0].device if tensors else torch.device("cpu"))
    if device is not None:
        net.to(dev)
    atks = _attack_objects(attacks, eps, norm, loaded.path, seed=seed, batch_size=batch_size, pgd_steps=pgd_steps,
                           pgd_restarts=pgd_restarts, pgd_step_size=pgd_step_size, wasserstein_iterations=wasserstein_iterations,
                           wasserstein_sinkhorn_iters=wasserstein_sinkhorn_iters)
    flags = [(m, m.training) for m in net.modules()]
    net.eval()
    runs: list[AttackRun] = []
    clean = torch.zeros(len(yt), dtype=torch.long)
    try:
        for atk in atks:
            t0 = time.perf_counter()
            parts = [attack_batch(net, atk, xt[b:b + batch_size].to(dev), yt[b:b + batch_size].to(dev)) for b in range(0, len(yt), batch_size)]
            status = tuple(s for p in parts for s in p.status)
            clean = torch.cat([p.clean_prediction for p in parts]) if parts else clean
            runs.append(AttackRun(atk.name, atk.norm, atk.eps, torch.cat([p.x_adv.cpu() for p in parts]) if parts else xt.clone(),
                                  status, torch.cat([p.adv_prediction for p in parts]) if parts else clean.clone(),
                                  torch.cat([p.distance for p in parts]) if parts else torch.zeros(0, dtype=torch.float64),
                                  time.perf_counter() - t0, atk))
    finally:
        for m, training in flags:
            m.training = training
    worst: list[AttackStatus] = []
    x_worst = xt.clone()
    for i in range(len(yt)):
        if int(clean[i]) != int(yt[i]):
            worst.append(AttackStatus.MISCLASSIFIED)
            continue
        hit = next((r for r in runs if r.status[i] is AttackStatus.BROKEN), None)
        worst.append(AttackStatus.BROKEN if hit is not None else AttackStatus.ROBUST)
        if hit is not None:
            x_worst[i] = hit.x_adv[i]
    return AttackResult(tuple(runs), yt, clean, tuple(worst), x_worst)


# --- benchmark --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkResult:
    """Clean, attacked and verified accuracy of one model on the first ``n`` inputs, as stored."""

    name: str
    sha256: str
    dataset: str
    threat_model: str  # "Linf" or "L2"
    eps: float
    n: int
    clean_accuracy: float
    robust_accuracy: float  # against all attacks together
    per_attack: dict[str, float]
    verified_accuracy: float | None  # None: not verified (see verify_note)
    verify_note: str
    results: str

    def lines(self) -> list[str]:
        from robustbench_mr.utils.eps import format_eps

        out = [f"{self.name} ({self.sha256[:12]}) on {self.dataset}, {self.threat_model} eps {format_eps(self.eps)}, first {self.n} inputs",
               f"clean accuracy    {self.clean_accuracy:.2%}"]
        out += [f"robust accuracy   {v:.2%}  ({k})" for k, v in self.per_attack.items()]
        if len(self.per_attack) > 1:
            out.append(f"robust accuracy   {self.robust_accuracy:.2%}  (all attacks together)")
        out.append(f"verified accuracy {self.verified_accuracy:.2%}" if self.verified_accuracy is not None else f"verified accuracy -  ({self.verify_note})")
        out.append(f"results in {self.results}")
        return out


_THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def benchmark(model: ModelLike, dataset: str = "digits", threat_model: str = "Linf", eps: float | None = None, n: int = 100,
              results: str | Path = "runs/results.sqlite", *, attacks: Sequence[str] = ("pgd", "autoattack"),
              verify: bool | None = None, data_dir: str | Path | None = None, split: str | None = None, name: str | None = None,
              timeout: float = 30.0, jobs: int = 1, seed: int = 0, device: str = "cpu", bounds: str | None = None,
              solver: str = "highs", batch_size: int = 100, pgd_steps: int = 20, pgd_restarts: int = 10,
              progress: bool = False) -> BenchmarkResult:
    """Clean accuracy, attacks and exact verification of ``model`` on the first ``n`` inputs of
    ``dataset``, in RobustBench's spirit; every input's row goes to the results store
    ``results`` (as ``mr-eval attack`` / ``verify`` write them, resumable), so ``mr-eval
    report``, the leaderboard and the plots include the model (named ``name``, default the
    module's class or the file name; keyed by a digest of its structure and weights).

    ``threat_model``: ``Linf`` or ``L2`` (eps default 8/255 or 0.5). ``verify``: True (an
    error if the verifier cannot import the model), False, or None (default: when the model is
    L-inf and importable; otherwise ``verify_note`` says why not).
    """
    from robustbench_mr.attacks.base import Norm
    from robustbench_mr.attacks.runner import DEFAULT_EPS, AttackOptions
    from robustbench_mr.attacks.runner import attack as run_attacks
    from robustbench_mr.data import dataset_info
    from robustbench_mr.errors import UnsupportedLayerError
    from robustbench_mr.results_db import ResultsDB
    from robustbench_mr.verifiers.bounds.methods import DEFAULT_BOUNDS
    from robustbench_mr.verifiers.runs.dataset import VerifyOptions
    from robustbench_mr.verifiers.runs.dataset import verify as run_verify

    tm = _THREAT_MODELS.get(str(getattr(threat_model, "value", threat_model)).lower())
    if tm is None:
        raise UserError(f"benchmark: threat_model {threat_model!r}: use Linf or L2")
    norm = Norm(tm.lower())
    eps = float(DEFAULT_EPS[norm] if eps is None else eps)
    if n <= 0:
        raise UserError("benchmark: n must be positive")
    info = dataset_info(dataset)
    loaded = _loaded(model, info.input_shape, dataset=dataset, name=name)
    if tuple(loaded.input_shape) != tuple(info.input_shape):
        raise UserError(f"benchmark: the model takes inputs {tuple(loaded.input_shape)}, {dataset} images are {info.input_shape}")
    db = Path(results)
    per_attack: dict[str, float] = {}
    summary = None
    for method in attacks:
        summary = run_attacks(AttackOptions(checkpoint=Path(loaded.path), attack=method, eps=eps, norm=norm.value, n=n, batch_size=batch_size,
                                            db=db, dataset=dataset, split=split, data_dir=Path(data_dir) if data_dir else None, seed=seed,
                                            device=device, pgd_steps=pgd_steps, pgd_restarts=pgd_restarts, progress=progress), loaded=loaded)
        for j in summary.jobs:
            per_attack[j.method if j.norm == norm.value else f"{j.method}:{j.norm}"] = j.robust_accuracy
    verified: float | None = None
    note = ""
    vsum = None
    if verify is False:
        note = "verify=False"
    elif norm is not Norm.LINF:
        if verify:
            raise UserError("benchmark: the exact verifier handles L-inf only; use threat_model='Linf' or verify=False")
        note = "the exact verifier handles L-inf only"
    else:
        try:
            loaded.verifier_network()
        except UnsupportedLayerError as exc:
            if verify:
                raise
            note = str(exc)
        else:
            vsum = run_verify(VerifyOptions(checkpoint=loaded.path, eps=eps, dataset=dataset, data_dir=str(data_dir) if data_dir else None,
                                            split=split, n=n, jobs=jobs, timeout=timeout, bounds=bounds or DEFAULT_BOUNDS, db=str(db),
                                            seed=seed, solver=solver, progress=progress), loaded=loaded)
            verified = vsum.verified_accuracy
    # all attacks together, per input, from the stored rows (as the report computes it)
    with ResultsDB(db) as store:
        rows = [r for r in store.rows(kind="attack", ckpt_sha=loaded.sha256, dataset=dataset, norm=norm.value)
                if abs(r.eps - eps) <= 1e-9 * max(1.0, eps) and r.idx < n and (summary is None or r.split == summary.split)]
    robust: dict[int, bool] = {}
    clean: dict[int, bool] = {}
    for r in rows:
        robust[r.idx] = robust.get(r.idx, True) and r.status == "robust"
        clean.setdefault(r.idx, r.label == r.prediction)
    if clean:
        clean_acc = sum(clean.values()) / len(clean)
    elif vsum is not None:
        clean_acc = vsum.clean_accuracy
    else:
        clean_acc = float("nan")
    total = len(robust) or (vsum.total if vsum is not None else 0)
    return BenchmarkResult(loaded.path, loaded.sha256, dataset, tm, eps, total, clean_acc,
                           sum(robust.values()) / len(robust) if robust else float("nan"), per_attack, verified, note, str(db))


__all__ = ["AttackResult", "AttackRun", "BenchmarkResult", "attack", "attack_checkpoint", "benchmark", "verify", "verify_checkpoint"]
