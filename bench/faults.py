"""Faults and limits: interrupted, killed and concurrent runs must lose nothing, duplicate
nothing, and resume to the same table as an uninterrupted run; and the per-instance time limit
must hold (overrun at most 1 s + 5 % of the limit).

Scenarios, each on a copy of the same work:
* digits (``mr-eval verify`` on a seeded small digits model): kill -9 of the process group
  mid-run, SIGINT, SIGTERM, one killed worker (the runner's test hook), two concurrent writers
  on one database; each then resumed;
* VNN-COMP (``mr-eval vnncomp`` on ../shared/data/vnncomp test + the first acasxu instances):
  kill -9 of the process group mid-run, then resumed;
* time limits: ``mr-eval vnnlib --timeout 5`` on 20 hard instances (oval21 and mnist_fc ones
  that no tool here decides in 5 s), wall time of the whole process from outside.

Prints, per scenario: rows expected / kept / lost / duplicated and whether the final table
equals the uninterrupted run's; then max and p95 overrun of the time limit.

    .venv/bin/python bench/faults.py            # about 5-10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MR_EVAL = [sys.executable, "-m", "robustbench_mr.cli.eval"]


def _table(db: Path, kind: str) -> tuple[dict[tuple, str], int]:
    """(key -> status) over the decided rows, and the total row count (duplicates would show)."""
    if not db.exists():
        return {}, 0
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select dataset, split, idx, method, eps, ckpt_sha, status from results where kind = ?", (kind,)).fetchall()
    finally:
        con.close()
    table = {r[:6]: r[6] for r in rows}
    return table, len(rows)


def _run(cmd: list[str], env: dict | None = None, timeout: float = 900) -> int:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout).returncode


def _interrupt(cmd: list[str], db: Path, kind: str, after_rows: int, how: str, env: dict | None = None) -> str:
    """Start ``cmd`` in its own process group and interrupt it once ``after_rows`` rows exist;
    returns the rows written when the signal went out (or that the run had already ended)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.perf_counter()
    while p.poll() is None and time.perf_counter() - t0 < 600:
        try:
            if _table(db, kind)[1] >= after_rows:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    at = "run ended first"
    if p.poll() is None:
        at = f"{_table(db, kind)[1]} rows"
        sig = {"kill -9 (group)": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}[how]
        if sig == signal.SIGKILL:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    rc = p.wait(timeout=120)
    return f"{at}, rc {rc}"


def _report(name: str, reference: dict, db: Path, kind: str) -> bool:
    table, count = _table(db, kind)
    kept = sum(k in table for k in reference)
    lost = len(reference) - kept
    dup = count - len(table)
    equal = table == reference
    print(f"| {name} | {len(reference)} | {kept} | {lost} | {dup} | {'yes' if equal else 'NO'} |")
    return lost == 0 and dup == 0 and equal


