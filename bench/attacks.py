"""Wall time of the attack stage (``mr-eval attack``) at the old thread default (torch's own:
one thread per core, whatever else runs) and the new one (``robustbench_mr.threads``:
max(1, idle cores // jobs)), side by side in one run, interleaved, each in a fresh results
database (nothing resumes).

The default is the README quickstart's attack stage: its checkpoint
(``runs/quickstart/small_digits_mr.pt``; trained here for ``--epochs`` epochs with the
quickstart's flags when absent), its first 100 digits test inputs, ``--attack all`` with 50
Sinkhorn iterations. A quick check: ``--n 10 --attack pgd``.

    .venv/bin/python bench/attacks.py                          # the quickstart's stage (minutes)
    nice .venv/bin/python bench/attacks.py --n 10 --attack pgd --rounds 1

Prints, per setting: the threads used, the stage's seconds (the sum of the jobs' times that
``mr-eval attack`` reports), the process's wall time, and old / new.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
               "ROBUSTBENCH_MR_THREADS")


def _env() -> dict[str, str]:
    """This environment without any thread setting: what a user's shell gives both settings."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


def torch_default_threads() -> int:
    """torch's own default (the old behaviour: nothing set it), measured in a fresh process."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=_env(), capture_output=True,
                         text=True, check=True, timeout=300)
    return int(out.stdout.strip())


def ensure_checkpoint(path: Path, epochs: int) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"# {path} missing: training it for {epochs} epoch(s) with the quickstart's flags", flush=True)
    subprocess.run([sys.executable, "-m", "robustbench_mr.cli.train", "small", "--dataset", "digits", "--gamma-h", "50", "--seed", "0",
                    "--epochs", str(epochs), "--out", str(path), "-q"], env=_env(), check=True, timeout=3600)
    return path


def run_stage(ckpt: Path, args: argparse.Namespace, threads: int | None) -> tuple[float, float, int]:
    """(stage seconds, process wall seconds, threads the command used) of one ``mr-eval attack``."""
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        cmd = [sys.executable, "-m", "robustbench_mr.cli.eval", "attack", str(ckpt), "--attack", args.attack, "--eps", "8/255",
               "--n", str(args.n), "--db", str(Path(tmp) / "r.sqlite"), "--wasserstein-sinkhorn-iters", "50", "--device", "cpu", "-v"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"mr-eval attack failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    seconds = sum(float(m) for m in re.findall(r"\s([0-9.]+)s$", p.stdout, flags=re.M))
    used = re.search(r"threads (\d+) per process", p.stderr)
    return seconds, wall, int(used.group(1)) if used else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "quickstart" / "small_digits_mr.pt")
    ap.add_argument("--epochs", type=int, default=100, help="when the checkpoint is missing: epochs to train it (quickstart: 100)")
    ap.add_argument("--n", type=int, default=100, help="test inputs (quickstart: 100)")
    ap.add_argument("--attack", default="all", choices=("pgd", "autoattack", "wasserstein", "all"))
    ap.add_argument("--rounds", type=int, default=1, help="old/new pairs, interleaved; medians are printed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per mr-eval attack run")
    args = ap.parse_args()

    ckpt = ensure_checkpoint(args.checkpoint, args.epochs)
    old_threads = torch_default_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# attack stage: {ckpt.name}, --attack {args.attack}, {args.n} digits inputs; {os.cpu_count()} cores, load {load:.2f}; "
          f"old default = torch's {old_threads} thread(s)")
    results: dict[str, list[tuple[float, float, int]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        results["old"].append(run_stage(ckpt, args, old_threads))
        results["new"].append(run_stage(ckpt, args, None))
    print(f"{'setting':<8} {'threads':>7} {'stage_s':>9} {'wall_s':>9}")
    med = {}
    for name, runs in results.items():
        stage = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        med[name] = stage
        print(f"{name:<8} {'/'.join(str(r[2]) for r in runs):>7} {stage:>9.1f} {wall:>9.1f}")
    if med["new"] > 0:
        print(f"old / new stage time: {med['old'] / med['new']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
