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

Resume is keyed on what was computed: every row stores ``input_digest`` of its input (pixels
and label), and a stored verdict is reused only when that digest matches the current data
(changed data files, or rows written before digests existed, are recomputed and replaced).
The other options that could change a verdict are in the row's key already: ``eps``, the norm
and ``method`` (bounds and solver). Timeout, seed and the PGD settings are not: a verified,
falsified or misclassified verdict is exact whatever they were, and only those are reused.

A dead loky worker (a crash in native code, the OS killing it for memory) does not end the run:
the inputs it may have been running are retried once, each alone in a fresh process; an input
whose worker dies again is written as ``error`` ("worker died twice: ...") and the run goes on.
With ``--jobs 1`` inputs run in this process, so there is no worker to lose.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.bounds.methods import BOUND_METHODS, DEFAULT_BOUNDS  # noqa: F401 - names re-exported
from robustbench_mr.verifiers.bounds.chain import interval_bounds  # noqa: F401 - names re-exported
from robustbench_mr.verifiers.milp.solvers import SOLVERS  # noqa: F401 - re-exported
from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING
from robustbench_mr.verifiers.form.chain import Network
from robustbench_mr.verifiers.spec.property import robustness_property
from robustbench_mr.verifiers.decide.chain import PropertyStatus, check_property
from robustbench_mr.verifiers.decide.stages import merge_stages
from robustbench_mr.verifiers.status import DECIDED, VerifyResult, VerifyStatus

from robustbench_mr.verifiers.runs.options import BACKENDS, default_jobs  # noqa: E402,F401 - re-exported
# declared in a module without engine imports, so that the CLI builds its parser from it
from robustbench_mr.verifiers.runs.options import METHOD_PREFIX, VerifyOptions  # noqa: E402,F401 - re-exported
# Test hook, for the tests only: "IDX" makes the worker process that starts input IDX exit at
# once (os._exit(1), as if killed), on every attempt; "IDX:ATTEMPT" only on that attempt (1: in
# the parallel run, 2: the retry alone). Read in the parent and passed to the workers, so it
# never fires in the parent process (nor with --jobs 1).
KILL_WORKER_ENV = "ROBUSTBENCH_MR_TEST_KILL_WORKER"


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
    stale: int = 0  # stored verdicts recomputed because their input digest differed (or was missing)
    worker_deaths: int = 0  # worker processes lost during this run
    died_twice: tuple[int, ...] = ()  # inputs written as error because their worker died twice

    def lines(self) -> list[str]:
        c = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        lines = [
            f"inputs {self.total}: {c}",
            f"clean accuracy    {self.clean_accuracy:.2%}",
            f"verified accuracy {self.verified_accuracy:.2%}  (lower bound on robust accuracy)",
            f"PGD accuracy      {self.pgd_accuracy:.2%}  (upper bound)",
            f"seconds per input: mean {self.mean_seconds:.3f}, median {self.median_seconds:.3f}; mean unstable ReLUs {self.mean_unstable:.1f}",
        ]
        if self.stale:
            lines.append(f"recomputed {self.stale} stored verdict(s) whose input changed or had no digest")
        if self.worker_deaths:
            twice = ", ".join(map(str, self.died_twice)) or "none"
            lines.append(f"worker processes died {self.worker_deaths} time(s); inputs written as error after their worker died twice: {twice}")
        lines.append(f"results in {self.db}")
        return lines