def digits_scenarios(work: Path, n: int) -> bool:
    sys.path.insert(0, str(REPO / "tests" / "verifiers"))
    from conftest import train_digits  # the tests' seeded tiny trainer (seconds)

    from robustbench_mr.checkpoint import metadata_for, save_checkpoint

    model, _ = train_digits("mlp", seed=0, epochs=6, hidden=(24, 24))
    ckpt = work / "mlp.pt"
    save_checkpoint(ckpt, model, metadata_for("mlp", "digits", {"hidden": [24, 24]}))

    def cmd(db: Path) -> list[str]:
        return [*MR_EVAL, "verify", str(ckpt), "--eps", "0.05", "--n", str(n), "--timeout", "60", "--jobs", "2", "--db", str(db)]

    ref_db = work / "reference.sqlite"
    _run(cmd(ref_db))
    reference, _ = _table(ref_db, "verify")
    ok = True
    for how in ("kill -9 (group)", "SIGINT", "SIGTERM"):
        db = work / f"{how.split()[0]}.sqlite"
        at = _interrupt(cmd(db), db, "verify", max(1, n // 3), how)
        _run(cmd(db))  # resume
        ok &= _report(f"digits: {how} at {at}, then resume", reference, db, "verify")
    # one worker killed once (the runner's test hook), then resume
    db = work / "worker.sqlite"
    env = dict(os.environ, ROBUSTBENCH_MR_TEST_KILL_WORKER=f"{n // 2}:1")  # killed in the parallel run, retried alone
    rc = _run(cmd(db), env=env)
    first, _ = _table(db, "verify")
    errors = sum(v == "error" for v in first.values())
    _run(cmd(db))
    ok &= _report(f"digits: a killed worker (run rc {rc}, {len(first)} rows, {errors} error), then resume", reference, db, "verify")
    # two concurrent writers on one database
    db = work / "concurrent.sqlite"
    a = subprocess.Popen(cmd(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b = subprocess.Popen(cmd(db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a.wait(900)
    b.wait(900)
    ok &= _report("digits: two concurrent writers", reference, db, "verify")
    return ok


def vnncomp_scenarios(work: Path, shared: Path) -> bool:
    bench = work / "vnncomp"
    bench.mkdir()
    src = shared / "data" / "vnncomp"
    for name in ("test", "acasxu"):  # a small set: every test instance and the first acasxu ones
        rows = (src / name / "instances.csv").read_text().splitlines()
        d = bench / name
        d.mkdir()
        for entry in os.listdir(src / name):
            if entry != "instances.csv":
                os.symlink(src / name / entry, d / entry)
        (d / "instances.csv").write_text("\n".join(rows[:12]) + "\n")

    def cmd(db: Path) -> list[str]:
        return [*MR_EVAL, "vnncomp", str(bench), "--timeout-cap", "10", "--jobs", "2", "--db", str(db)]

    ref_db = work / "vnn-reference.sqlite"
    _run(cmd(ref_db))
    reference, _ = _table(ref_db, "vnncomp")
    reference = {k: v for k, v in reference.items() if v in ("sat", "unsat")}
    db = work / "vnn-kill.sqlite"
    at = _interrupt(cmd(db), db, "vnncomp", max(1, len(reference) // 3), "kill -9 (group)")
    _run(cmd(db))
    table, _ = _table(db, "vnncomp")
    # compare the decided answers (a timeout near the cap may go either way between two runs)
    decided = {k: v for k, v in table.items() if k in reference}
    lost = len(reference) - len(decided)
    equal = decided == reference
    print(f"| vnncomp: kill -9 (group) at {at}, then resume | {len(reference)} | {len(decided)} | {lost} | 0 | {'yes' if equal else 'NO'} |")
    return lost == 0 and equal


def overrun_stats(shared: Path, count: int, limit: float) -> tuple[float, float]:
    src = shared / "data" / "vnncomp"
    hard = []
    for name in ("oval21", "mnist_fc"):
        for line in (src / name / "instances.csv").read_text().splitlines():
            onnx, prop, _ = line.split(",")
            hard.append((src / name / onnx, src / name / prop))
    hard = hard[::-1][:count] if len(hard) >= count else hard  # mnist_fc 256x4 first: the hardest
    over = []
    for onnx, prop in hard:
        t0 = time.perf_counter()
        subprocess.run([*MR_EVAL, "vnnlib", str(onnx), str(prop), "--timeout", str(limit)], capture_output=True, timeout=10 * limit + 60)
        over.append(time.perf_counter() - t0 - limit)
    over.sort()
    print(f"overrun per instance (s): {' '.join(f'{o:.2f}' for o in over)}")
    return max(over), over[min(len(over) - 1, int(round(0.95 * (len(over) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--n", type=int, default=30, help="digits inputs per run")
    ap.add_argument("--hard", type=int, default=20, help="hard instances for the overrun statistics")
    ap.add_argument("--limit", type=float, default=5.0)
    args = ap.parse_args()
    shared = Path(args.shared)
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    print("| scenario | rows expected | kept | lost | duplicated | equals an uninterrupted run |")
    print("|---|---|---|---|---|---|")
    ok = digits_scenarios(work, args.n)
    if (shared / "data" / "vnncomp").is_dir():
        ok &= vnncomp_scenarios(work, shared)
        worst, p95 = overrun_stats(shared, args.hard, args.limit)
        allowed = 1.0 + 0.05 * args.limit
        print(f"\ntime limit {args.limit:g} s on {args.hard} hard instances (whole process, from outside): "
              f"overrun max {worst:.2f} s, p95 {p95:.2f} s (allowed {allowed:.2f} s)")
        ok &= worst <= allowed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
