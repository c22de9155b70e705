"""``verify(options)``: exact robustness verification of a checkpoint on a dataset slice.

Per input: misclassified -> no solve; interval bounds (verified by them alone -> nothing
else); short PGD (cheap falsification, its best point warm starts the MILP); tighter bounds
(verified by bounds alone -> no MILP); then the MILP (``solve.check_property``). A
counterexample is ``falsified`` only after a float64 forward pass of the ORIGINAL torch model
(a ``.double()`` copy) and of the network form both confirm it inside the ball; otherwise
``unknown``.

Inputs run in parallel with joblib (loky processes, or a Dask cluster); the parent writes
each finished input to the SQLite results database at once, so Ctrl-C or a dead worker
loses nothing written, and a re-run skips decided inputs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.bounds import BOUND_METHODS, DEFAULT_BOUNDS, interval_bounds
from robustbench_mr.verifiers.milp import SOLVERS
from robustbench_mr.verifiers.network import Network
from robustbench_mr.verifiers.property import robustness_property
from robustbench_mr.verifiers.solve import PropertyStatus, check_property
from robustbench_mr.verifiers.status import DECIDED, VerifyResult, VerifyStatus

BACKENDS = ("loky", "dask")
METHOD_PREFIX = "milp"


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class VerifyOptions:
    checkpoint: str
    eps: float
    dataset: str | None = None  # default: the checkpoint's
    data_dir: str | None = None
    split: str = "test"
    n: int = 1000
    start: int = 0
    jobs: int = field(default_factory=default_jobs)
    timeout: float = 120.0
    bounds: str = DEFAULT_BOUNDS
    db: str = "runs/results.sqlite"
    seed: int = 0
    solver: str = "highs"
    backend: str = "loky"
    scheduler: str | None = None
    pgd_steps: int = 20
    pgd_restarts: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.bounds not in BOUND_METHODS:
            raise UserError(f"--bounds {self.bounds!r}: choose one of {', '.join(BOUND_METHODS)}")
        if self.solver not in SOLVERS:
            raise UserError(f"--solver {self.solver!r}: choose one of {', '.join(SOLVERS)}")
        from robustbench_mr.verifiers.pulp_solver import check_available

        check_available(self.solver)  # a one-line error when cbc / gurobi / cplex is not installed
        if self.backend not in BACKENDS:
            raise UserError(f"--backend {self.backend!r}: choose loky or dask")
        if self.backend == "dask" and not self.scheduler:
            raise UserError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler address)")
        if not 0.0 <= self.eps <= 1.0:
            raise UserError(f"--eps {self.eps}: must lie in [0, 1] (pixel units)")
        if self.timeout <= 0 or self.n <= 0 or self.start < 0 or self.jobs <= 0:
            raise UserError("--timeout, --n and --jobs must be positive and --start non-negative")

    @property
    def method(self) -> str:
        # highs keeps the historical key; other solvers get their own rows (and resume separately)
        return f"{METHOD_PREFIX}-{self.bounds}" + ("" if self.solver == "highs" else f"-{self.solver}")


@dataclass(frozen=True)
class VerifySummary:
    total: int
    counts: dict[str, int]
    clean_accuracy: float
    verified_accuracy: float
    pgd_accuracy: float
    mean_seconds: float
    median_seconds: float
    mean_unstable: float
    db: str
    results: tuple[VerifyResult, ...] = ()

    def lines(self) -> list[str]:
        c = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        return [
            f"inputs {self.total}: {c}",
            f"clean accuracy    {self.clean_accuracy:.2%}",
            f"verified accuracy {self.verified_accuracy:.2%}  (lower bound on robust accuracy)",
            f"PGD accuracy      {self.pgd_accuracy:.2%}  (upper bound)",
            f"seconds per input: mean {self.mean_seconds:.3f}, median {self.median_seconds:.3f}; mean unstable ReLUs {self.mean_unstable:.1f}",
            f"results in {self.db}",
        ]


def _pgd(model: nn.Module, x: torch.Tensor, label: int, eps: float, steps: int, restarts: int, seed: int) -> torch.Tensor:
    """Best margin-maximizing L-inf PGD point (float64); cheap falsification and warm start."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    best, best_margin = x.clone(), -float("inf")
    alpha = 2.5 * eps / max(steps, 1)
    for r in range(restarts):
        delta = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps if r > 0 else torch.zeros_like(x)
        xa = (x + delta).clamp(lo, hi)
        for _ in range(steps + 1):
            xa = xa.detach().requires_grad_(True)
            out = model(xa[None])[0]
            other = out.clone()
            other[label] = -float("inf")
            margin = other.max() - out[label]
            if margin.item() > best_margin:
                best_margin, best = margin.item(), xa.detach().clone()
            if margin.item() >= 0:
                return best
            (g,) = torch.autograd.grad(margin, xa)
            xa = torch.max(torch.min(xa.detach() + alpha * g.sign(), hi), lo)
    return best


