"""Run the VNN-COMP 2022 instances in ../shared/data/vnncomp (all, or chosen benchmarks) with the
exact verifier and print, per benchmark, our answers next to the published ones.

    .venv/bin/python bench/vnncomp.py                         # everything, instance timeouts
    .venv/bin/python bench/vnncomp.py --benchmark test --benchmark acasxu --timeout-cap 30 --jobs 2
    .venv/bin/python bench/vnncomp.py --digits --timeout-cap 30   # also the digits_reference set
    .venv/bin/python bench/vnncomp.py --benchmark oval21 --peers-only --timeout-cap 30   # the peers' 11

Columns: instances; our sat/unsat/timeout/unknown/error; wrong answers (the opposite of the
expected answer: must be 0); our total and median seconds (median over our sat/unsat answers);
the expected sat/unsat counts, the published fastest correct tool's median seconds and
alpha-beta-CROWN's solved count (expected.csv). The published times ran in 2022 on
64-vCPU or V100 machines: compare orders of magnitude, and solved counts directly.
A second table puts us beside the peers run on this machine kind at a 30 s cap
(``peers_cpu_30s.csv``: alpha-beta-CROWN, nnenum, Marabou), on the instances both ran: our
solved count at this run's cap, ours within 30 s, and each peer's (correct answers only).
Results go to a results database (``--db``, default a temporary file), so a rerun with the
same --db resumes.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_mr.options import add_options  # noqa: E402
from robustbench_mr.verifiers.runs.vnncomp import (  # noqa: E402
    BenchmarkSummary, Instance, Outcome, VnncompOptions, format_stages, format_summary, instance_rows, run_vnncomp, solve_instance, summarize,
)


def digits_reference(shared: Path, timeout: float, jobs: int, solver_options: dict[str, str] | None = None) -> list[Outcome]:
    """The 40 digits_reference properties (expected.csv: net, prop, expected, time)."""
    from joblib import Parallel, delayed

    folder = shared / "data" / "digits_reference"
    with open(folder / "expected.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    insts = [Instance("digits_reference", folder, f"{r['net']}.onnx", r["prop"], timeout, expected=r["expected"],
                      best_seconds=float(r["time"]) if r.get("time") else None) for r in rows]
    res = Parallel(n_jobs=jobs)(delayed(solve_instance)(i, timeout, None, solver_options) for i in insts)
    return [Outcome.of(i, r, timeout) for i, r in res]


PEERS = ("abcrown", "nnenum", "marabou")


def peers_table(outcomes: list[Outcome], peers_csv: Path, cap: float | None) -> str:
    """Solved counts (correct sat/unsat) per benchmark on the instances of ``peers_csv`` that this
    run has: ours at the run's cap, ours within 30 s, and each peer's at 30 s."""
    if not peers_csv.exists():
        return f"(no {peers_csv.name}: peers table skipped)"
    peers = instance_rows(peers_csv, "peers table")
    head = ["benchmark", "subset", f"ours@{cap or 'inst'}s", "ours<=30s"] + [f"{p}@30s" for p in PEERS]
    rows, by = [head], {}
    for o in outcomes:
        key = (o.instance.benchmark, o.instance.onnx, o.instance.vnnlib)
        if key in peers:
            by.setdefault(o.instance.benchmark, []).append((o, peers[key]))
    for bench, pairs in by.items():
        ok = [o.status in ("sat", "unsat") and not o.wrong for o, _ in pairs]
        fast = [k and o.seconds <= 30.0 for k, (o, _) in zip(ok, pairs)]
        peer = [sum(1 for _, r in pairs if r.get(f"{p}_status") in ("sat", "unsat") and r[f"{p}_status"] == r["expected"]) if any(r.get(f"{p}_status") for _, r in pairs) else None
                for p in PEERS]
        rows.append([bench, str(len(pairs)), str(sum(ok)), str(sum(fast))] + ["-" if v is None else str(v) for v in peer])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared folder (default ../shared)")
    ap.add_argument("--benchmark", action="append", default=[], help="test, acasxu, mnist_fc, oval21 (repeatable; default all)")
    ap.add_argument("--timeout-cap", type=float, help="cap each instance's timeout (seconds)")
    ap.add_argument("--limit", type=int, help="at most this many instances per benchmark")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--db", help="results database (default: a temporary file)")
    ap.add_argument("--peers-only", action="store_true", help="only the instances peers_cpu_30s.csv lists (the peers' own subset)")
    ap.add_argument("--digits", action="store_true", help="also run digits_reference (timeout = --timeout-cap or 60)")
    add_options(ap, VnncompOptions, only=("bounds", "solver", "branching"))  # mr-eval vnncomp's own flags
    args = ap.parse_args()

    shared = Path(args.shared)
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp()) / "vnncomp.sqlite"
    start = time.perf_counter()
    opts = VnncompOptions(bench_dir=shared / "data" / "vnncomp", db=db, jobs=args.jobs, timeout_cap=args.timeout_cap,
                          benchmarks=tuple(args.benchmark), limit=args.limit,
                          only=shared / "data" / "vnncomp" / "peers_cpu_30s.csv" if args.peers_only else None,
                          bounds=args.bounds, solver=args.solver, branching=args.branching)
    outcomes = run_vnncomp(opts)
    summaries: list[BenchmarkSummary] = summarize(outcomes)
    if args.digits:
        dig = digits_reference(shared, args.timeout_cap or 60.0, args.jobs, opts.solver_options)
        outcomes += dig
        s = summarize(dig)[0]
        best = [o.instance.best_seconds for o in dig if o.instance.best_seconds is not None]
        summaries.append(BenchmarkSummary(**{**s.__dict__, "best_median_seconds": statistics.median(best) if best else None, "abcrown_solved": None}))
    print(f"# VNN-COMP 2022 instances, timeout cap {args.timeout_cap or 'none'} s, {args.jobs} job(s), bounds {opts.bounds}, "
          f"solver {opts.solver}, branching {opts.branching}, wall {time.perf_counter() - start:.1f} s")
    print(format_summary(summaries, published=True))
    print()
    print("# where the time went (seconds per stage, summed; the search that ran last per instance)")
    print(format_stages(summaries))
    print()
    print("# beside the peers on this machine kind (peers_cpu_30s.csv, 30 s cap, same instances)")
    print(peers_table(outcomes, shared / "data" / "vnncomp" / "peers_cpu_30s.csv", args.timeout_cap))
    wrong = [o for o in outcomes if o.wrong]
    for o in wrong:
        print(f"WRONG: {o.instance.benchmark} {o.instance.onnx} {o.instance.vnnlib}: ours {o.status}, expected {o.instance.expected}")
    others = [o for o in outcomes if o.status in ("error", "unknown")]
    for o in others[:20]:
        print(f"{o.status}: {o.instance.benchmark} {o.instance.onnx} {o.instance.vnnlib}: {o.message[:200]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