def _pgd(model: nn.Module, x: torch.Tensor, label: int, eps: float, steps: int, restarts: int, seed: int, deadline: Any = None) -> torch.Tensor:
    """The cheap falsification and MILP warm start: the project's L-inf PGD (``attacks/pgd.py``,
    sign steps of 2.5 eps / steps, in the ball and [0, 1]) on the margin max_{j != label} y_j -
    y_label, in float64; the first run starts at ``x``, later ones at random points. Returns the
    best point seen (the run's start or end), early once one is adversarial or ``deadline`` has
    passed."""
    from robustbench_mr.attacks.base import Norm
    from robustbench_mr.attacks.pgd import PGD, PGDConfig

    gen = torch.Generator().manual_seed(seed)
    attack = PGD(Norm.LINF, eps, PGDConfig(steps=steps, restarts=1, step_size=2.5 * eps / max(steps, 1), random_start=False, seed=seed))
    xb = x[None]
    y = torch.tensor([label])

    def margin(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        other = out.clone()
        other[torch.arange(out.shape[0]), y] = -float("inf")
        return other.amax(1) - out[torch.arange(out.shape[0]), y]

    best, best_margin = x.clone(), -float("inf")
    for r in range(max(1, restarts)):
        start = xb.clone() if r == 0 else attack.random_point(xb, gen)
        for cand in (start, attack.run_once(model, xb, y, start, loss=margin) if steps > 0 else start):
            with torch.no_grad():
                m = float(margin(model(cand), y)[0])
            if m > best_margin:
                best_margin, best = m, cand[0].detach().clone()
        if best_margin >= 0 or deadline is not None and deadline.expired():
            break
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


_LABEL_ARG = 4  # position of ``label`` in verify_one's arguments


def one_input_args(options: VerifyOptions, model64: nn.Module, network: Any, idx: int, x: np.ndarray, label: int, device: str) -> tuple:
    """``verify_one``'s arguments for input ``idx`` of a run with ``options`` (the one place that
    maps the options onto them: ``mr-eval verify`` and ``api.verify`` both call it)."""
    return (model64, network, idx, x, label, options.eps, options.timeout, options.bounds, options.pgd_steps, options.pgd_restarts,
            options.seed, options.solver, device, options.branching)


def verify_one(model64: nn.Module, network: Network, idx: int, x: np.ndarray, label: int, eps: float, timeout: float, bounds: str,
               pgd_steps: int, pgd_restarts: int, seed: int, solver: str = "highs", device: str = "cpu",
               branching: str = DEFAULT_BRANCHING) -> VerifyResult:
    """Decide one input (runs in a worker; never raises: failures become ``error``). ``device``:
    where a graph-form network is bounded (``--device``)."""
    from robustbench_mr.threads import worker_threads
    from robustbench_mr.utils.allocator import keep_freed_memory

    torch.set_num_threads(worker_threads())  # the command's --threads (default 1: parallelism is over inputs)
    keep_freed_memory()  # every bound pass reuses the last one's buffers, no page faults (utils/allocator.py); speed only
    start = time.perf_counter()
    try:
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).reshape(network.input_shape)
        with torch.no_grad():
            pred = int(model64(xt[None])[0].argmax())
        if pred != label:
            return VerifyResult(idx, label, pred, VerifyStatus.MISCLASSIFIED, time.perf_counter() - start)
        prop = robustness_property(np.asarray(x).reshape(-1), label, eps, network.num_outputs)
        if not isinstance(network, Network):  # the graph form (residual / pooled nets)
            if device != "cpu":
                from robustbench_mr.verifiers.bounds.engine import resolve_device

                network = network.to(resolve_device(device))
            return _verify_one_graph(model64, network, idx, x, xt, label, pred, prop, eps, timeout, bounds, pgd_steps, pgd_restarts, seed, solver,
                                     branching, start)
        # interval bounds first: nearly free, and they alone prove many inputs of certifiably
        # trained nets, which then need no attack at all
        ib = interval_bounds(network, prop.lower, prop.upper)
        if all(float(np.min(c.d - (np.maximum(c.C, 0) @ ib.lower[-1] + np.minimum(c.C, 0) @ ib.upper[-1]))) < 0.0 for c in prop.clauses):
            secs = time.perf_counter() - start
            return VerifyResult(idx, label, pred, VerifyStatus.VERIFIED, secs, False, ib.num_unstable, 0, "interval",
                                message="proven by interval bounds", stages={"bounds": round(secs, 4)}, search="bounds")
        x_pgd = _pgd(model64, xt, label, eps, pgd_steps, pgd_restarts, seed + idx).reshape(-1).numpy()
        if confirm_counterexample(model64, network, x, x_pgd, label, eps):
            secs = time.perf_counter() - start
            return VerifyResult(idx, label, pred, VerifyStatus.FALSIFIED, secs, True, message="PGD", counterexample=x_pgd,
                                stages={"attack": round(secs, 4)}, search="attack")
        # PGD has searched the ball already: no extra random samples (the MILP is exact anyway)
        r = check_property(network, prop, timeout - (time.perf_counter() - start), bounds=bounds, warm_start=x_pgd, seed=seed + idx, solver=solver,
                           samples=0, branching=branching)
        return _input_result(r, model64, network, idx, x, label, pred, eps, start)
    except Exception as exc:  # noqa: BLE001 - one input's failure is recorded, the run goes on
        return VerifyResult(idx, label, -1, VerifyStatus.ERROR, time.perf_counter() - start, message=f"{type(exc).__name__}: {exc}")


