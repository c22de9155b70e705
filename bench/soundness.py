"""Soundness fuzz: the generators of the standing suite (tests/verifiers/soundness_cases.py) over
many seeds, every bound method and both solvers, and the metamorphic changes that must never
flip a verdict. Ground truth by linear-region enumeration (scipy linprog, no verifier code).

Prints, per generator: runs, answers equal to the truth, wrong answers (the opposite of the
truth: must be 0), unknown, timeout, error. Exit status 1 if any answer is wrong.

    .venv/bin/python bench/soundness.py                    # 40 seeds per family
    .venv/bin/python bench/soundness.py --seeds 200 --jobs 2 --timeout 20
    .venv/bin/python bench/soundness.py --route bab+milp     # bab forced, the MILP after it
    .venv/bin/python bench/soundness.py --route bab --branching fsb
    .venv/bin/python bench/soundness.py --route refine+bab      # bound refinement before bab, on every bab-route net
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_mr.verifiers.bounds.methods import BOUND_METHODS  # noqa: E402
from robustbench_mr.verifiers.decide import BRANCHING, DEFAULT_BRANCHING  # noqa: E402
from tests.verifiers.soundness_cases import (  # noqa: E402
    ONNX_EXTRAS, Case, abs_case, permute, random_case, rescale, split_neuron, write_onnx, write_vnnlib,
)

SCALES = (1e6, 1e-6, 1e-9, 1e-12)
FAMILIES = {  # name: (inputs, free inputs)
    "mlp-20in": (20, 20),
    "mlp-20in-4free": (20, 4),
    "mlp-3in": (3, 3),
}


def _settings(solvers: list[str]) -> list[tuple[str, str]]:
    return [(b, s) for b in BOUND_METHODS for s in solvers]


ROUTES = {  # --route: (bab.MILP_MAX_UNSTABLE, bab.PORTFOLIO_BAB_SHARE, chain.REFINE_AFTER); None: as shipped
    "shape": None,  # the search the problem's shape calls for (these small nets: mostly the MILP)
    "bab": (0, 1.0, None),  # ReLU-split bab on every net with an unstable ReLU, on the whole time
    "bab+milp": (0, 0.002, None),  # bab on a sliver of the time (20 ms of 10 s), the MILP deciding what it left open
    "refine+bab": (0, 1.0, 0.0),  # the intermediate bounds refined by bound search first (decide/refine.py), then bab
}


def _search(r) -> str:
    """The search that ran last, with ``refine+`` before it when the bounds were refined first."""
    return ("refine+" if "refine" in (getattr(r, "stages", None) or {}) else "") + (r.search or "-")


def run_case(case: Case, generator: str, variant, settings: list[tuple[str, str]], timeout: float, folder: str,
             route: str = "shape", branching: str = DEFAULT_BRANCHING, lp_max_unstable: int | None = None) -> list[tuple[str, str, str, str, str]]:
    """(generator, setting, status, expected, search that ran last) for each setting on one variant (a Network or an
    ONNX extra name), the complete search forced as ``route`` says (``ROUTES``), bab branching by ``branching``,
    ``lp_max_unstable`` (not None) as ``decide.chain.LP_MAX_UNSTABLE``."""
    from robustbench_mr.verifiers.decide import bab, chain
    from robustbench_mr.verifiers.decide.chain import check_property

    if ROUTES[route] is not None:  # in this worker process only
        bab.MILP_MAX_UNSTABLE, bab.PORTFOLIO_BAB_SHARE, refine_after = ROUTES[route]
        if refine_after is not None:
            chain.REFINE_AFTER = refine_after
    if lp_max_unstable is not None:
        chain.LP_MAX_UNSTABLE = lp_max_unstable

    out = []
    if isinstance(variant, str):  # an ONNX file with extra nodes, decided through VNN-LIB
        from robustbench_mr.verifiers.decide.instance import check_instance

        d = Path(folder)
        onnx_path = write_onnx(case.net, d / f"{case.name}-{variant}.onnx", extras=(variant,))
        vnnlib = write_vnnlib(case.prop, case.net.num_outputs, d / f"{case.name}-{variant}.vnnlib")  # one file per job: jobs run in parallel
        for bounds, solver in settings:
            search = "-"
            try:
                ri = check_instance(onnx_path, vnnlib, timeout=timeout, falsify_samples=0, bounds=bounds, solver=solver)
                status, search = ri.status.value, _search(ri)
            except Exception as exc:  # noqa: BLE001 - counted, never hidden
                status = f"error:{type(exc).__name__}"
            out.append((generator, f"{bounds}/{solver}", status, case.expected, search))
        return out
    for bounds, solver in settings:
        search = "-"
        try:
            r = check_property(variant, case.prop, timeout=timeout, samples=0, bounds=bounds, solver=solver, branching=branching)
            status, search = r.status.value, _search(r)
            if status == "sat" and not case.prop.is_violated_by(variant.forward(r.counterexample)):
                status = "wrong-counterexample"
        except Exception as exc:  # noqa: BLE001 - counted, never hidden
            status = f"error:{type(exc).__name__}"
        out.append((generator, f"{bounds}/{solver}", status, case.expected, search))
    return out


def jobs_for(seed: int, family: str, solvers: list[str], folder: str) -> list[tuple]:
    inputs, free = FAMILIES[family]
    case = random_case(seed, inputs=inputs, free=free)
    if case.expected is None:
        return []
    rng = np.random.default_rng(1000 + seed)
    full, light = _settings(solvers), [("lp", "highs"), ("interval", solvers[-1])]
    work: list[tuple] = [(case, f"{family}", case.net, full)]
    hidden = len(case.net.affines) - 1
    for s in SCALES:
        k = int(rng.integers(hidden))
        work.append((case, f"{family} rescaled {s:g}", rescale(case.net, k, s), full))
    k = int(rng.integers(hidden))
    width = case.net.affines[k].out_features
    work.append((case, f"{family} permuted", permute(case.net, k, rng.permutation(width)), light))
    work.append((case, f"{family} neuron split", split_neuron(case.net, k, int(rng.integers(width))), light))
    for extra in ONNX_EXTRAS:
        work.append((case, f"{family} onnx {extra}", extra, [("lp", "highs")]))
    return work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=40, help="seeds per family (default 40)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per verifier run")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--no-cbc", action="store_true", help="HiGHS only")
    ap.add_argument("--branching", choices=BRANCHING, default=DEFAULT_BRANCHING, help="ReLU-split bab's branching rule (with --route bab / bab+milp)")
    ap.add_argument("--route", choices=tuple(ROUTES), default="shape", help="force the complete search (default: as the problem's shape chooses)")
    ap.add_argument("--lp-max-unstable", type=int, default=None,
                    help="bounds lp runs as alpha-CROWN past this many CROWN-unstable ReLUs (default: as shipped; 0: always)")
    args = ap.parse_args()
    from joblib import Parallel, delayed

    from robustbench_mr.verifiers.milp.pulp_solver import _available_class

    solvers = ["highs"] + ([] if args.no_cbc or _available_class("cbc") is None else ["cbc"])
    start = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="soundness-")
    work = Parallel(n_jobs=args.jobs)(delayed(jobs_for)(seed, fam, solvers, folder) for fam in FAMILIES for seed in range(args.seeds))
    work = [w for ws in work for w in ws]
    for s in (1.0, *SCALES):  # the minimal |x0| case at every scale
        work.append((abs_case(s), "abs(x0) via 1/s relu(s x0)", abs_case(s).net, _settings(solvers)))
    rows = Parallel(n_jobs=args.jobs)(delayed(run_case)(c, g, v, st, args.timeout, folder, args.route, args.branching, args.lp_max_unstable) for c, g, v, st in work)
    table: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    searches: Counter = Counter()
    for gen, setting, status, expected, search in (r for rs in rows for r in rs):
        searches[search] += 1
        t = table[gen]
        t["runs"] += 1
        if status == expected:
            t["correct"] += 1
        elif status in ("sat", "unsat") or status == "wrong-counterexample":
            t["wrong"] += 1
            wrong.append((gen, setting, status, expected))
        elif status.startswith("error"):
            t["error"] += 1
        else:
            t[status] += 1
    print(f"# soundness fuzz: {args.seeds} seeds per family, route {args.route}, branching {args.branching}, lp max unstable {args.lp_max_unstable if args.lp_max_unstable is not None else 'as shipped'}, timeout {args.timeout:g} s, solvers {'+'.join(solvers)}, "
          f"bounds {'/'.join(BOUND_METHODS)}, wall {time.perf_counter() - start:.0f} s")
    print("| generator | runs | correct | wrong | unknown | timeout | error |")
    print("|---|---|---|---|---|---|---|")
    for gen in sorted(table):
        t = table[gen]
        print(f"| {gen} | {t['runs']} | {t['correct']} | {t['wrong']} | {t['unknown']} | {t['timeout']} | {t['error']} |")
    total = sum((table[g] for g in table), Counter())
    print(f"| **all** | {total['runs']} | {total['correct']} | {total['wrong']} | {total['unknown']} | {total['timeout']} | {total['error']} |")
    print("searches (the one that ran last):", ", ".join(f"{k} {v}" for k, v in sorted(searches.items())))
    for w in wrong:
        print("WRONG:", *w)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
