"""Runs over VNN-COMP benchmark folders: the library behind ``mr-eval vnncomp`` (whose help,
``cli/vnncomp_cmd.py``, describes the folders, the database rows and the resume rule) and
``bench/vnncomp.py``.

``find_instances`` reads ``instances.csv`` (and ``expected.csv`` where present);
``run_vnncomp`` decides the instances not yet in the database in parallel, each in a child
process under its own wall-clock limit (``solve_instance``), and writes each row as it
arrives; ``summarize`` / ``format_summary`` / ``format_stages`` tabulate the outcomes per
benchmark (solved counts; where the time went)."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_mr.errors import UserError
from robustbench_mr.verifiers.decide.stages import STAGES, merge_stages
from robustbench_mr.options import nonneg_int, option, positive_float, positive_int
from robustbench_mr.verifiers.bounds.methods import DEFAULT_BOUNDS
from robustbench_mr.verifiers.decide import DEFAULT_BRANCHING
from robustbench_mr.verifiers.runs.options import (
    bounds_option, branching_option, check_solver_choices, default_jobs, solver_option, verifier_method,
)

DECIDED = ("sat", "unsat")
STAGES_SHOWN = STAGES  # every stage of decide/stages.py, in its order
STATUSES = ("sat", "unsat", "timeout", "unknown", "error")


@dataclass(frozen=True)
class VnncompOptions:
    """One ``mr-eval vnncomp`` run; each field is its flag, default, help and config key."""

    bench_dir: Path = option(positional=True, help="a benchmark folder with instances.csv, or a folder of them")
    db: Path = option(Path("runs/results.sqlite"), help="results database (shared with verify/attack/report)")
    # as mr-eval verify: parallel over instances; --jobs 1 for timings comparable to VNN-COMP's (one instance at a time)
    jobs: int = option(default_factory=default_jobs, type=positive_int, default_text="min(8, cores), as verify",
                       help="instances solved in parallel (1: one at a time, as VNN-COMP times them)")
    timeout_cap: float | None = option(None, type=positive_float, help="cap each instance's timeout at this many seconds")
    bounds: str = bounds_option()
    solver: str = solver_option()
    branching: str = branching_option()
    benchmarks: tuple[str, ...] = option((), flag="--benchmark", metavar="NAME", default_text="all", help="run only this benchmark (folder name; repeatable)")
    limit: int | None = option(None, type=nonneg_int, help="at most this many instances per benchmark (in file order)")
    only: Path | None = option(None, metavar="CSV", help="run only the instances this CSV lists (columns benchmark, onnx, vnnlib: e.g. "
                                                         "peers_cpu_30s.csv, to compare on the peers' own subset)")
    out_dir: Path | None = option(None, help="write a VNN-COMP result file (status + counterexample) per instance here")
    rerun: bool = option(False, help="solve again even instances the database has decided")
    progress: bool = option(True, cli=False, help="a bar on a terminal, status lines (logging) elsewhere")

    def __post_init__(self) -> None:
        check_solver_choices(self.bounds, self.solver, self.branching)

    @property
    def method(self) -> str:
        """The rows' ``method``: ``milp`` with the default bounds and highs (the historical key,
        so earlier databases resume), else ``mr-eval verify``'s ``milp-BOUNDS[-SOLVER]``."""
        return "milp" if (self.bounds, self.solver) == (DEFAULT_BOUNDS, "highs") else verifier_method(self.bounds, self.solver)

    @property
    def solver_options(self) -> dict[str, str]:
        """What ``check_instance`` takes of these options (``mr-eval vnnlib`` passes the same)."""
        return {"bounds": self.bounds, "solver": self.solver, "branching": self.branching}


@dataclass(frozen=True)
class Instance:
    benchmark: str
    root: Path  # the benchmark folder; onnx and vnnlib are relative to it
    onnx: str
    vnnlib: str
    timeout: float
    expected: str | None = None
    best_seconds: float | None = None
    abcrown_seconds: float | None = None
    tools_correct: int | None = None

    @property
    def onnx_path(self) -> Path:
        return self.root / self.onnx

    @property
    def vnnlib_path(self) -> Path:
        return self.root / self.vnnlib


@dataclass(frozen=True)
class Outcome:
    instance: Instance
    status: str
    seconds: float
    timeout: float
    message: str = ""
    from_db: bool = False  # decided by an earlier run
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (decide/stages.py)
    search: str = ""
    domains: int = 0
    max_depth: int = 0

    @classmethod
    def of(cls, inst: Instance, res: dict[str, Any], timeout: float, from_db: bool = False) -> "Outcome":
        """From ``solve_instance``'s plain data or a database row's details (status and seconds
        given in ``res``)."""
        return cls(inst, res["status"], res["seconds"], timeout, res.get("message", ""), from_db, res.get("stages", {}),
                   res.get("search", ""), res.get("domains", 0), res.get("max_depth", 0))

    @property
    def wrong(self) -> bool:
        exp = self.instance.expected
        return exp in DECIDED and self.status in DECIDED and self.status != exp