def confirm_counterexample(model64: nn.Module, network: Network, x0: np.ndarray, x_adv: np.ndarray, label: int, eps: float) -> bool:
    """x_adv lies in the clipped eps-ball around x0 and some other class scores >= the label
    in BOTH a float64 forward pass of the torch model and the network form."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    xa = np.asarray(x_adv, dtype=np.float64).reshape(-1)
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    if np.any(xa < lo) or np.any(xa > hi):
        return False
    with torch.no_grad():
        y_torch = model64(torch.from_numpy(xa).reshape(1, *network.input_shape))[0].numpy()
    y_net = network.forward(xa)
    return all(np.delete(y, label).max() >= y[label] for y in (y_torch, y_net))


def verify_one(model64: nn.Module, network: Network, idx: int, x: np.ndarray, label: int, eps: float, timeout: float, bounds: str,
               pgd_steps: int, pgd_restarts: int, seed: int, solver: str = "highs") -> VerifyResult:
    """Decide one input (runs in a worker; never raises: failures become ``error``)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).reshape(network.input_shape)
        with torch.no_grad():
            pred = int(model64(xt[None])[0].argmax())
        if pred != label:
            return VerifyResult(idx, label, pred, VerifyStatus.MISCLASSIFIED, time.perf_counter() - start)
        prop = robustness_property(np.asarray(x).reshape(-1), label, eps, network.num_outputs)
        # interval bounds first: nearly free, and they alone prove many inputs of certifiably
        # trained nets, which then need no attack at all
        ib = interval_bounds(network, prop.lower, prop.upper)
        if all(float(np.min(c.d - (np.maximum(c.C, 0) @ ib.lower[-1] + np.minimum(c.C, 0) @ ib.upper[-1]))) < 0.0 for c in prop.clauses):
            return VerifyResult(idx, label, pred, VerifyStatus.VERIFIED, time.perf_counter() - start, False, ib.num_unstable, 0, "interval",
                                message="proven by interval bounds")
        x_pgd = _pgd(model64, xt, label, eps, pgd_steps, pgd_restarts, seed + idx).reshape(-1).numpy()
        if confirm_counterexample(model64, network, x, x_pgd, label, eps):
            return VerifyResult(idx, label, pred, VerifyStatus.FALSIFIED, time.perf_counter() - start, True, message="PGD", counterexample=x_pgd)
        # PGD has searched the ball already: no extra random samples (the MILP is exact anyway)
        r = check_property(network, prop, timeout - (time.perf_counter() - start), bounds=bounds, warm_start=x_pgd, seed=seed + idx, solver=solver,
                           samples=0)
        stats = dict(unstable_relus=r.unstable_relus, binaries=r.binaries, bound_method=r.bound_method, dual_bound=r.dual_bound)
        if r.status is PropertyStatus.SAT:
            if r.counterexample is not None and confirm_counterexample(model64, network, x, r.counterexample, label, eps):
                return VerifyResult(idx, label, pred, VerifyStatus.FALSIFIED, time.perf_counter() - start, False, message=r.message, counterexample=r.counterexample, **stats)
            return VerifyResult(idx, label, pred, VerifyStatus.UNKNOWN, time.perf_counter() - start, False, message="counterexample not confirmed by the torch float64 model: " + r.message, **stats)
        status = {PropertyStatus.UNSAT: VerifyStatus.VERIFIED, PropertyStatus.TIMEOUT: VerifyStatus.TIMEOUT,
                  PropertyStatus.ERROR: VerifyStatus.ERROR, PropertyStatus.UNKNOWN: VerifyStatus.UNKNOWN}[r.status]
        return VerifyResult(idx, label, pred, status, time.perf_counter() - start, False, message=r.message, **stats)
    except Exception as exc:  # noqa: BLE001 - one input's failure is recorded, the run goes on
        return VerifyResult(idx, label, -1, VerifyStatus.ERROR, time.perf_counter() - start, message=f"{type(exc).__name__}: {exc}")


def _result_from_row(row) -> VerifyResult:  # noqa: ANN001 - a ResultRow
    d = row.details
    return VerifyResult(row.idx, row.label if row.label is not None else -1, row.prediction if row.prediction is not None else -1, VerifyStatus(row.status),
                        row.seconds or 0.0, bool(d.get("pgd_broken", False)), int(d.get("unstable_relus", 0)), int(d.get("binaries", 0)),
                        d.get("bound_method", ""), d.get("dual_bound"), d.get("message", ""))


def _parallel_context(options: VerifyOptions):  # noqa: ANN202
    from joblib import parallel_config

    if options.backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError as exc:  # pragma: no cover - dask is a declared dependency
            raise UserError("--backend dask needs dask[distributed]: pip install 'dask[distributed]'") from exc
        stack = contextlib.ExitStack()
        try:
            client = stack.enter_context(Client(options.scheduler, timeout=10))
        except OSError as exc:
            raise UserError(f"--scheduler {options.scheduler}: cannot reach the Dask scheduler ({exc})") from None
        stack.enter_context(parallel_config(backend="dask", n_jobs=options.jobs))
        del client
        return stack
    return parallel_config(backend="loky", n_jobs=options.jobs)