def _verify_one_graph(model64: nn.Module, graph: Any, idx: int, x: np.ndarray, xt: torch.Tensor, label: int, pred: int, prop: Any, eps: float,
                      timeout: float, bounds: str, pgd_steps: int, pgd_restarts: int, seed: int, solver: str, branching: str,
                      start: float) -> VerifyResult:
    """``verify_one`` on the graph form: interval bounds, PGD, then the graph decision
    (CROWN, alpha-CROWN, the graph MILP on small nets; ``decide/graph.py``), one deadline."""
    from robustbench_mr.deadline import Deadline
    from robustbench_mr.verifiers.decide.graph import check_graph_property

    deadline = Deadline(timeout, start)
    first = check_graph_property(graph, prop, deadline, bounds="interval")
    if first.status is PropertyStatus.UNSAT:
        return VerifyResult(idx, label, pred, VerifyStatus.VERIFIED, time.perf_counter() - start, False, first.unstable_relus, 0, "interval",
                            message=first.message)
    x_pgd = _pgd(model64, xt, label, eps, pgd_steps, pgd_restarts, seed + idx, deadline).reshape(-1).numpy()
    if confirm_counterexample(model64, graph, x, x_pgd, label, eps):
        return VerifyResult(idx, label, pred, VerifyStatus.FALSIFIED, time.perf_counter() - start, True, message="PGD", counterexample=x_pgd)
    r = check_graph_property(graph, prop, deadline, bounds=bounds, solver=solver, branching=branching)
    return _input_result(r, model64, graph, idx, x, label, pred, eps, start)


def _input_result(r: Any, model64: nn.Module, network: Any, idx: int, x: np.ndarray, label: int, pred: int, eps: float,
                  start: float) -> VerifyResult:
    """The input's verdict from its property's ``PropertyResult`` (chain or graph form): a
    counterexample counts only once the torch float64 model confirms it."""
    # the time before the property's decision (interval bounds, the PGD pre-attack) counts as its own stage
    before = max(0.0, time.perf_counter() - start - r.seconds)
    stats = dict(unstable_relus=r.unstable_relus, binaries=r.binaries, bound_method=r.bound_method, dual_bound=r.dual_bound,
                 stages=merge_stages({"attack": before}, r.stages), search=r.search)
    if r.status is PropertyStatus.SAT:
        if r.counterexample is not None and confirm_counterexample(model64, network, x, r.counterexample, label, eps):
            return VerifyResult(idx, label, pred, VerifyStatus.FALSIFIED, time.perf_counter() - start, False, message=r.message, counterexample=r.counterexample, **stats)
        return VerifyResult(idx, label, pred, VerifyStatus.UNKNOWN, time.perf_counter() - start, False, message="counterexample not confirmed by the torch float64 model: " + r.message, **stats)
    status = {PropertyStatus.UNSAT: VerifyStatus.VERIFIED, PropertyStatus.TIMEOUT: VerifyStatus.TIMEOUT,
              PropertyStatus.ERROR: VerifyStatus.ERROR, PropertyStatus.UNKNOWN: VerifyStatus.UNKNOWN}[r.status]
    return VerifyResult(idx, label, pred, status, time.perf_counter() - start, False, message=r.message, **stats)


@dataclass(frozen=True)
class _KillHook:
    """The test hook of ``KILL_WORKER_ENV``: exit the worker process that starts input ``idx``
    (on attempt ``attempt`` only, or on every attempt when None); never in ``parent_pid``."""

    idx: int
    attempt: int | None
    parent_pid: int

    @classmethod
    def from_env(cls) -> "_KillHook | None":
        text = os.environ.get(KILL_WORKER_ENV, "").strip()
        if not text:
            return None
        idx, _, attempt = text.partition(":")
        try:
            return cls(int(idx), int(attempt) if attempt else None, os.getpid())
        except ValueError:
            raise UserError(f"{KILL_WORKER_ENV}={text!r}: expected IDX or IDX:ATTEMPT (a test hook; unset it)") from None

    def fire(self, idx: int, attempt: int) -> None:
        if idx == self.idx and self.attempt in (None, attempt) and os.getpid() != self.parent_pid:
            os._exit(1)


def _verify_task(idx: int, attempt: int, marker_dir: str | None, hook: _KillHook | None, args: tuple) -> VerifyResult:
    """``verify_one(*args)`` in a worker process. It first leaves a file named ``idx`` in
    ``marker_dir`` (when given), so that after a worker died the parent knows which unwritten
    inputs had started, i.e. may have been on the dead worker."""
    if marker_dir is not None:
        Path(marker_dir, str(idx)).touch()
    if hook is not None:
        hook.fire(idx, attempt)
    return verify_one(*args)