@dataclass(frozen=True)
class BenchmarkSummary:
    benchmark: str
    instances: int
    counts: dict[str, int] = field(default_factory=dict)
    wrong: int = 0
    total_seconds: float = 0.0
    median_seconds: float | None = None  # over our sat/unsat answers
    expected_sat: int = 0
    expected_unsat: int = 0
    best_median_seconds: float | None = None  # the published fastest correct tool, median
    abcrown_solved: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over the instances (decide/stages.py)
    searches: dict[str, int] = field(default_factory=dict)  # instances per search that ran last
    domains: int = 0
    max_depth: int = 0


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _read_expected(bench_dir: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    for folder in (bench_dir, bench_dir.parent):
        f = folder / "expected.csv"
        if f.is_file():
            with open(f, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and {"benchmark", "onnx", "vnnlib", "expected"} <= set(rows[0]):
                return {(r["benchmark"], r["onnx"], r["vnnlib"]): r for r in rows}
    return {}


def instance_rows(path: str | Path, what: str = "--only") -> dict[tuple[str, str, str], dict[str, str]]:
    """The rows of a CSV with benchmark, onnx and vnnlib columns, keyed by those three (``--only``,
    the peers' table); a missing column or an unreadable file is one line naming ``what``."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"benchmark", "onnx", "vnnlib"} - set(reader.fieldnames or ())
            if missing:
                raise UserError(f"{what} {path}: no column {', '.join(sorted(missing))}; the file needs benchmark, onnx and vnnlib columns")
            return {(r["benchmark"], r["onnx"], r["vnnlib"]): r for r in reader}
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None


def find_instances(bench_dir: str | Path, benchmarks: tuple[str, ...] = ()) -> list[Instance]:
    """All instances of BENCH_DIR (one benchmark, or a folder of benchmark folders)."""
    root = Path(bench_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such benchmark folder")
    if (root / "instances.csv").is_file():
        folders = [root]
    else:
        folders = sorted(d for d in root.iterdir() if (d / "instances.csv").is_file())
        if not folders:
            raise UserError(f"{root}: neither it nor its subfolders hold an instances.csv (onnx,vnnlib,timeout per row)")
    if benchmarks:
        unknown = sorted(set(benchmarks) - {f.name for f in folders})
        if unknown:
            raise UserError(f"{root}: no benchmark named {', '.join(unknown)}; found {', '.join(f.name for f in folders)}")
        folders = [f for f in folders if f.name in benchmarks]
    expected = _read_expected(root)
    out: list[Instance] = []
    for folder in folders:
        csv_path = folder / "instances.csv"
        with open(csv_path, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 3:
                    raise UserError(f"{csv_path}:{lineno}: expected onnx,vnnlib,timeout, got {','.join(row)!r}")
                onnx, vnnlib, t = (c.strip() for c in row[:3])
                timeout = _float(t)
                if timeout is None or timeout <= 0:
                    raise UserError(f"{csv_path}:{lineno}: timeout {t!r} is not a positive number")
                e = expected.get((folder.name, onnx, vnnlib), {})
                tc = e.get("tools_correct")
                out.append(Instance(
                    folder.name, folder, onnx, vnnlib, timeout,
                    expected=e.get("expected") or None,
                    best_seconds=_float(e.get("best_seconds")),
                    abcrown_seconds=_float(e.get("abcrown_seconds")),
                    tools_correct=int(tc) if tc not in (None, "") else None,
                ))
    return out


def result_file_name(inst: Instance) -> str:
    """A file name unique per instance and safe inside the output folder: the readable stems
    plus a hash of the benchmark and both relative paths (two instances whose stems match, e.g.
    the same property file name in two folders, get different files); no path separators."""
    import hashlib
    import re

    key = "\0".join((inst.benchmark, inst.onnx, inst.vnnlib)).encode()
    digest = hashlib.sha256(key).hexdigest()[:10]
    stem = f"{inst.benchmark}__{Path(inst.onnx).stem}__{Path(inst.vnnlib).stem}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:150] + f"__{digest}.txt"


def solve_instance(inst: Instance, timeout: float, out_dir: str | None, solver_options: dict[str, str] | None = None) -> tuple[Instance, dict[str, Any]]:
    """Worker: decide one instance (``solver_options``: :attr:`VnncompOptions.solver_options`;
    None: ``check_instance``'s defaults); returns plain data (crosses process boundaries)."""
    import time

    import torch

    from robustbench_mr.threads import worker_threads

    torch.set_num_threads(worker_threads())  # the command's --threads (default 1 per worker: parallelism is over instances)
    from robustbench_mr.deadline import Deadline
    from robustbench_mr.verifiers.spec.export import write_result
    from robustbench_mr.verifiers.decide.instance_limit import instance_in_child, preload_engines, warm_network
    from robustbench_mr.verifiers.decide.instance import check_instance

    preload_engines()  # once per worker: the forked children inherit the imports
    start = time.perf_counter()
    deadline = Deadline(timeout, start=start)
    try:
        r = instance_in_child(check_instance, inst.onnx_path, inst.vnnlib_path, deadline, **(solver_options or {}))
        warm_network(inst.onnx_path)  # after the instance's clock: later instances of this net fork with it loaded
        status, seconds, message = r.status.value, r.seconds, r.message
        extra = {"stages": dict(r.stages), "search": r.search, "domains": int(r.domains), "max_depth": int(r.max_depth)}
        if out_dir:
            try:
                write_result(Path(out_dir) / result_file_name(inst), status if status != "error" else "unknown", r.counterexample, r.output)
            except OSError as exc:  # the verdict stands (it goes to the database); say why the file is missing
                message = f"{message}; result file not written: {exc}".lstrip("; ")
    except UserError as exc:
        status, seconds, message, extra = "error", time.perf_counter() - start, str(exc), {}
    except Exception as exc:  # noqa: BLE001 - one instance's failure must not stop the benchmark
        status, seconds, message, extra = "error", time.perf_counter() - start, f"{type(exc).__name__}: {exc}", {}
    return inst, {"status": status, "seconds": seconds, "message": message[:2000], **extra}


def run_vnncomp(options: VnncompOptions) -> list[Outcome]:
    """Run (or resume) the instances; every outcome is in the database when this returns."""
    from joblib import Parallel, delayed

    from robustbench_mr.checkpoint import file_sha256
    from robustbench_mr.progress import Progress
    from robustbench_mr.results_db import ResultRow, ResultsDB

    instances = find_instances(options.bench_dir, options.benchmarks)
    if options.only is not None:
        wanted = instance_rows(options.only)
        instances = [inst for inst in instances if (inst.benchmark, inst.onnx, inst.vnnlib) in wanted]
    if options.limit is not None:
        kept: list[Instance] = []
        per: dict[str, int] = {}
        for inst in instances:
            if per.get(inst.benchmark, 0) < options.limit:
                kept.append(inst)
                per[inst.benchmark] = per.get(inst.benchmark, 0) + 1
        instances = kept
    if options.out_dir is not None:
        import os

        try:
            Path(options.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out-dir {options.out_dir}: cannot create the folder ({exc.strerror or exc})") from None
        if not os.access(options.out_dir, os.W_OK | os.X_OK):
            raise UserError(f"--out-dir {options.out_dir}: the folder is not writable; choose another one")
    missing = [str(i.onnx_path) for i in instances if not i.onnx_path.is_file()] + [str(i.vnnlib_path) for i in instances if not i.vnnlib_path.is_file()]
    if missing:
        raise UserError(f"{len(missing)} instance file(s) missing, e.g. {missing[0]}")
    sha: dict[Path, str] = {}
    for inst in instances:
        if inst.onnx_path not in sha:
            sha[inst.onnx_path] = file_sha256(inst.onnx_path)

    def limit_for(inst: Instance) -> float:
        return min(inst.timeout, options.timeout_cap) if options.timeout_cap else inst.timeout

    from robustbench_mr.verifiers.milp.pulp_solver import solver_version as _solver_version

    solver_version = _solver_version(options.solver)  # e.g. "HiGHS 1.16.0 (highspy)", as mr-eval verify records it

    outcomes: list[Outcome] = []
    todo: list[Instance] = []
    with ResultsDB(options.db) as db:
        done = {(r.dataset, r.ckpt_sha, r.split): r for r in db.rows(kind="vnncomp", method=options.method)}
        for inst in instances:
            row = done.get((inst.benchmark, sha[inst.onnx_path], inst.vnnlib))
            # a sat / unsat stands whatever searched for it; a timeout says nothing about another branching rule
            reusable = row is not None and not options.rerun and (
                row.status in DECIDED or (row.status == "timeout" and (row.timeout or 0) >= limit_for(inst)
                                          and row.details.get("branching", DEFAULT_BRANCHING) == options.branching)
            )
            if reusable:
                outcomes.append(Outcome.of(inst, {**row.details, "status": row.status, "seconds": row.seconds or 0.0}, row.timeout or 0.0, from_db=True))
            else:
                todo.append(inst)

        jobs = Parallel(n_jobs=options.jobs, return_as="generator_unordered")(
            delayed(solve_instance)(inst, limit_for(inst), str(options.out_dir) if options.out_dir else None, options.solver_options) for inst in todo
        ) if todo else []
        bar = Progress(len(todo), "vnncomp", unit="instance", enabled=options.progress)
        try:
            for inst, res in jobs:
                oc = Outcome.of(inst, res, limit_for(inst))
                details: dict[str, Any] = {"onnx": inst.onnx, "expected": inst.expected, "wrong": oc.wrong, "message": oc.message,
                                           "stages": oc.stages, "search": oc.search, "domains": oc.domains, "max_depth": oc.max_depth,
                                           "bounds": options.bounds, "branching": options.branching}
                db.put(ResultRow(
                    kind="vnncomp", ckpt_sha=sha[inst.onnx_path], ckpt_path=str(inst.onnx_path), dataset=inst.benchmark,
                    split=inst.vnnlib, idx=0, norm="vnnlib", eps=0.0, method=options.method, status=oc.status,
                    seconds=oc.seconds, timeout=oc.timeout, solver=options.solver, solver_version=solver_version, details=details,
                ))
                outcomes.append(oc)
                bar.update(oc.status)
                if oc.wrong:
                    bar.write(f"WRONG ANSWER: {inst.benchmark} {inst.onnx} {inst.vnnlib}: {oc.status}, expected {inst.expected}")
        finally:
            bar.close()
    order = {(i.benchmark, i.onnx, i.vnnlib): k for k, i in enumerate(instances)}
    outcomes.sort(key=lambda o: order[(o.instance.benchmark, o.instance.onnx, o.instance.vnnlib)])
    return outcomes


def summarize(outcomes: list[Outcome]) -> list[BenchmarkSummary]:
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.instance.benchmark, []).append(o)
    out = []
    for bench, ocs in by.items():
        counts = {s: sum(o.status == s for o in ocs) for s in STATUSES}
        decided = [o.seconds for o in ocs if o.status in DECIDED]
        best = [o.instance.best_seconds for o in ocs if o.instance.best_seconds is not None]
        has_abcrown = any(o.instance.expected for o in ocs)
        out.append(BenchmarkSummary(
            bench, len(ocs), counts, sum(o.wrong for o in ocs), sum(o.seconds for o in ocs),
            statistics.median(decided) if decided else None,
            sum(o.instance.expected == "sat" for o in ocs), sum(o.instance.expected == "unsat" for o in ocs),
            statistics.median(best) if best else None,
            sum(o.instance.abcrown_seconds is not None for o in ocs) if has_abcrown and best else None,
            merge_stages(*[o.stages for o in ocs]),
            {k: sum(o.search == k for o in ocs) for k in sorted({o.search for o in ocs if o.search})},
            sum(o.domains for o in ocs), max((o.max_depth for o in ocs), default=0),
        ))
    return out


def format_stages(summaries: list[BenchmarkSummary]) -> str:
    """Where the time went, per benchmark: seconds per stage summed over the instances, the
    search that ran last (instances each), domains bounded and the deepest ReLU split."""
    head = ["benchmark"] + [f"{s}_s" for s in STAGES_SHOWN] + ["searches", "domains", "max_depth"]
    rows = [head]
    for b in summaries:
        rows.append([b.benchmark] + [f"{b.stage_seconds.get(s, 0.0):.1f}" for s in STAGES_SHOWN]
                    + [" ".join(f"{k}:{v}" for k, v in b.searches.items()) or "-", str(b.domains), str(b.max_depth)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, len(head) - 3) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def format_summary(summaries: list[BenchmarkSummary], published: bool = False) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    head = ["benchmark", "inst", "sat", "unsat", "timeout", "unknown", "error", "wrong", "total_s", "median_s"]
    if published:
        head += ["exp_sat", "exp_unsat", "best_median_s", "abcrown_solved"]
    rows = [head]
    for b in summaries:
        r = [b.benchmark, str(b.instances)] + [str(b.counts.get(k, 0)) for k in STATUSES] + [str(b.wrong), s(b.total_seconds), s(b.median_seconds)]
        if published:
            r += [str(b.expected_sat), str(b.expected_unsat), s(b.best_median_seconds), "-" if b.abcrown_solved is None else str(b.abcrown_solved)]
        rows.append(r)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)