def verify(options: VerifyOptions) -> VerifySummary:
    from joblib import Parallel, delayed
    from tqdm import tqdm

    from robustbench_mr.checkpoint import load_checkpoint
    from robustbench_mr.data.datasets import load_dataset
    from robustbench_mr.results_db import ResultRow, ResultsDB
    from robustbench_mr.verifiers.torch_import import from_torch
    model, meta = load_checkpoint(options.checkpoint)
    dataset = options.dataset or meta.dataset
    x_all, y_all = load_dataset(dataset, options.split, options.data_dir, False)
    if tuple(x_all.shape[1:]) != tuple(meta.input_shape):
        raise UserError(f"dataset {dataset} has inputs {tuple(x_all.shape[1:])}, the checkpoint expects {tuple(meta.input_shape)}: pass the right --dataset")
    if options.start >= len(x_all):
        raise UserError(f"--start {options.start}: the {dataset} {options.split} split has only {len(x_all)} inputs")
    stop = min(len(x_all), options.start + options.n)
    network = from_torch(model, tuple(meta.input_shape), source=options.checkpoint)
    model64 = model.double().eval()
    for p in model64.parameters():
        p.requires_grad_(False)

    db_path = Path(options.db)
    cex_dir = db_path.parent / "counterexamples"
    key = dict(kind="verify", ckpt_sha=meta.sha256, dataset=dataset, split=options.split, norm="linf", eps=float(options.eps), method=options.method)
    from robustbench_mr.verifiers.pulp_solver import solver_version as _solver_version

    solver_version = _solver_version(options.solver)  # e.g. "HiGHS 1.16.0 (highspy)", "CBC 2.10.3 (PuLP 3.3.2)"
    results: dict[int, VerifyResult] = {}
    with ResultsDB(db_path) as db:
        for row in db.rows(**key):
            if options.start <= row.idx < stop and VerifyStatus(row.status) in DECIDED:
                results[row.idx] = _result_from_row(row)
        todo = [i for i in range(options.start, stop) if i not in results]

        def record(r: VerifyResult) -> None:
            details = dict(pgd_broken=r.pgd_broken, unstable_relus=r.unstable_relus, binaries=r.binaries, bound_method=r.bound_method,
                           dual_bound=r.dual_bound, message=r.message)
            if r.counterexample is not None:
                cex_dir.mkdir(parents=True, exist_ok=True)
                f = cex_dir / f"{meta.sha256[:16]}_{dataset}_{options.split}_{r.idx}_eps{options.eps:.6g}.npy"
                np.save(f, np.asarray(r.counterexample, dtype=np.float64).reshape(network.input_shape))
                details["counterexample"] = str(f)
            db.put(ResultRow(seconds=r.seconds, label=r.label, prediction=r.prediction, status=r.status.value, seed=options.seed,
                             timeout=options.timeout, solver=options.solver, solver_version=solver_version, ckpt_path=str(options.checkpoint),
                             idx=r.idx, details=details, **key))
            results[r.idx] = r

        tasks = (delayed(verify_one)(model64, network, i, x_all[i], int(y_all[i]), options.eps, options.timeout, options.bounds,
                                     options.pgd_steps, options.pgd_restarts, options.seed, options.solver) for i in todo)
        bar = tqdm(total=len(todo), desc="verify", unit="input", disable=not options.progress, file=None)
        try:
            if options.jobs == 1 and options.backend == "loky":
                for t in tasks:
                    fn, args, kw = t
                    record(fn(*args, **kw))
                    bar.update(1)
            else:
                with _parallel_context(options):
                    for r in Parallel(return_as="generator_unordered")(tasks):
                        record(r)
                        bar.update(1)
        finally:
            bar.close()
    return summarize([results[i] for i in sorted(results)], str(db_path))


def summarize(results: list[VerifyResult], db: str) -> VerifySummary:
    n = len(results)
    counts = {s.value: sum(r.status is s for r in results) for s in VerifyStatus}
    correct = sum(r.status is not VerifyStatus.MISCLASSIFIED for r in results)
    secs = [r.seconds for r in results] or [0.0]
    solved = [r for r in results if r.status is not VerifyStatus.MISCLASSIFIED]
    return VerifySummary(
        total=n, counts=counts,
        clean_accuracy=correct / n if n else 0.0,
        verified_accuracy=counts["verified"] / n if n else 0.0,
        pgd_accuracy=(correct - sum(r.pgd_broken for r in results)) / n if n else 0.0,
        mean_seconds=statistics.fmean(secs), median_seconds=statistics.median(secs),
        mean_unstable=statistics.fmean([r.unstable_relus for r in solved]) if solved else 0.0,
        db=db, results=tuple(results),
    )