def _death_reason(exc: BaseException) -> str:
    """loky's multi-line TerminatedWorkerError as a short phrase, e.g. ``exit code {EXIT(1)}``."""
    m = re.search(r"exit codes of the workers are (\{[^}]*\})", str(exc))
    return f"exit code {m.group(1)}" if m else " ".join(str(exc).split())[:200]


class _AloneRunner:
    """Retries inputs whose worker may have died, one at a time in a single worker process of
    its own, so that a death there is the one input's own. The process starts on first use and
    again after a death; ``close`` stops it."""

    def __init__(self, hook: _KillHook | None) -> None:
        self.hook = hook
        self._executor: Any = None  # a loky ProcessPoolExecutor (imported lazily, like joblib)

    def run(self, idx: int, args: tuple, first: BaseException) -> tuple[VerifyResult, bool]:
        """``(result, died again)``; after a second death the result is the ``error`` row."""
        from joblib.externals.loky.process_executor import ProcessPoolExecutor, TerminatedWorkerError

        start = time.perf_counter()
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=1)
        try:
            return self._executor.submit(_verify_task, idx, 2, None, self.hook, args).result(), False
        except TerminatedWorkerError as exc:
            self.close()
            message = f"worker died twice: in the parallel run ({_death_reason(first)}), then alone ({_death_reason(exc)})"
            return VerifyResult(idx, int(args[_LABEL_ARG]), -1, VerifyStatus.ERROR, time.perf_counter() - start, message=message), True

    def close(self) -> None:
        """Stop the worker at once, also when Ctrl-C / SIGTERM interrupted a retry."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, kill_workers=True)
            self._executor = None


@dataclass
class _Deaths:
    count: int = 0
    died_twice: list[int] = field(default_factory=list)


def _run_parallel(options: VerifyOptions, todo: list[int], args_of: Callable[[int], tuple], record: Callable[[VerifyResult], None],
                  written: Callable[[int], bool], tick: Callable[[], None]) -> _Deaths:
    """Run ``todo`` with joblib, recording each result as it arrives, and survive dead workers.

    When a loky worker dies, joblib ends the whole batch with ``TerminatedWorkerError``. The
    unwritten inputs that had started (their marker file exists; every in-flight input, since
    loky stops all workers) are retried once each, alone (``_AloneRunner``); the rest are
    dispatched again in parallel. Each round writes or settles at least one input, so it ends.
    """
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    hook = _KillHook.from_env()
    deaths = _Deaths()
    pending = list(todo)
    alone = _AloneRunner(hook)
    with tempfile.TemporaryDirectory(prefix="mr-verify-") as tmp, contextlib.closing(alone):
        markers = Path(tmp)
        # workers of a Dask cluster may run on other machines: no markers there (dask has its own retries)
        marker_dir = str(markers) if options.backend == "loky" else None
        while pending:
            for f in markers.iterdir():
                f.unlink()
            try:
                with _parallel_context(options):
                    tasks = (delayed(_verify_task)(i, 1, marker_dir, hook, args_of(i)) for i in pending)
                    for r in Parallel(return_as="generator_unordered", batch_size=1)(tasks):
                        record(r)
                        tick()
                pending = []
            except TerminatedWorkerError as exc:
                deaths.count += 1
                left = [i for i in pending if not written(i)]
                # no marker at all (it died before any input started): blame the first in flight
                started = [i for i in left if (markers / str(i)).exists()] or left[:options.jobs]
                pending = [i for i in left if i not in set(started)]
                for i in started:
                    r, died = alone.run(i, args_of(i), exc)
                    if died:
                        deaths.count += 1
                        deaths.died_twice.append(i)
                    record(r)
                    tick()
    return deaths


def run_inputs(options: VerifyOptions, todo: list[int], args_of: Callable[[int], tuple], record: Callable[[VerifyResult], None],
               written: Callable[[int], bool], tick: Callable[[], None]) -> _Deaths:
    """``verify_one(*args_of(i))`` for every ``i`` in ``todo``, each result handed to ``record``
    as it arrives: in this process with ``jobs == 1`` (loky), else in parallel (``_run_parallel``)."""
    if options.jobs == 1 and options.backend == "loky":
        for i in todo:
            record(verify_one(*args_of(i)))
            tick()
        return _Deaths()
    return _run_parallel(options, todo, args_of, record, written, tick)


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


def verify(options: VerifyOptions, loaded: Any = None) -> VerifySummary:
    """Verify ``options.checkpoint`` (one of our checkpoints or an ONNX file, read by
    :func:`robustbench_mr.intake.load_model`), or the already loaded ``loaded`` (a
    :class:`robustbench_mr.intake.LoadedModel`: how the Python API passes in-memory modules)."""
    from robustbench_mr.data.datasets import load_dataset
    from robustbench_mr.intake import load_model
    from robustbench_mr.progress import Progress
    from robustbench_mr.results_db import ResultRow, ResultsDB, input_digest
    if loaded is None:
        loaded = load_model(options.checkpoint, dataset=options.dataset)
    train_config = loaded.meta.train_config if loaded.meta is not None else {}
    dataset = options.dataset or loaded.dataset
    from robustbench_mr.data.datasets import resolve_eval_split, split_tag

    split = resolve_eval_split(options.split, train_config, dataset, loaded.dataset)
    x_all, y_all = load_dataset(dataset, split, options.data_dir, False)
    if tuple(x_all.shape[1:]) != tuple(loaded.input_shape):
        raise UserError(f"dataset {dataset} has inputs {tuple(x_all.shape[1:])}, the model expects {tuple(loaded.input_shape)}: pass the right --dataset")
    if options.start >= len(x_all):
        raise UserError(f"--start {options.start}: the {dataset} {split} split has only {len(x_all)} inputs")
    stop = min(len(x_all), options.start + options.n)
    network = loaded.verifier_network()
    model64 = loaded.float64_model()
    device = "cpu"
    if not isinstance(network, Network):
        from robustbench_mr.verifiers.bounds.engine import resolve_device

        device = resolve_device(options.device)  # a one-line error for cuda on a machine without one, before any work

    db_path = Path(options.db)
    cex_dir = db_path.parent / "counterexamples"
    key = dict(kind="verify", ckpt_sha=loaded.sha256, dataset=dataset, split=split, norm="linf", eps=float(options.eps), method=options.method)
    from robustbench_mr.verifiers.milp.pulp_solver import solver_version as _solver_version

    solver_version = _solver_version(options.solver)  # e.g. "HiGHS 1.16.0 (highspy)", "CBC 2.10.3 (PuLP 3.3.2)"
    # what each row is computed from: a stored verdict is reused only for the very same input
    digests = {i: input_digest(x_all[i], int(y_all[i])) for i in range(options.start, stop)}
    results: dict[int, VerifyResult] = {}
    with ResultsDB(db_path) as db:
        db.require_writable()  # a read-only --db stops here, before any work
        kept, stale = db.reusable_rows([s.value for s in DECIDED], digests, **key)
        for i, row in kept.items():
            results[i] = _result_from_row(row)
        todo = [i for i in range(options.start, stop) if i not in results]

        def record(r: VerifyResult) -> None:
            details = dict(pgd_broken=r.pgd_broken, unstable_relus=r.unstable_relus, binaries=r.binaries, bound_method=r.bound_method,
                           dual_bound=r.dual_bound, message=r.message, stages=r.stages, search=r.search,
                           branching=options.branching)
            if r.counterexample is not None:
                cex_dir.mkdir(parents=True, exist_ok=True)
                f = cex_dir / f"{loaded.sha256[:16]}_{dataset}_{split_tag(split)}_{r.idx}_eps{options.eps:.6g}.npy"
                np.save(f, np.asarray(r.counterexample, dtype=np.float64).reshape(network.input_shape))
                details["counterexample"] = str(f)
            db.put(ResultRow(seconds=r.seconds, label=r.label, prediction=r.prediction, status=r.status.value, seed=options.seed,
                             timeout=options.timeout, solver=options.solver, solver_version=solver_version, ckpt_path=str(options.checkpoint),
                             idx=r.idx, details=details, input_sha=digests[r.idx], **key))
            results[r.idx] = r
            bar.update(r.status.value)

        def args_of(i: int) -> tuple:
            return one_input_args(options, model64, network, i, x_all[i], int(y_all[i]), device)

        bar = Progress(len(todo), "verify", enabled=options.progress)
        try:
            deaths = run_inputs(options, todo, args_of, record, lambda i: i in results, lambda: None)
        finally:
            bar.close()
    return summarize([results[i] for i in sorted(results)], str(db_path), stale=len(stale), worker_deaths=deaths.count,
                     died_twice=tuple(sorted(deaths.died_twice)))


def summarize(results: list[VerifyResult], db: str, stale: int = 0, worker_deaths: int = 0,
              died_twice: tuple[int, ...] = ()) -> VerifySummary:
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
        db=db, results=tuple(results), stale=stale, worker_deaths=worker_deaths, died_twice=died_twice,
    )
